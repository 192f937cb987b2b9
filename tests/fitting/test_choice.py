"""`fit --auto` on a constructed product: parts that are not fixtured need global matching, and the
choice, its rule and every candidate's evidence are written into the package."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from adinspect.config import preset_config
from adinspect.package import ModelPackage

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def loose_parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small object product whose good parts lie anywhere within ±20 % of the frame (no fixture)."""
    from adinspect.data.capture import misalign, random_offset
    from adinspect.data.synthetic import make_synthetic_dataset
    from adinspect.imageio import read_image, write_png

    root = make_synthetic_dataset(
        tmp_path_factory.mktemp("loose") / "loose", n_train=24, n_test_good=2, n_test_defect=3, size=128
    )
    rng = np.random.default_rng(1)
    for path in sorted((root / "train" / "good").iterdir()):
        write_png(path, misalign(read_image(path), random_offset(0.2, 128, rng)))
    return root


def _config():
    return preset_config("cpu", "loose", method={"image_size": 128})


def test_auto_prefers_global_matching_for_parts_that_are_not_fixtured(loose_parts: Path) -> None:
    from adinspect.data.datasets import open_dataset
    from adinspect.fitting.choice import CRITERIA, Candidate, choose

    choice = choose(
        open_dataset(loose_parts).train, _config(), progress=False, backbones=["efficientnet_lite0"]
    )
    local = Candidate("efficientnet_lite0", "local", "none")
    upright = {Candidate("efficientnet_lite0", m, n) for m in ("local", "global") for n in ("none", "zscore")}
    turned = {  # the picked matching, at quarter and eighth turns
        replace(c, rotations=r) for c in upright if c.matching == "global" for r in (4, 8)
    }
    assert set(choice.evidence) == upright | turned
    assert all(set(metrics) == set(CRITERIA) for metrics in choice.evidence.values())
    assert choice.chosen.matching == "global" and choice.default == local
    assert choice.criterion(choice.chosen) > choice.criterion(local) + 0.01
    config = choice.apply(_config())
    assert config.method.matching == "global" and config.method.position_norm == choice.chosen.position_norm


def test_turns_whose_bank_would_not_fit_the_memory_budget_are_not_tried(loose_parts: Path) -> None:
    from adinspect.data.datasets import open_dataset
    from adinspect.fitting.choice import choose
    from adinspect.fitting.fit import _fits

    goods = open_dataset(loose_parts).train
    asked = []

    def affordable(candidate) -> bool:
        asked.append(candidate.rotations)
        return candidate.rotations < 8

    choice = choose(goods, _config(), progress=False, backbones=["efficientnet_lite0"], affordable=affordable)
    assert asked == [4, 8] and {c.rotations for c in choice.evidence} == {1, 4}
    assert "8 turns not tried: the bank would exceed the memory budget" in choice.notes
    assert _fits(goods, _config()) and not _fits(goods, _config().model_copy(
        update={"scale": _config().scale.model_copy(update={"memory_budget_mb": 1})}
    ))  # fmt: skip


def test_fit_auto_writes_the_choice_and_its_evidence_into_the_package(
    loose_parts: Path, tmp_path: Path
) -> None:
    from adinspect.fitting.fit import CHOICE_JSON, fit_product

    out = tmp_path / "loose"
    report = fit_product(
        loose_parts, _config(), out, progress=False, auto=True, backbones=["efficientnet_lite0"]
    )
    package = ModelPackage.load(out)
    record = json.loads((out / CHOICE_JSON).read_text())
    assert CHOICE_JSON in package.manifest.files
    assert report.choice == record["chosen"] and package.manifest.choices is not None
    assert (
        package.manifest.choices["matching"] == package.config.method.matching == record["chosen"]["matching"]
    )
    # 2 matchings x 2 normalisations upright, then the picked matching's 2 at 4 and at 8 turns
    assert len(record["candidates"]) == 8 and record["rule"] == package.manifest.choices["rule"]
    card = (out / "model_card.md").read_text()
    assert "## Choices" in card and all(row["name"] in card for row in record["candidates"])


def test_other_backbones_are_explored_with_the_best_matching_even_where_the_default_stays() -> None:
    from adinspect.fitting.choice import Candidate, Choice

    local = Candidate("efficientnet_lite0", "local", "none")
    near = Candidate("efficientnet_lite0", "global", "none")
    choice = Choice(local, local, {}, 32, 0.0)
    choice.evidence[local] = {"image_auroc": 0.96, "pixel_ap": 0.68, "aupro": 0.96}
    choice.evidence[near] = {
        "image_auroc": 0.97,
        "pixel_ap": 0.69,
        "aupro": 0.965,
    }  # + 0.005: within the margin
    assert choice.pick() == local and choice.best() == near  # the default stays, global is explored
    wider = Candidate("efficientnet_lite2", "global", "none")
    choice.evidence[wider] = {"image_auroc": 0.98, "pixel_ap": 0.71, "aupro": 0.97}  # clearly ahead
    assert choice.pick() == wider


def test_large_maps_are_pooled_for_the_criteria_keeping_a_one_pixel_stroke() -> None:
    from adinspect.fitting.evidence import METRIC_PIXELS, pooled

    rng = np.random.default_rng(0)
    maps = rng.random((3, 640, 256)).astype(np.float32)
    masks = np.zeros((3, 640, 256), bool)
    masks[1, 101, 10:200] = True  # a crack one pixel wide, on an odd row
    averaged, hit = pooled(maps, masks)
    assert averaged.shape == hit.shape == (3, 320, 128)  # stride 2: 40,960 pixels, under 256²
    assert averaged.shape[1] * averaged.shape[2] <= METRIC_PIXELS
    np.testing.assert_allclose(averaged[2, 7, 9], maps[2, 14:16, 18:20].mean(), rtol=1e-6)
    assert hit[1, 50, 5:100].all() and hit.sum() == 95  # the stroke survives, nothing else is marked
    small = maps[:, :256, :256]
    kept, kept_masks = pooled(small, masks[:, :256, :256])
    assert kept is small and kept_masks.shape == (3, 256, 256)  # 256² is measured as it is
