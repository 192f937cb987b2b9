"""`label` → `train-seg` on the accepted labels, as a background job (subprocesses; they need torch).

The labelling server itself stays torch-free: the job runs `python -m adinspect.cli label
--clicks LABELS_DIR/clicks.json ...` and then `train-seg`, one after the other, writing their
output to LABELS_DIR/train.log. Progress is the current step and the log's last line (tqdm
redraws its bar with carriage returns, so the last segment is the current bar).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from adinspect.annotate.store import CLICKS

TRAIN_LOG = "train.log"


def train_commands(model_dir: Path, data_dir: Path, labels_dir: Path, seg_args: list[str]) -> list[list[str]]:
    """The two command lines: pseudo labels from the accepted clicks, then ADClick-Seg."""
    base = [sys.executable, "-m", "adinspect.cli"]
    common = ["--model", str(model_dir), "--data", str(data_dir)]
    return [
        [*base, "label", *common, "--clicks", str(Path(labels_dir) / CLICKS)],
        [*base, "train-seg", *common, *seg_args],
    ]


class TrainJob:
    """One run of the commands in a thread; `status()` is safe to call from any thread."""

    def __init__(self, commands: list[list[str]], log_path: Path) -> None:
        self.commands = commands
        self.log_path = Path(log_path)
        self.state = "running"  # running → done | failed
        self.step = 1  # the command running (1-based); the first from the start, so status() names it
        self.started = time.time()
        self.finished: float | None = None
        self.returncode: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with open(self.log_path, "w") as log:
            for n, cmd in enumerate(self.commands):
                self.step = n + 1
                log.write(f"$ {' '.join(cmd[2:])}\n")
                log.flush()
                proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
                self.returncode = proc.returncode
                if proc.returncode != 0:
                    self.state = "failed"
                    break
            else:
                self.state = "done"
        self.finished = time.time()

    def wait(self, timeout: float | None = None) -> str:
        self._thread.join(timeout)
        return self.state

    def status(self) -> dict:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            text = ""
        lines = [seg.strip() for line in text.splitlines() for seg in line.split("\r")[-1:] if seg.strip()]
        name = self.commands[self.step - 1][3]
        return {
            "state": self.state,
            "step": self.step,
            "steps": len(self.commands),
            "command": name,
            "last_line": lines[-1] if lines else "",
            "seconds": round((self.finished or time.time()) - self.started, 1),
            "returncode": self.returncode,
            "log": str(self.log_path),
        }
