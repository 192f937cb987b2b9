"""A part that lies at any rotation: the bank holds every good image turned (`method.rotations`),
`fit --auto` chooses that from the good images alone, and an image left out of the bank is left
out at every turn (out-of-fold scores and training residuals stay honest)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from adinspect.config import ConfigError, preset_config
from adinspect.imageio import write_png
from adinspect.package import ModelPackage

pytest.importorskip("torch")

N_TRAIN = 24


def _plate(
    rng: np.random.Generator, side: int, angle: float, spot: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """A plate with a notch, two holes and a bright bar (no symmetry), turned by `angle`; with
    `spot`, a dull spot near its middle. Returns the image and the defect's mask."""
    image = np.full((side, side, 3), 30, np.uint8)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])

    def at(x: float, y: float) -> tuple[int, int]:
        p = np.array([x, y]) * side @ turn.T + side / 2
        return int(p[0]), int(p[1])

    outline = [(-0.3, -0.2), (0.3, -0.2), (0.3, 0.2), (0.05, 0.2), (0.05, 0.05), (-0.3, 0.05)]
    cv2.fillPoly(image, [np.array([at(*p) for p in outline], np.int32)], (170, 160, 150))
    for x, y, r in ((-0.2, -0.1, 0.04), (0.2, 0.1, 0.025)):
        cv2.circle(image, at(x, y), int(r * side), (30, 30, 30), -1)
    cv2.line(image, at(-0.25, 0.0), at(-0.05, -0.15), (220, 220, 220), 3)
    mask = np.zeros((side, side), np.uint8)
    if spot:
        cv2.circle(mask, at(*rng.uniform(-0.1, 0.1, 2)), side // 25, 255, -1)
        image[mask > 0] = (90, 60, 60)
    noisy = image.astype(np.float32) + rng.normal(0, 3, image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8), mask


@pytest.fixture(scope="module")
def turned_parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 good plates at any rotation, 8 good and 8 spotted test plates (MVTec layout, 128 px)."""
    root = tmp_path_factory.mktemp("turned") / "plates"
    rng = np.random.default_rng(0)
    for folder, count, spot in (
        ("train/good", N_TRAIN, False),
        ("test/good", 8, False),
        ("test/spot", 8, True),
    ):
        (root / folder).mkdir(parents=True)
        for i in range(count):
            image, mask = _plate(rng, 128, rng.uniform(0, 2 * np.pi), spot)
            write_png(root / folder / f"{i:03d}.png", image)
            if spot:
                (root / "ground_truth/spot").mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / "ground_truth/spot" / f"{i:03d}_mask.png"), mask)
    return root


def _config(**method):
    return preset_config("cpu", "plates", method={"image_size": 128, **method})


def test_quarter_turns_need_a_square_input_and_fit_measures_what_the_input_allows() -> None:
    from adinspect.fitting.choice import turn_candidates

    with pytest.raises(ConfigError, match="rotations = 4 .* square input, not 640x256"):
        preset_config("cpu", "strip", method={"input_shape": [640, 256], "rotations": 4})
    with pytest.raises(ConfigError, match="rotations = 8 .* 45°.* square input, not 640x256"):
        preset_config("cpu", "strip", method={"input_shape": [640, 256], "rotations": 8})
    assert turn_candidates(_config()) == (1, 4, 8)
    strip = {"input_shape": [640, 256]}
    assert turn_candidates(preset_config("cpu", "strip", method=strip)) == (1,)  # a strip is not turned
    assert turn_candidates(preset_config("cpu", "strip", method={**strip, "rotations": 2})) == (2,)
    assert turn_candidates(_config(rotations=4)) == (4, 1, 8)


def test_eighth_turns_turn_the_same_way_as_quarter_turns() -> None:
    """A 45° turn is counter-clockwise like `np.rot90`, two of them are a quarter turn (inside the
    circle that stays in view), and multiples of 90° stay exact on the pixel grid."""
    from adinspect.geometry import turned

    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (64, 64, 3)).astype(np.uint8), (0, 0), 2)
    assert np.array_equal(turned(image, 2, 8), np.rot90(image))
    assert np.array_equal(turned(image, 4, 8), np.rot90(image, 2))
    twice = turned(turned(image, 1, 8), 1, 8)
    assert twice.shape == image.shape and twice.dtype == np.uint8
    yy, xx = np.mgrid[:64, :64]
    inside = (yy - 31.5) ** 2 + (xx - 31.5) ** 2 < 20**2
    error = np.abs(twice.astype(int) - np.rot90(image).astype(int))[inside].mean()
    assert error < 4 < np.abs(twice.astype(int) - np.rot90(image, 3).astype(int))[inside].mean()
    bar = np.zeros((65, 65), np.uint8)
    bar[32, 40:60] = 255  # a bar pointing right from the centre, turned 45° counter-clockwise: up-right
    ys, xs = np.nonzero(turned(bar, 1, 8) > 127)
    assert (ys < 32).all() and (xs > 32).all() and abs(np.mean(32 - ys) - np.mean(xs - 32)) < 1.5


def test_an_image_left_out_of_the_bank_is_left_out_at_every_turn() -> None:
    import torch

    from adinspect.residual.bank import fit_bank
    from adinspect.residual.model import ResidualModel

    method = _config(rotations=4, k_neighbors=3).method
    torch.manual_seed(0)
    feats, gmaps = torch.randn(4 * 6, 16, 8, 8), torch.randn(4 * 6, 24, 16, 16)
    model = ResidualModel(fit_bank(feats, gmaps, method), method)
    for image in range(6):
        exclude = torch.zeros(1, 24, dtype=torch.bool)
        exclude[0, image] = True  # only the upright copy is named
        for turn in range(4):  # whichever turn is the query, no turn of the image comes back
            found = model.retrieve(gmaps[turn * 6 + image][None], exclude)[0]
            assert len(found) == 3 and not (found % 6 == image).any()
        assert (model.retrieve(gmaps[image][None])[0] == image).any()  # without exclusion it finds itself
    with pytest.raises(ValueError, match="cannot hold 4 turns"):
        ResidualModel(fit_bank(feats[:22], gmaps[:22], method), method)


@pytest.fixture(scope="module")
def turned_package(turned_parts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from adinspect.fitting.fit import fit_product

    out = tmp_path_factory.mktemp("turned_fit") / "plates"
    fit_product(turned_parts, _config(), out, progress=False, auto=True, backbones=["efficientnet_lite0"])
    return out


def test_a_part_at_any_rotation_gets_a_turned_bank_and_its_defects_are_caught(
    turned_parts: Path, turned_package: Path, tmp_path: Path
) -> None:
    from safetensors import safe_open

    from adinspect.data.datasets import open_dataset
    from adinspect.fitting.fit import CHOICE_JSON, fit_product
    from adinspect.imageio import read_image
    from adinspect.runtime.inspector import Inspector

    upright = tmp_path / "upright"
    fit_product(turned_parts, _config(matching="global"), upright, progress=False)
    package = ModelPackage.load(turned_package)
    turns = package.config.method.rotations  # quarter or eighth turns: the synthetic evidence decides
    assert turns in (4, 8) and package.manifest.choices is not None
    assert package.manifest.choices["rotations"] == str(turns) and package.manifest.n_references == N_TRAIN
    assert f"each at {turns} turns" in (turned_package / "model_card.md").read_text()
    assert f"{turns} turns" in (turned_package / CHOICE_JSON).read_text()

    test = open_dataset(turned_parts).test
    defective = np.array([s.label == 1 for s in test])
    wrong = {}  # good plates rejected plus spotted plates passed
    for name, out in (("turned", turned_package), ("upright", upright)):
        with safe_open(str(out / "bank.safetensors"), framework="np") as fh:
            banked = int((fh.metadata() or {})["features_shape"].split(",")[0])
        assert banked == (turns if name == "turned" else 1) * N_TRAIN
        inspector = Inspector(out, threads=1)
        results = [inspector.inspect(read_image(s.path), s.path.name).result for s in test]
        rejected = np.array([r.verdict == "fail" for r in results])
        wrong[name] = int((rejected != defective).sum())
    assert wrong["turned"] == 0 < wrong["upright"]


def test_training_residuals_come_from_fold_banks_at_every_turn(
    turned_parts: Path, turned_package: Path
) -> None:
    import torch

    from adinspect.train.residual_data import good_images, load_context, synthetic_residuals

    ctx = load_context(turned_package)
    goods = good_images(turned_parts)
    anomalous, good = synthetic_residuals(ctx, goods, n_samples=6, seed=0, progress=False)
    assert anomalous.residual.shape[0] == 6 and good.residual.shape[0] == N_TRAIN
    assert torch.isfinite(anomalous.residual.float()).all() and torch.isfinite(good.residual.float()).all()
    norms = [float(s.residual.float().norm(dim=1).amax(dim=(1, 2)).mean()) for s in (good, anomalous)]
    assert norms[1] > norms[0]  # a painted anomaly stands out of its fold bank more than a good plate


def test_a_turned_bank_past_fits_budget_holds_a_subset_at_every_turn() -> None:
    from adinspect.fitting.candidates import MIN_TURNED_REFERENCES, capped_turned_bank, turned_reference_cap

    assert turned_reference_cap(209, 8, (256, 256)) == 76  # 4e7 pixels / (8 x 256²)
    assert turned_reference_cap(54, 8, (256, 256)) is None  # metal_plate's 54 plates: every one
    assert turned_reference_cap(5000, 1, (256, 256)) is None  # an upright bank is not capped here
    assert turned_reference_cap(400, 8, (640, 640)) == MIN_TURNED_REFERENCES
    config, note = capped_turned_bank(_config(rotations=8, image_size=256), 209)
    assert config.scale.max_references == 76 and "76 of the 209 good images" in note
    asked = _config(rotations=8, image_size=256)
    asked = asked.model_copy(update={"scale": asked.scale.model_copy(update={"max_references": 100})})
    assert capped_turned_bank(asked, 209) == (asked, "")  # a cap the config names is kept


def test_fit_embeds_and_banks_only_the_subset_at_turns_and_scores_every_good_image(
    turned_parts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors import safe_open

    import adinspect.fitting.candidates as candidates
    from adinspect.data.datasets import open_dataset
    from adinspect.fitting.fit import fit_product
    from adinspect.imageio import read_image
    from adinspect.runtime.inspector import Inspector

    monkeypatch.setattr(candidates, "FIT_PIXEL_BUDGET", 16 * 4 * 128 * 128)  # room for 16 plates at 4 turns
    out = tmp_path / "capped"
    fit_product(turned_parts, _config(rotations=4, matching="global"), out, progress=False)
    package = ModelPackage.load(out)
    assert package.config.scale.max_references == 16 and package.manifest.n_references == 16
    with safe_open(str(out / "bank.safetensors"), framework="np") as fh:
        assert int((fh.metadata() or {})["features_shape"].split(",")[0]) == 4 * 16
    calibration = json.loads((out / "calibration.json").read_text())
    assert len(calibration["holdout_scores"]) == N_TRAIN  # every good plate, out of fold
    inspector = Inspector(out, threads=1)
    test = open_dataset(turned_parts).test
    scores = np.array([inspector.inspect(read_image(s.path), s.path.name).result.score for s in test])
    labels = np.array([s.label for s in test])
    assert scores[labels == 0].max() < scores[labels == 1].min()  # the subset at every turn tells them apart
