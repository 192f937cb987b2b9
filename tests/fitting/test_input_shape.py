"""How fit decides the network input from the training images, and the bad input it refuses."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import pytest

from adinspect.cli import main
from adinspect.config import preset_config
from adinspect.fitting.input_shape import ImageSizeError, resolve_input_shape, training_image_shape


def _goods(root: Path) -> list[Path]:
    return sorted((root / "train" / "good").glob("*.png"))


def _resize(path: Path, height: int, width: int) -> None:
    cv2.imwrite(str(path), cv2.resize(cv2.imread(str(path)), (width, height)))


def test_sizes_may_wander_a_little_but_not_more(tall_root: Path, tmp_path: Path) -> None:
    data = tmp_path / "strip"
    shutil.copytree(tall_root, data)
    goods = _goods(data)
    _resize(goods[2], 320, 124)  # a crop 3 % narrower: one product (KolektorSDD's widths vary so)
    assert training_image_shape(goods) == (320, 128)
    _resize(goods[5], 320, 160)
    with pytest.raises(
        ImageSizeError, match=rf"{goods[5].name} is 320x160 \(HxW\).*{goods[0].name} is 320x128"
    ):
        training_image_shape(goods)


def test_the_config_or_the_images_decide(tall_root: Path) -> None:
    config = preset_config("cpu", "strip", method={"image_size": 128})
    chosen, geometry = resolve_input_shape(config, _goods(tall_root))
    assert chosen.method.input_shape == (320, 128) and geometry.rule == "aspect"
    asked = preset_config("cpu", "strip", method={"image_size": 64, "input_shape": [192, 64]})
    chosen, geometry = resolve_input_shape(asked, _goods(tall_root))
    assert chosen.method.input_shape == (192, 64) and geometry.rule == "override"
    square = preset_config("cpu", "strip", method={"image_size": 128, "input_shape": [128, 128]})
    assert resolve_input_shape(square, _goods(tall_root))[1].rule == "override"  # squashing is allowed


def _fails(capsys, argv: list[str], *fragments: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err  # one line
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def test_fit_refuses_training_images_of_different_sizes(tall_root: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "mixed"
    shutil.copytree(tall_root, data)
    odd = _goods(data)[7]
    _resize(odd, 256, 256)
    out = tmp_path / "m"
    _fails(
        capsys, ["fit", "--data", str(data), "--out", str(out)], str(odd), "256x256", "320x128", "one size"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [
        ("320x100", "the width 100 must be a multiple of 64"),
        ("640x128", "larger than the training images (320x128"),
        ("320", "expected HEIGHTxWIDTH"),
    ],
)
def test_fit_refuses_an_input_shape_it_cannot_use(
    tall_root: Path, tmp_path: Path, capsys, shape: str, fragment: str
) -> None:
    out = tmp_path / "m"
    _fails(capsys, ["fit", "--data", str(tall_root), "--out", str(out), "--input-shape", shape], fragment)
    assert not out.exists()


def test_fit_refuses_an_image_size_larger_than_the_images_but_keeps_the_presets_own(
    tall_root: Path, tmp_path: Path, capsys
) -> None:
    from adinspect.fitting.input_shape import check_asked_size

    out = tmp_path / "m"  # 320x128 images: S = 192 would give 512x192, magnified
    _fails(
        capsys,
        ["fit", "--data", str(tall_root), "--out", str(out), "--image-size", "192"],
        "--image-size 192 gives an input of 512x192 (HxW), larger than the training images (320x128",
    )
    assert not out.exists()
    check_asked_size(preset_config("cpu", "strip", method={"image_size": 128}), _goods(tall_root))  # fits
    with pytest.raises(ImageSizeError, match="at most 320x128 in multiples of 64"):
        check_asked_size(preset_config("cpu", "strip", method={"image_size": 256}), _goods(tall_root))
