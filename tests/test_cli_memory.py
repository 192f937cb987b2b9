"""The command line asks PyTorch for transparent huge pages before any command loads torch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from adinspect.cli import HUGE_PAGES

THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")

# What a command does: the CLI entry first (here with no command: usage, exit 2), then torch and one
# large tensor; the process's huge-page-backed anonymous memory is read back from the kernel.
PROBE = """
import os, sys
from adinspect.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
import torch
x = torch.ones(64 * 2**20 // 4)
rollup = open("/proc/self/smaps_rollup").read()
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), rollup)
"""


def _run(env_value: str | None) -> tuple[str, int]:
    env = {"PATH": "/usr/bin:/bin"}
    if env_value is not None:
        env["THP_MEM_ALLOC_ENABLE"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout
    value = out.split()[0]
    huge_kb = int(re.search(r"AnonHugePages:\s+(\d+) kB", out).group(1))  # type: ignore[union-attr]
    return value, huge_kb


@pytest.mark.skipif(
    not THP_MODE.exists() or "[never]" in THP_MODE.read_text(),
    reason="this kernel offers no transparent huge pages",
)
def test_large_tensors_get_huge_pages_unless_the_user_says_no():
    value, huge_kb = _run(None)
    assert value == HUGE_PAGES[1]
    mine, plain_kb = _run("0")  # a user's own setting is kept
    assert mine == "0"
    # most of the 64 MB tensor on huge pages, unless the kernel has none free right now
    assert huge_kb > plain_kb and huge_kb >= 2 * 1024
