"""The Train button's job end to end: accepted labels → `label` → `train-seg` → a seg model that loads.

Runs against a copy of the package with the tiny click model (tests/annotate/conftest.py), with
the cheapest train-seg settings (2 + 2 steps of batch 2 on the 8 synthetic anomalies train-click
already cached): the test checks the plumbing, not the accuracy. A failing job (an accepted image
deleted before training) must end `failed` with the command's error as its last line.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from adinspect.imageio import read_mask

from .conftest import request

pytestmark = pytest.mark.slow
# the cheapest train-seg: tiny step counts and the synthetic anomalies train-click cached (n=8);
# served whatever it misses, so the inspector below runs it
TINY_TRAIN = {"pretrain_steps": 2, "finetune_steps": 2, "batch_size": 2, "n_synthetic": 8, "serve": "seg"}


@pytest.fixture()
def own_package(click_package: Path, tmp_path: Path) -> Path:
    """A copy of the click package: training writes seg.onnx into it."""
    return Path(shutil.copytree(click_package, tmp_path / "widget"))


@pytest.fixture()
def own_data(synthetic_root: Path, tmp_path: Path) -> Path:
    """A copy of the synthetic dataset, so a test may delete an image."""
    return Path(shutil.copytree(synthetic_root, tmp_path / "data"))


@contextmanager
def _serve(package: Path, data: Path, labels: Path) -> Iterator[str]:
    from adinspect.annotate.server import ServerThread
    from adinspect.annotate.service import Annotator

    with ServerThread(Annotator(package, data, labels)) as url:
        yield url


def accept_simulated(url: str, data: Path, n_per_type: int = 1, n_clicks: int = 3) -> list[str]:
    """Accept n images of each defect type with the click simulator's clicks; their names."""
    from adinspect.train.clicks import next_click

    _, listing = request(f"{url}/api/images")
    accepted = []
    for defect_type in listing["defect_types"]:  # type: ignore[index]
        items = [i for i in listing["images"] if i["folder_type"] == defect_type][:n_per_type]  # type: ignore[index]
        for item in items:
            stem = Path(item["name"]).stem
            gt = read_mask(data / "ground_truth" / defect_type / f"{stem}_mask.png")
            pred, clicked, clicks = np.zeros_like(gt), np.zeros_like(gt), []
            for _ in range(n_clicks):
                c = next_click(gt, pred, clicked)
                if c is None:
                    break
                clicked[c.y, c.x] = True
                clicks.append({"x": c.x, "y": c.y, "positive": c.positive})
            body = {"image": item["id"], "defect_type": defect_type, "clicks": clicks}
            status, decision = request(f"{url}/api/accept", body)
            assert status == 200, decision
            accepted.append(item["name"])
    return accepted


def wait_for_training(url: str, timeout: float = 600) -> dict:
    """Poll GET /api/train as the page does until the job is no longer running."""
    deadline = time.monotonic() + timeout
    seen_running = []
    while time.monotonic() < deadline:
        status, job = request(f"{url}/api/train")
        assert status == 200 and isinstance(job, dict)
        if job["state"] != "running":
            job["seen_running"] = seen_running
            return job
        seen_running.append((job["step"], job["command"]))
        time.sleep(0.5)
    raise AssertionError(f"training still running after {timeout} s: {job}")


def test_train_button_makes_a_seg_model_the_inspector_runs(
    own_package: Path, own_data: Path, tmp_path: Path
) -> None:
    from adinspect.package import ModelPackage
    from adinspect.runtime.inspector import Inspector
    from adinspect.runtime.seg import seg_info

    labels = tmp_path / "labels"
    assert seg_info(ModelPackage.load(own_package)) is None
    with _serve(own_package, own_data, labels) as url:
        status, answer = request(f"{url}/api/train", {**TINY_TRAIN, "steps": 3})
        assert status == 400 and "steps" in answer["error"]  # type: ignore[index]
        status, answer = request(f"{url}/api/train", TINY_TRAIN)
        assert status == 409 and "nothing accepted yet" in answer["error"]  # type: ignore[index]

        accepted = accept_simulated(url, own_data)
        status, job = request(f"{url}/api/train", TINY_TRAIN)
        assert status == 202 and job["state"] == "running", job  # type: ignore[index]
        status, again = request(f"{url}/api/train", TINY_TRAIN)
        assert status == 409 and "already running" in again["error"]  # type: ignore[index]
        job = wait_for_training(url)
        log = (labels / "train.log").read_text()
        assert job["state"] == "done" and job["returncode"] == 0, log
        assert (job["step"], job["steps"], job["command"]) == (2, 2, "train-seg")
        assert {c for _, c in job["seen_running"]} <= {"label", "train-seg"}
        assert "$ adinspect.cli label" in log and "--clicks" in log and "ADClick-Seg trained" in log
        assert "--pretrain-steps=2" in log and "--n-synthetic=8" in log and "--serve=seg" in log
        last = job["last_line"]
        assert last.startswith("ADClick-Seg trained: ") and "the package serves seg" in last

    # the pseudo labels are the accepted images, and the package now carries a seg model that loads
    pseudo = sorted(p.name for p in (own_package / "labels").rglob("*.png"))
    assert len(pseudo) == len(accepted) > 0, (pseudo, accepted)
    info = seg_info(ModelPackage.load(own_package))
    assert info is not None and info.onnx.name == "seg.onnx"
    assert list(info.defect_types) == ["crack", "scratch", "spot"] and np.isfinite(info.threshold)
    inspector = Inspector(own_package)
    assert inspector.seg is not None and inspector.threshold == info.threshold
    result = inspector.inspect_file(own_data / accepted[0]).result
    assert result.defect_type in (info.defect_types if info.names_types else (None,))
    assert np.isfinite(result.score)
    assert result.threshold == info.threshold and result.verdict in ("pass", "fail")


def test_a_failing_training_ends_failed_with_its_error(
    own_package: Path, own_data: Path, tmp_path: Path
) -> None:
    labels = tmp_path / "labels"
    with _serve(own_package, own_data, labels) as url:
        (gone, *_) = accept_simulated(url, own_data)
        (own_data / gone).unlink()  # the accepted image disappears before training
        status, job = request(f"{url}/api/train", TINY_TRAIN)
        assert status == 202, job
        job = wait_for_training(url, timeout=120)
    assert job["state"] == "failed" and job["returncode"] == 2 and job["command"] == "label"
    assert job["last_line"].startswith("error:") and "no file" in job["last_line"], job
    assert (job["step"], job["steps"]) == (1, 2)
    assert not (own_package / "seg.onnx").exists()
