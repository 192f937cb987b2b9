"""The package's layout, checked from its import graph (read with `ast`, nothing imported).

Rooms stand on floors: a room imports only rooms on its own floor or below, no two rooms import
each other and no two modules do. The package root holds at most eight modules; no file is over
400 lines; a function over 60 lines says why in a `# long:` comment; the serving path imports
without torch. Each failure names the module, import or function to move.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "adinspect"

# Bottom floor first. A root module (adinspect/<name>.py) is a room of its own.
FLOORS: dict[str, int] = {
    # floor 0: ground names and rooms that import nothing of adinspect but these
    "adinspect": 0,  # __init__: the version
    "errors": 0,
    "config": 0,
    "contracts": 0,
    "results": 0,
    "geometry": 0,
    "imageio": 0,
    "metrics": 0,
    # floor 1
    "data": 1,
    "features": 1,
    "residual": 1,
    "models": 1,
    "language": 1,
    "package": 1,
    # floor 2: in-process, torch-free
    "runtime": 2,
    # floor 3
    "fitting": 3,
    "evaluation": 3,
    "zeroshot": 3,
    # floor 4
    "train": 4,
    "annotate": 4,
    # floor 5: serving (torch-free)
    "client": 5,
    "repository": 5,
    "server": 5,
    # floor 6: measuring
    "benchmarks": 6,
    # the top of the house: the entry point and the demo
    "cli": 7,
    "demo": 7,
}
MAX_ROOT_MODULES = 8
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
LONG_REASON = "# long:"
# The serving path: imports without torch (Triton's Python stub, camera PCs, the labelling server).
TORCH_FREE_ROOMS = ("runtime", "client", "repository", "server")
TORCH_FREE_MODULES = ("adinspect.annotate.server",)
TORCH = ("torch", "torchvision", "timm")


@dataclass(frozen=True)
class Import:
    source: str  # importing module, e.g. adinspect.runtime.click
    target: str  # imported adinspect module, e.g. adinspect.runtime.clicks
    line: int

    def __str__(self) -> str:
        return f"{self.source} (line {self.line}) imports {self.target}"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def python_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


MODULES = {module_name(p): p for p in python_files()}


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path) -> Iterable[tuple[str, int]]:
    """Every module `path` imports (at any depth: lazy imports count too), with its line."""
    module = module_name(path)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node, path.name == "__init__.py")
            for alias in node.names:
                # `from adinspect.x import y` names module adinspect.x.y when that is a module
                child = f"{base}.{alias.name}"
                yield (child if child in MODULES else base), node.lineno


def adinspect_imports() -> list[Import]:
    """Every import of an adinspect module by another (targets that do not exist included)."""
    edges = {
        Import(module, target, line)
        for module, path in MODULES.items()
        for target, line in imports_of(path)
        if target.split(".")[0] == "adinspect" and target != module
    }
    return sorted(edges, key=lambda e: (e.source, e.line, e.target))


EDGES = adinspect_imports()


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _describe(component: list[str], key) -> str:
    """The imports that close a cycle among `component` (modules or rooms, as `key` maps them)."""
    members = set(component)
    closing = [
        str(e)
        for e in EDGES
        if key(e.source) in members and key(e.target) in members and key(e.source) != key(e.target)
    ]
    return " <-> ".join(component) + ":\n    " + "\n    ".join(closing)


def test_every_import_names_a_module_that_exists() -> None:
    missing = [str(e) for e in EDGES if e.target not in MODULES]
    assert not missing, "imports of modules that do not exist (moved?):\n  " + "\n  ".join(missing)


def test_the_package_root_holds_at_most_eight_modules() -> None:
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, (
        f"adinspect/ holds {len(root)} modules {root}; at most {MAX_ROOT_MODULES}: put the new one in a room"
    )


def test_every_room_has_a_floor() -> None:
    unplaced = sorted({room_of(m) for m in MODULES} - set(FLOORS))
    assert not unplaced, f"rooms without a floor: {unplaced}; add them to FLOORS in tests/test_layout.py"


def test_no_module_import_cycles() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for e in EDGES:
        graph[e.source].add(e.target)
    found = cycles(graph)
    assert not found, "modules that import each other:\n  " + "\n  ".join(
        _describe(c, lambda m: m) for c in found
    )


def test_no_room_import_cycles() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for e in EDGES:
        if room_of(e.source) != room_of(e.target):
            graph[room_of(e.source)].add(room_of(e.target))
    found = cycles(graph)
    assert not found, "rooms that import each other:\n  " + "\n  ".join(_describe(c, room_of) for c in found)


def test_imports_never_run_up_the_floors() -> None:
    upward = [
        f"{e} (floor {FLOORS[room_of(e.source)]} -> floor {FLOORS[room_of(e.target)]})"
        for e in EDGES
        if FLOORS.get(room_of(e.target), 0) > FLOORS.get(room_of(e.source), 0)
    ]
    assert not upward, "imports that run up the floors (move the shared name down):\n  " + "\n  ".join(upward)


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_file_over_400_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_FILE_LINES, (
        f"{path.relative_to(PACKAGE.parent)}: {lines} lines, at most {MAX_FILE_LINES}; split it by concern"
    )


def _has_reason(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """`# long: why` in the comment block right above the def (or its decorators), on the def line,
    or as the first line of its body (where the docstring starts)."""
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    above = []
    index = first - 2  # 0-based: the line above
    while index >= 0 and lines[index].lstrip().startswith("#"):
        above.append(lines[index])
        index -= 1
    body = node.body[0].lineno
    candidates = [*above, lines[node.lineno - 1], lines[body - 2], lines[body - 1]]
    return any(line.lstrip().startswith(LONG_REASON) or f"  {LONG_REASON}" in line for line in candidates)


def test_long_functions_say_why() -> None:
    unexplained = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1 if node.end_lineno else 0
                if length > MAX_FUNCTION_LINES and not _has_reason(lines, node):
                    unexplained.append(f"{module}.{node.name} (line {node.lineno}): {length} lines")
    assert not unexplained, (
        f"functions over {MAX_FUNCTION_LINES} lines without a `{LONG_REASON} <why>` comment above the def; "
        "split them or say why:\n  " + "\n  ".join(unexplained)
    )


def test_the_serving_path_never_imports_torch_even_lazily() -> None:
    serving = [m for m in MODULES if room_of(m) in TORCH_FREE_ROOMS or m in TORCH_FREE_MODULES]
    found = [
        f"{m} (line {line}) imports {target}"
        for m in serving
        for target, line in imports_of(MODULES[m])
        if target.split(".")[0] in TORCH
    ]
    assert not found, "the serving path must run without torch:\n  " + "\n  ".join(found)


def test_the_serving_path_imports_without_torch() -> None:
    """Every serving module imported in a fresh interpreter (Triton's model.py files excepted: they
    need Triton's backend utilities; what they import from adinspect is among these)."""
    serving = sorted(
        m
        for m in MODULES
        if (room_of(m) in TORCH_FREE_ROOMS and not m.startswith("adinspect.repository.models"))
        or m in TORCH_FREE_MODULES
    )
    code = (
        "import importlib, sys\n"
        f"for name in {serving!r}:\n"
        "    importlib.import_module(name)\n"
        f"    bad = sorted(m for m in sys.modules if m.split('.')[0] in {TORCH!r})\n"
        "    assert not bad, f'importing {name} loaded {bad[:3]}'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr[-2000:]


def test_triton_models_import_only_the_serving_path() -> None:
    allowed = {*TORCH_FREE_ROOMS, "package", *(room for room, floor in FLOORS.items() if floor == 0)}
    stray = [
        str(e)
        for e in EDGES
        if e.source.startswith("adinspect.repository.models") and room_of(e.target) not in allowed
    ]
    assert not stray, "Triton's model.py files import beyond the serving path:\n  " + "\n  ".join(stray)
