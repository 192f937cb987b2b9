"""Reading tritonserver's log (its own error lines, and the error a failed start raises with them)
and its metrics (requests still queued)."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Sequence

_NOISE = ("CudaDriverHelper", "NVML", "DCGM", "pinned memory", "CUDA memory pool")


_GLOG_PREFIX = re.compile(r"^[EWI]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] +")


def triton_error_lines(lines: Sequence[str]) -> list[str]:
    """Triton's own error lines, prefixes stripped, without the no-GPU noise of a CPU host.

    Kept: E-level log lines, `error: ...`, protobuf parse errors and UNAVAILABLE model-table rows.
    """
    errors = []
    for line in lines:
        if not (
            _GLOG_PREFIX.match(line)
            and line.startswith("E")
            or line.lower().startswith(("error:", "[libprotobuf error"))
            or "UNAVAILABLE:" in line
        ):
            continue
        if any(noise in line for noise in _NOISE):
            continue
        text = _GLOG_PREFIX.sub("", line).strip().strip("|").strip().strip('"').strip()
        text = re.sub(r"\s*\|\s*", " | ", text)
        if text not in errors:
            errors.append(text)
    return errors


class ServerStartError(RuntimeError):
    """tritonserver exited or did not become ready.

    Attributes:
        reason: Triton's last error line (e.g. "failed to start GRPC service: ... already in use").
        log_tail: Triton's last log lines.
        returncode: its exit code, None if it was still running.
    """

    def __init__(self, message: str, log_tail: Sequence[str] = (), returncode: int | None = None) -> None:
        self.log_tail = list(log_tail)
        self.returncode = returncode
        errors = triton_error_lines(self.log_tail)
        self.reason = "; ".join(errors[-3:])
        tail = "\n".join(f"    {line}" for line in self.log_tail) or "    (no output)"
        head = f"{message}\n  Triton's reason: {self.reason}" if self.reason else message
        super().__init__(f"{head}\n  last lines of tritonserver's log:\n{tail}")


def pending_requests(metrics_url: str) -> int:
    """Requests Triton has queued for its models (`nv_inference_pending_request_count` summed; 0
    when the metrics cannot be read)."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=1.0) as response:
            text = response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return 0
    prefix = "nv_inference_pending_request_count{"
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines() if line.startswith(prefix))
