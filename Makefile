# Two commands do everything from a fresh clone:  `make demo`  and  `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train,dev]'
	if [ -f .ci/install_triton.sh ]; then bash .ci/install_triton.sh $(VENV) --perf-analyzer; fi
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/adinspect demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check adinspect tests export

clean:
	rm -rf runs .pytest_cache
