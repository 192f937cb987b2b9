"""The serving path imports without torch; TensorRT is imported lazily with a clear error."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_serving_modules_import_without_torch() -> None:
    code = (
        "import sys\n"
        "import adinspect.client, adinspect.repository.build, adinspect.server.launch\n"
        "import adinspect.benchmarks.perf\n"
        "import adinspect.repository.steps, adinspect.benchmarks.serving\n"
        "import adinspect.repository.monitoring, adinspect.benchmarks.soak, adinspect.benchmarks.fault\n"
        "import adinspect.benchmarks.malformed, adinspect.server.reload, adinspect.repository.integrity\n"
        "import adinspect.benchmarks.load, adinspect.runtime, adinspect.runtime.click\n"
        "import adinspect.annotate.server\n"
        "from adinspect.cli import build_parser\n"
        "build_parser()  # every command registered (zero-shot, annotate, training) without loading torch\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'timm'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_build_trt_without_tensorrt_fails_with_a_clear_message(tmp_path: Path) -> None:
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"")
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "export" / "build_trt.py"),
            str(onnx_file),
            "--out",
            str(tmp_path / "m.plan"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert "TensorRT" in done.stderr and "pip install tensorrt" in done.stderr
    assert "Traceback" not in done.stderr
