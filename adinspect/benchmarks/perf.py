"""Run NVIDIA's perf_analyzer against a served model and read back its CSV.

The real binary ships as `bin/perf_analyzer` in the manylinux wheel of `tritonclient==2.51.0`
(PyPI's `perf-analyzer` package is a placeholder). It links against `libcudart.so.12`, taken from
PyPI's `nvidia-cuda-runtime-cu12` (no GPU needed), and Debian's `libb64-0d`.
"""

from __future__ import annotations

import base64
import csv
import importlib.metadata
import importlib.util
import json
import os
import struct
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


class PerfAnalyzerNotFoundError(RuntimeError):
    """perf_analyzer or one of its libraries is missing."""


class PerfAnalyzerError(RuntimeError):
    """perf_analyzer ran and failed; the message carries its output."""


@dataclass(frozen=True)
class PerfAnalyzer:
    binary: Path
    lib_dirs: tuple[Path, ...]
    version: str

    def env(self) -> dict[str, str]:
        """The child's environment: libcudart's directory first on LD_LIBRARY_PATH."""
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            [*map(str, self.lib_dirs), *filter(None, [env.get("LD_LIBRARY_PATH")])]
        )
        return env


def _cudart_dir() -> Path:
    spec = importlib.util.find_spec("nvidia.cuda_runtime")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            lib = Path(location) / "lib"
            if (lib / "libcudart.so.12").exists():
                return lib
    raise PerfAnalyzerNotFoundError(
        "libcudart.so.12 not found: perf_analyzer links against it (no GPU needed); "
        "install nvidia-cuda-runtime-cu12 (`.ci/install_triton.sh`)"
    )


def find_perf_analyzer() -> PerfAnalyzer:
    """Locate perf_analyzer in the tritonclient wheel and check it can load its libraries.

    Raises:
        PerfAnalyzerNotFoundError: naming what is missing and how to install it.
    """
    try:
        dist = importlib.metadata.distribution("tritonclient")
    except importlib.metadata.PackageNotFoundError as exc:
        raise PerfAnalyzerNotFoundError(
            "perf_analyzer not found: tritonclient==2.51.0 is not installed (`.ci/install_triton.sh`)"
        ) from exc
    candidates = [f for f in dist.files or () if f.name == "perf_analyzer" and f.parent.name == "bin"]
    binary = Path(str(dist.locate_file(candidates[0]))).resolve() if candidates else None
    if binary is None or not binary.exists():
        raise PerfAnalyzerNotFoundError(
            f"tritonclient {dist.version} has no bin/perf_analyzer; install the manylinux wheel of "
            "tritonclient==2.51.0 (`.ci/install_triton.sh`)"
        )
    analyzer = PerfAnalyzer(binary=binary, lib_dirs=(_cudart_dir(),), version=dist.version)
    probe = subprocess.run(
        [str(binary), "--version"],
        env=analyzer.env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = probe.stdout + probe.stderr
    if "error while loading shared libraries" in output:
        missing = output.split("error while loading shared libraries:")[-1].split(":")[0].strip()
        hint = (
            " (Debian package libb64-0d: `.ci/install_triton.sh --perf-analyzer`)" if "b64" in missing else ""
        )
        raise PerfAnalyzerNotFoundError(f"perf_analyzer at {binary} cannot load {missing}{hint}")
    return analyzer


@dataclass(frozen=True)
class PerfRow:
    """One concurrency level of perf_analyzer's CSV; latencies in milliseconds."""

    concurrency: int
    throughput: float  # inferences per second
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float  # mean over requests, from the component averages
    server_queue_ms: float
    server_compute_ms: float


@dataclass(frozen=True)
class PerfReport:
    model: str
    csv_path: Path
    rows: list[PerfRow]
    command: list[str]
    failures: dict[int, str]  # concurrency → perf_analyzer's last lines, for levels that failed

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "csv": str(self.csv_path),
            "command": self.command,
            "rows": [asdict(row) for row in self.rows],
            "failures": {str(k): v for k, v in self.failures.items()},
        }


def parse_perf_csv(path: Path) -> list[PerfRow]:
    """Read perf_analyzer's `-f` CSV (latencies in microseconds) into `PerfRow`s (milliseconds).

    Raises:
        PerfAnalyzerError: a column perf_analyzer always writes is missing.
    """
    with path.open(newline="") as handle:
        records = list(csv.DictReader(handle))
    needed = ("Concurrency", "Inferences/Second", "p50 latency", "p90 latency", "p95 latency", "p99 latency")
    rows = []
    for record in records:
        missing = [key for key in needed if key not in record]
        if missing:
            raise PerfAnalyzerError(f"{path} lacks columns {missing}; got {sorted(record)}")

        def us(key: str, rec: Mapping[str, str] = record) -> float:
            return float(rec.get(key) or 0.0) / 1000.0

        compute = sum(
            us(k) for k in ("Server Compute Input", "Server Compute Infer", "Server Compute Output")
        )
        # 2.51 writes no "Avg latency": the average is the sum of its component columns.
        parts = ("Client Send", "Network+Server Send/Recv", "Server Queue", "Client Recv")
        avg = us("Avg latency") if record.get("Avg latency") else sum(us(k) for k in parts) + compute
        rows.append(
            PerfRow(
                concurrency=int(record["Concurrency"]),
                throughput=float(record["Inferences/Second"]),
                p50_ms=us("p50 latency"),
                p90_ms=us("p90 latency"),
                p95_ms=us("p95 latency"),
                p99_ms=us("p99 latency"),
                avg_ms=round(avg, 3),
                server_queue_ms=us("Server Queue"),
                server_compute_ms=round(compute, 3),
            )
        )
    return sorted(rows, key=lambda row: row.concurrency)


