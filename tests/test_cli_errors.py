"""Bad input at the command line: one clear line naming the file or field, exit 2, nothing lost."""

from __future__ import annotations

import shutil

import pytest

from adinspect.cli import main


def _fails(capsys, argv, *fragments):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def test_fit_on_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _fails(
        capsys, ["fit", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "m")], "empty", "no images"
    )
    assert not (tmp_path / "m").exists()


def test_fit_with_unknown_preset_and_backbone(tmp_path, capsys, synthetic_root):
    _fails(
        capsys,
        ["fit", "--data", str(synthetic_root), "--out", str(tmp_path / "m"), "--preset", "gpu"],
        "unknown preset 'gpu'",
    )
    _fails(
        capsys,
        ["fit", "--data", str(synthetic_root), "--out", str(tmp_path / "m"), "--backbone", "vgg"],
        "unknown backbone 'vgg'",
    )
    _fails(
        capsys,
        ["fit", "--data", str(synthetic_root), "--out", str(tmp_path / "m"), "--method", '{"sigma": -1}'],
        "method.sigma",
    )


def test_fit_never_overwrites_silently(tmp_path, capsys, synthetic_root):
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    _fails(capsys, ["fit", "--data", str(synthetic_root), "--out", str(out)], "already exists", "--overwrite")
    assert (out / "keep.txt").read_text() == "precious"


def test_fit_with_corrupt_training_image_names_it_and_keeps_old_package(
    tmp_path, capsys, synthetic_root, fitted_package
):
    data = tmp_path / "data"
    shutil.copytree(synthetic_root, data)
    victim = sorted((data / "train" / "good").iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:300])
    out = tmp_path / "pkg"
    shutil.copytree(fitted_package, out)
    before = (out / "package.json").read_bytes()
    _fails(capsys, ["fit", "--data", str(data), "--out", str(out), "--overwrite", "--quiet"], victim.name)
    assert (out / "package.json").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pkg.")], "temporary package left behind"


def test_evaluate_with_missing_ground_truth(tmp_path, capsys, synthetic_root, fitted_package):
    data = tmp_path / "data"
    shutil.copytree(synthetic_root, data)
    shutil.rmtree(next((data / "ground_truth").iterdir()))
    _fails(capsys, ["evaluate", "--model", str(fitted_package), "--data", str(data)], "mask")


def test_evaluate_with_mask_of_wrong_size(tmp_path, capsys, synthetic_root, fitted_package):
    import numpy as np

    from adinspect.imageio import write_mask

    data = tmp_path / "data"
    shutil.copytree(synthetic_root, data)
    mask = sorted((data / "ground_truth").rglob("*_mask.png"))[0]
    write_mask(mask, np.zeros((10, 12), bool))
    _fails(capsys, ["evaluate", "--model", str(fitted_package), "--data", str(data), "--quiet"], mask.name)


def test_predict_with_missing_package(tmp_path, capsys):
    _fails(
        capsys,
        ["predict", "--model", str(tmp_path / "nope"), "x.png", "--out", str(tmp_path / "o")],
        "not a model package",
    )


@pytest.mark.parametrize("argv", [["backbones"]])
def test_listing_commands(argv, capsys):
    assert main(argv) == 0
    assert "efficientnet_lite0" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [
        ("--iou-loss", "-1", "iou_loss"),
        ("--iou-loss", "nan", "iou_loss"),
        ("--thin-anomalies", "1.5", "thin_anomalies"),
        ("--capture-shift-aug", "-0.1", "capture_shift_aug"),
        ("--steps", "0", "steps"),
        ("--validation-images", "-1", "validation_images"),
        ("--train-crop", "-256", "crop"),
        ("--whole-every", "-1", "whole_every"),
    ],
)
def test_train_click_refuses_out_of_range_settings_before_touching_the_package(
    tmp_path, capsys, option, value, field
):
    """Checked when the settings are made: no data generated, no package file changed."""
    model = tmp_path / "m"
    model.mkdir()
    _fails(capsys, ["train-click", "--model", str(model), "--data", str(tmp_path), option, value], field)
    assert not any(model.iterdir())


def test_train_seg_refuses_a_share_of_thin_strokes_outside_0_1_before_touching_the_package(tmp_path, capsys):
    model = tmp_path / "m"
    model.mkdir()
    argv = ["train-seg", "--model", str(model), "--data", str(tmp_path), "--thin-anomalies", "1.5"]
    _fails(capsys, argv, "thin_anomalies")
    assert not any(model.iterdir())
