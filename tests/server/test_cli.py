"""The serving sub-commands (`repo`, `serve`, `inspect`, `bench --serving`), through a parser built
the way adinspect.cli wires them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from servers import needs_triton

from adinspect.benchmarks.cli import add_bench_serving_arguments
from adinspect.client import cli as client_cli
from adinspect.errors import InputError
from adinspect.server import cli as server_cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adinspect")
    sub = parser.add_subparsers(dest="command", required=True)
    server_cli.add_commands(sub)
    client_cli.add_commands(sub)
    bench = sub.add_parser("bench")
    add_bench_serving_arguments(bench)
    return parser


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


def test_repo_build_command(served_packages: list[Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "model_repository"
    code = _run(
        ["repo", "build", "--models", *map(str, served_packages), "--flavor", "gpu", "--out", str(out)]
    )
    assert code == 0
    assert "inspect_gadget" in capsys.readouterr().out
    assert (out / "inspect_widget" / "config.pbtxt").is_file()


def test_repo_build_flags_set_batching_and_bad_values_name_the_flag(
    served_packages: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "model_repository"
    base = ["repo", "build", "--models", str(served_packages[0]), "--out", str(out)]
    assert _run([*base, "--max-queue-delay-us", "750", "--threads", "1"]) == 0
    config = (out / "inspect_widget" / "config.pbtxt").read_text()
    assert "max_queue_delay_microseconds: 750" in config
    assert 'string_value: "1"' in config.split("intra_op_threads")[1]
    with pytest.raises(InputError, match="--max-batch-size"):
        _run([*base, "--max-batch-size", "0"])


def test_raw_pixels_are_accepted_only_at_the_fixed_size_asked_for(
    served_packages: list[Path], tmp_path: Path
) -> None:
    from servers import parse_config

    out = tmp_path / "model_repository"
    base = ["repo", "build", "--models", str(served_packages[0]), "--out", str(out)]
    assert _run([*base, "--raw-size", "480x640", "--decode-budget-mib", "256"]) == 0
    config = parse_config(out / "inspect_widget" / "config.pbtxt")
    raw = {t.name: list(t.dims) for t in config.input}["image_raw"]
    assert raw == [480, 640, 3]  # Triton refuses any other shape before copying it
    assert config.parameters["raw_size"].string_value == "480x640"
    assert config.parameters["max_decode_bytes"].string_value == str(256 * 2**20)
    assert _run(base) == 0
    assert "image_raw" not in {t.name for t in parse_config(out / "inspect_widget" / "config.pbtxt").input}
    with pytest.raises(InputError, match="--raw-size"):
        _run([*base, "--raw-size", "4x4"])
    with pytest.raises(InputError, match="--raw-size must be HEIGHTxWIDTH"):
        _run([*base, "--raw-size", "big"])


@pytest.mark.triton
def test_inspect_command_prints_one_line_per_image_and_writes_json(
    triton_server, synthetic_root, tmp_path, capsys
):
    folder = synthetic_root / "test"  # good/000.png, crack/000.png, ...: one name each
    out = tmp_path / "results.json"
    code = _run(
        ["inspect", "--url", triton_server.grpc_url, "--product", "widget", str(folder), "--json", str(out)]
    )
    assert code == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    results = json.loads(out.read_text())
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    assert len(lines) == len(results) == len(names) and sorted(r["image"] for r in results) == names
    assert {r["product"] for r in results} == {"widget"}
    for line, result in zip(lines, results, strict=True):
        assert line.split()[0] == result["verdict"].upper()
        if result["verdict"] == "fail":  # why it failed, on its line
            assert line.endswith(f"{result['image']}  ({result['reason']})"), line


def test_bench_serving_options_parse() -> None:
    args = _parser().parse_args(["bench", "--serving", "--concurrency", "1,4", "--url", "127.0.0.1:8001"])
    assert args.serving and args.concurrency == "1,4" and args.requests == 64 and not args.no_perf_analyzer


@pytest.mark.triton
@needs_triton
def test_serve_command_starts_streams_and_stops_on_ctrl_c(identity_repository: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import urllib.request

    from adinspect.server.launch import free_port

    ports = [str(free_port()) for _ in range(3)]
    argv = [
        "serve",
        "--unverified",  # a hand-written repository: no manifest from `repo build`
        "--repo",
        str(identity_repository),
        "--grpc-port",
        ports[0],
        "--http-port",
        ports[1],
        "--metrics-port",
        ports[2],
        "--log-file",
        str(tmp_path / "triton.log"),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "adinspect.cli", *argv],
        cwd=tmp_path,  # installed behaviour: not the source folder
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stderr:
            if "Triton ready" in line:
                break
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[1]}/v2/health/ready", timeout=5) as response:
            assert response.status == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Triton stopped" in err
    assert "successfully loaded 'identity'" in out  # the log is streamed to stdout
    assert "successfully loaded 'identity'" in (tmp_path / "triton.log").read_text()


def test_serve_refuses_a_repository_nothing_vouches_for(identity_repository: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "adinspect.cli", "serve", "--repo", str(identity_repository)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "no adinspect_repository.json" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