def write_input_data(path: Path, inputs: Mapping[str, np.ndarray | bytes]) -> Path:
    """Write one request's inputs in perf_analyzer's `--input-data` JSON format.

    Args:
        inputs: tensor name -> array (its shape without the batch axis is sent) or bytes (one
            TYPE_STRING element of shape [1]; perf_analyzer sends "b64" content as-is, so it is
            written in Triton's serialized BYTES form: a 4-byte little-endian length, then the data).
    """
    entry: dict[str, object] = {}
    for name, value in inputs.items():
        if isinstance(value, bytes):
            serialized = struct.pack("<I", len(value)) + value
            entry[name] = {"b64": base64.b64encode(serialized).decode("ascii"), "shape": [1]}
        else:
            array = np.asarray(value)
            entry[name] = {"content": array.reshape(-1).tolist(), "shape": list(array.shape)}
    path.write_text(json.dumps({"data": [entry]}))
    return path


# long: the docstring documents its options; the body merges the levels' CSVs (`_measure_level` runs one)
def run_perf_analyzer(
    model: str,
    url: str,
    out_dir: Path,
    *,
    concurrency: Sequence[int] = (1, 2, 4, 8),
    input_data: Path | str = "random",
    shapes: Mapping[str, Sequence[int]] | None = None,
    measurement_interval_ms: int = 2000,
    max_trials: int = 5,
    stability_percentage: float = 20.0,
    timeout_s: float = 600.0,
    extra_args: Sequence[str] = (),
    analyzer: PerfAnalyzer | None = None,
) -> PerfReport:
    """Run perf_analyzer over gRPC at each concurrency and keep its CSV in `out_dir`.

    Args:
        model: served model name.
        url: "host:grpc_port".
        concurrency: levels measured, in order (run as one perf_analyzer call per level so any
            list works, e.g. 1, 2, 4, 8).
        input_data: "random", "zero", or a JSON file from `write_input_data`.
        shapes: shapes of variable-size inputs for "random"/"zero" data, without the batch axis.

    Returns:
        The parsed rows; `csv_path` is `out_dir/perf_<model>.csv` with every level that succeeded;
        levels where perf_analyzer failed (e.g. no stable measurement on a busy host) are listed
        in `failures` with its reason.

    Raises:
        PerfAnalyzerError: perf_analyzer failed at every level (its output in the message).
    """
    analyzer = analyzer or find_perf_analyzer()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged = out_dir / f"perf_{model}.csv"
    header: list[str] | None = None
    body: list[list[str]] = []
    command: list[str] = []
    failures: dict[int, str] = {}

    def command_for(level: int, interval_ms: int, part: Path) -> list[str]:
        return [
            str(analyzer.binary),
            *("-m", model, "-u", url, "-i", "grpc", "--concurrency-range", f"{level}:{level}"),
            *("--input-data", str(input_data), "--measurement-interval", str(interval_ms)),
            *("--max-trials", str(max_trials), "--stability-percentage", str(stability_percentage)),
            *("-f", str(part)),
            *[arg for name, dims in (shapes or {}).items() for arg in ("--shape", f"{name}:{_dims(dims)}")],
            *extra_args,
        ]

    for level in concurrency:
        part = out_dir / f"perf_{model}_c{level}.csv"
        command, failure = _measure_level(
            analyzer, command_for, level, part, measurement_interval_ms, timeout_s
        )
        if failure is not None:
            failures[level] = f"perf_analyzer on {model!r} at concurrency {level} {failure}"
            continue
        with part.open(newline="") as handle:
            lines = list(csv.reader(handle))
        header = header or lines[0]
        body.extend(line for line in lines[1:] if line)
        part.unlink()
    if header is None:
        raise PerfAnalyzerError(
            "\n".join(failures.values()) or f"perf_analyzer measured nothing on {model!r}"
        )
    with merged.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(body)
    return PerfReport(
        model=model, csv_path=merged, rows=parse_perf_csv(merged), command=command, failures=failures
    )


def _measure_level(
    analyzer: PerfAnalyzer,
    command_for: Callable[[int, int, Path], list[str]],
    level: int,
    part: Path,
    interval_ms: int,
    timeout_s: float,
) -> tuple[list[str], str | None]:
    """One concurrency level into the CSV `part` (perf_analyzer's output beside it as .log); the
    command and None, or why it failed. A level with no stable measurement (a busy host) is tried
    once more with windows twice as long."""
    command: list[str] = []
    failure = None
    for interval in (interval_ms, 2 * interval_ms):
        command = command_for(level, interval, part)
        done = subprocess.run(
            command, env=analyzer.env(), capture_output=True, text=True, timeout=timeout_s, check=False
        )
        output = done.stdout + done.stderr
        part.with_suffix(".log").write_text(output)
        if done.returncode == 0 and part.exists():
            return command, None
        failure = f"exited with {done.returncode}:\n{output.strip()[-1500:]}"
        if "stable measurement" not in output:
            break
    return command, failure


def _dims(dims: Sequence[int]) -> str:
    return ",".join(map(str, dims))


def perf_analyzer_available() -> str | None:
    """None when perf_analyzer can run here, else the reason it cannot."""
    try:
        find_perf_analyzer()
    except PerfAnalyzerNotFoundError as exc:
        return str(exc)
    return None
