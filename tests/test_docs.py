"""The manual checks itself: every command, flag and link that README.md and docs/ show exists.

Commands and flags are read from the `adinspect` command line's own argparse parser, found through
the console script's entry point (so the test follows the parser wherever it is built); if that
parser cannot be reached in-process, the `--help` texts of the installed console script are read
instead. Fast: no network, no data, no model.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
README_MAX_LINES = 250
SCHEMES = ("http://", "https://", "mailto:", "ftp://")


# ---- the command tree ---------------------------------------------------------------------------


@dataclass
class Command:
    """One parser: its flags and its sub-commands (e.g. `repo` → build, update, verify)."""

    flags: set[str] = field(default_factory=set)
    subcommands: dict[str, Command] = field(default_factory=dict)
    required: set[str] = field(default_factory=set)  # options every full command line must give


def _from_parser(parser: argparse.ArgumentParser) -> Command:
    node = Command()
    for action in parser._actions:
        node.flags.update(s for s in action.option_strings if s.startswith("--"))
        if action.required and action.option_strings:
            node.required.add(action.option_strings[-1])
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                node.subcommands[name] = _from_parser(sub)
    return node


class _Captured(BaseException):  # not an Exception: no `except Exception` in main may swallow it
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _entry_point() -> Callable[..., object]:
    for ep in metadata.entry_points(group="console_scripts"):
        if ep.name == "adinspect":
            return ep.load()
    from adinspect.cli import main

    return main


def _parser_in_process() -> argparse.ArgumentParser:
    """The top-level parser: the first one the entry point asks to parse a command line."""

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> object:
        raise _Captured(self)

    main = _entry_point()
    saved = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args, sys.argv
    argparse.ArgumentParser.parse_args = capture  # type: ignore[method-assign]
    argparse.ArgumentParser.parse_known_args = capture  # type: ignore[method-assign]
    sys.argv = ["adinspect", "--help"]
    try:
        try:
            main(["--help"])
        except TypeError:
            main()
    except _Captured as captured:
        return captured.parser
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args, sys.argv = saved
    raise RuntimeError("the adinspect entry point never parsed its command line")


def _help_text(*words: str) -> str:
    script = Path(sys.executable).with_name("adinspect")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "adinspect.cli"]
    done = subprocess.run([*cmd, *words, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"`adinspect {' '.join(words)} --help` failed: {done.stderr}"
    return done.stdout


def _from_help(*words: str) -> Command:
    """Fallback: the same tree read from `--help` texts."""
    text = _help_text(*words)
    node = Command(flags=set(re.findall(r"(?m)^ {2}(?:-\w, )?(--[\w-]+(?:, --[\w-]+)*)", text)))
    node.flags = {f for entry in node.flags for f in re.findall(r"--[\w-]+", entry)}
    choices = re.search(r"(?m)^ {2}\{([\w,-]+)\}", text)  # a positional's choices: the sub-commands
    for name in choices.group(1).split(",") if choices else []:
        node.subcommands[name] = _from_help(*words, name)
    return node


@cache
def command_tree() -> Command:
    try:
        return _from_parser(_parser_in_process())
    except Exception:  # noqa: BLE001 - any failure to reach the parser: read the help texts instead
        return _from_help()


# ---- reading the markdown -----------------------------------------------------------------------


def doc_files() -> list[Path]:
    return [README, *sorted((REPO / "docs").rglob("*.md"))]


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.as_posix()


@dataclass
class Snippet:
    """Text shown as code (a code block's logical line, or an inline code span) and where it is."""

    path: Path
    line: int
    text: str
    block: bool = False  # a code block's line is a full command line; inline code may quote a part

    def where(self) -> str:
        return f"{_rel(self.path)}:{self.line}"


FENCE = re.compile(r"^\s*(```|~~~)")
INLINE = re.compile(r"(`+)(.+?)\1")


def _prose_and_code(path: Path) -> tuple[list[tuple[int, str, str]], list[Snippet]]:
    """(line number, prose line with inline code blanked, prose line) triples, and the code snippets."""
    prose: list[tuple[int, str, str]] = []
    code: list[Snippet] = []
    in_block = False
    pending: Snippet | None = None
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if FENCE.match(line):
            in_block = not in_block
            continue
        if in_block:
            if pending is None:
                pending = Snippet(path, n, "", block=True)
            pending.text += " " + line.rstrip().removesuffix("\\")
            if not line.rstrip().endswith("\\"):
                code.append(pending)
                pending = None
            continue
        for match in INLINE.finditer(line):
            code.append(Snippet(path, n, match.group(2)))
        prose.append((n, INLINE.sub(lambda m: " " * len(m.group(0)), line), line))
    return prose, code


# ---- commands and flags -------------------------------------------------------------------------

INVOCATION = re.compile(r"(?:^|(?<=[\s`(/\[]))adinspect(?:\.cli)?[ \t]+([a-z][\w-]*)")
FLAG = re.compile(r"^[\[(]*(--[a-z0-9][\w-]*)")
COMMAND_END = re.compile(r"\s(?:#|\||&&|;|>)\s|\s#")


@dataclass
class Invocation:
    where: str
    words: list[str]
    flags: list[str]
    complete: bool = False


def invocations(snippet: Snippet) -> Iterator[Invocation]:
    """Every `adinspect <command> [<sub-command>] ... --flag` in a snippet, up to a comment or pipe."""
    text = snippet.text
    for match in INVOCATION.finditer(text):
        rest = COMMAND_END.split(text[match.end() :], maxsplit=1)[0]
        tokens = rest.split()
        words = [match.group(1)]
        if tokens and re.fullmatch(r"[a-z][\w-]*", tokens[0]):
            words.append(tokens[0])  # maybe a sub-command; decided against the tree
        flags: list[str] = []
        for token in tokens:
            if token == "--":  # what follows goes to another program (serve ... -- tritonserver flags)
                break
            for part in token.split("|"):
                flag = FLAG.match(part.split("=", 1)[0])
                if flag:
                    flags.append(flag.group(1))
        yield Invocation(snippet.where(), words, flags, complete=snippet.block)


def check_invocation(inv: Invocation, tree: Command) -> list[str]:
    name = inv.words[0]
    if name not in tree.subcommands:
        known = ", ".join(sorted(tree.subcommands))
        return [f"{inv.where}: `adinspect {name}` is not a command of `adinspect --help` (known: {known})"]
    node, shown = tree.subcommands[name], f"adinspect {name}"
    if node.subcommands:
        if len(inv.words) < 2 or inv.words[1] not in node.subcommands:
            known = ", ".join(sorted(node.subcommands))
            return [f"{inv.where}: `{shown}` needs one of its sub-commands ({known})"]
        node, shown = node.subcommands[inv.words[1]], f"{shown} {inv.words[1]}"
    problems = [
        f"{inv.where}: `{shown}` has no flag {flag} (see `{shown} --help`)"
        for flag in inv.flags
        if flag not in node.flags | {"--help"}
    ]
    if inv.complete and "--help" not in inv.flags:
        problems += [
            f"{inv.where}: `{shown}` needs {flag}, which this command line lacks"
            for flag in sorted(node.required - set(inv.flags))
        ]
    return problems


def test_every_shown_command_and_flag_exists() -> None:
    tree = command_tree()
    assert {"fit", "serve", "repo"} <= set(tree.subcommands), "the command tree was not read"
    problems: list[str] = []
    seen = 0
    for path in doc_files():
        for snippet in _prose_and_code(path)[1]:
            for inv in invocations(snippet):
                seen += 1
                problems += check_invocation(inv, tree)
    assert seen > 50, f"only {seen} adinspect command lines found in README.md and docs/"
    assert not problems, "\n".join(problems)


def test_the_checker_catches_unknown_commands_and_flags() -> None:
    fit = Command({"--data", "--out"}, required={"--out"})
    tree = Command(subcommands={"fit": fit, "repo": Command(subcommands={"build": Command()})})
    text = "adinspect fit --data D --dta E [--ovr] | adinspect repo --x # --y"
    found = [p for inv in invocations(Snippet(Path("x"), 1, text)) for p in check_invocation(inv, tree)]
    assert found == [
        "x:1: `adinspect fit` has no flag --dta (see `adinspect fit --help`)",
        "x:1: `adinspect fit` has no flag --ovr (see `adinspect fit --help`)",
        "x:1: `adinspect repo` needs one of its sub-commands (build)",
    ]
    in_block = Snippet(Path("x"), 2, text, block=True)
    assert "x:2: `adinspect fit` needs --out, which this command line lacks" in [
        p for inv in invocations(in_block) for p in check_invocation(inv, tree)
    ]


PY_IMPORT = re.compile(r"^\s*from\s+(adinspect[\w.]*)\s+import\s+([\w, ]+)|^\s*import\s+(adinspect[\w.]*)")


def test_every_shown_python_import_works() -> None:
    """`from adinspect.x import Y` in the docs' code: the names users are told to import exist."""
    import importlib

    problems: list[str] = []
    for path in doc_files():
        for snippet in _prose_and_code(path)[1]:
            match = PY_IMPORT.match(snippet.text) if snippet.block else None
            if match is None:
                continue
            module = match.group(1) or match.group(3)
            try:
                imported = importlib.import_module(module)
            except ImportError as exc:
                problems.append(f"{snippet.where()}: cannot import {module} ({exc})")
                continue
            names = [n.strip() for n in (match.group(2) or "").split(",") if n.strip()]
            problems += [
                f"{snippet.where()}: {module} has no {name}" for name in names if not hasattr(imported, name)
            ]
    assert not problems, "\n".join(problems)


# ---- links --------------------------------------------------------------------------------------

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: markup dropped, lower case, punctuation removed, spaces → '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[`*]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    for _, _, line in _prose_and_code(path)[0]:
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return frozenset(found)


def links(path: Path) -> Iterator[tuple[int, str]]:
    for n, line, _ in _prose_and_code(path)[0]:
        for match in LINK.finditer(line):
            yield n, match.group(1)
        ref = REF_LINK.match(line)
        if ref:
            yield n, ref.group(1)


def check_link(path: Path, line: int, target: str) -> str | None:
    if target.startswith(SCHEMES):
        return None
    where = f"{_rel(path)}:{line}: link {target!r}"
    file_part, _, anchor = target.partition("#")
    dest = (path.parent / file_part).resolve() if file_part else path
    if not dest.is_relative_to(REPO):
        return f"{where} leaves the repository (name such files in text, not as links)"
    if not dest.exists():
        return f"{where}: {_rel(dest) if dest.is_relative_to(REPO) else dest} does not exist"
    if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
        return f"{where}: {_rel(dest)} has no heading with the anchor #{anchor}"
    return None


def test_every_relative_link_resolves() -> None:
    problems = [
        problem
        for path in doc_files()
        for n, target in links(path)
        if (problem := check_link(path, n, target)) is not None
    ]
    assert not problems, "\n".join(problems)


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    reached, todo = {README}, [README]
    while todo:
        page = todo.pop()
        for _, target in links(page):
            file_part = target.partition("#")[0]
            if not file_part or target.startswith(SCHEMES):
                continue
            dest = (page.parent / file_part).resolve()
            if dest.suffix == ".md" and dest.exists() and dest not in reached:
                reached.add(dest)
                todo.append(dest)
    missing = [_rel(p) for p in doc_files() if p not in reached]
    assert not missing, f"docs pages no link leads to from README.md: {', '.join(missing)}"


def test_slugs_follow_github() -> None:
    assert slug("Serving on Triton and the line client") == "serving-on-triton-and-the-line-client"
    assert slug("Snapping masks to the image (GrabCut)") == "snapping-masks-to-the-image-grabcut"
    assert slug("`inspect_<product>` on the cpu flavour") == "inspect_product-on-the-cpu-flavour"
    assert slug("Zero-shot (MuSc) and cleaning") == "zero-shot-musc-and-cleaning"


# ---- the front page -----------------------------------------------------------------------------


def test_readme_is_a_front_page() -> None:
    n = len(README.read_text().splitlines())
    assert n <= README_MAX_LINES, f"README.md: {n} lines, at most {README_MAX_LINES}; move detail to docs/"


WORK_ITEM = re.compile(r"(?i)\b(?:issues?|items?|stops?)\s*#?\d+|(?<![\w/#&])#\d+\b")


@pytest.mark.parametrize("path", doc_files(), ids=_rel)
def test_no_work_item_numbers(path: Path) -> None:
    hits = [
        f"{_rel(path)}:{n}: {m.group(0)!r}"
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        for m in WORK_ITEM.finditer(line)
    ]
    assert not hits, "internal work-item references mean nothing to a reader:\n" + "\n".join(hits)
