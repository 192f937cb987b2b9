"""A part passes only on a finite score at or under a finite threshold (DESIGN.md §7)."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from adinspect.imageio import read_image, write_png
from adinspect.runtime.postprocess import passes, verdict_of


@pytest.mark.parametrize(
    ("score", "threshold", "verdict", "reason"),
    [
        (0.5, 1.0, "pass", ""),
        (1.0, 1.0, "pass", ""),
        (1.5, 1.0, "fail", "above threshold"),
        (math.nan, 1.0, "fail", "score is not finite"),
        (math.inf, 1.0, "fail", "score is not finite"),
        (-math.inf, 1.0, "fail", "score is not finite"),
        (0.5, math.nan, "fail", "threshold is not finite"),
        (0.5, math.inf, "fail", "threshold is not finite"),
    ],
)
def test_verdict_fails_closed(score: float, threshold: float, verdict: str, reason: str) -> None:
    got, why = verdict_of(score, threshold)
    assert got == verdict and reason in why


@pytest.mark.parametrize("threshold", [1.0, math.nan, math.inf])
def test_many_scores_pass_exactly_where_one_would(threshold: float) -> None:
    scores = np.array([0.5, 1.0, 1.5, math.nan, math.inf, -math.inf])
    expected = [verdict_of(float(x), threshold)[0] == "pass" for x in scores]
    assert passes(scores, threshold).tolist() == expected
    assert expected == ([True, True] + [False] * 4 if threshold == 1.0 else [False] * 6)


def test_a_nan_in_the_map_fails_even_with_a_finite_score() -> None:
    amap = np.zeros((4, 4), np.float32)
    amap[1, 2] = np.nan
    assert verdict_of(0.1, 1.0, amap) == ("fail", verdict_of(0.1, 1.0, amap)[1])
    assert "1 non-finite" in verdict_of(0.1, 1.0, amap)[1]


def test_inspector_fails_a_part_when_the_bank_is_nan(poisoned_package: Path, synthetic_root: Path) -> None:
    from adinspect.runtime.inspector import Inspector

    good = sorted((synthetic_root / "test" / "good").iterdir())[0]
    result = Inspector(poisoned_package).inspect(read_image(good), name=good.name).result
    assert result.verdict == "fail", result
    assert "not finite" in result.reason or "non-finite" in result.reason


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares a size, followed by a tiny IDAT and IEND (not decodable at that size)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def test_predict_skips_tiny_and_huge_images_and_inspects_the_rest(
    fitted_package: Path, synthetic_root: Path, tmp_path: Path, capsys
) -> None:
    import json

    from adinspect.cli import main

    images = tmp_path / "images"
    write_png(images / "a_tiny.png", np.zeros((1, 1, 3), np.uint8))
    (images / "b_huge.png").write_bytes(_png_header_only(20000, 20000))
    good = sorted((synthetic_root / "test" / "good").iterdir())[0]
    (images / "c_good.png").write_bytes(good.read_bytes())
    (images / "notes.txt").write_text("camera 3, shift B\n")
    (images / "d_frame.raw").write_bytes(bytes(64))
    command = ["predict", "--model", str(fitted_package), str(images), "--out", str(tmp_path / "out")]
    assert main([*command, "--no-overlays"]) == 0
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    assert summary["skipped"] == [str(images / "d_frame.raw"), str(images / "notes.txt")]
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("skipped")]
    assert said == [f"skipped 2 files without an image extension (.png, .jpg, .jpeg, .bmp, .tif, .tiff) or "
                    f"hidden, e.g. {images / 'd_frame.raw'}"]  # fmt: skip
    assert [Path(r["image"]).name for r in summary["results"]] == ["c_good.png"]
    errors = {Path(e["image"]).name: e["error"] for e in summary["errors"]}
    assert set(errors) == {"a_tiny.png", "b_huge.png"}
    assert "H, W >= 8" in errors["a_tiny.png"]
    assert "20000x20000 = 400000000 pixels is larger than" in errors["b_huge.png"]
    rows = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert len(rows) == 2 and "c_good.png" in rows[1]


@pytest.mark.parametrize("fmt", ["bmp", "tiff", "jpeg"])
def test_image_size_is_read_from_the_header(fmt: str) -> None:
    import cv2

    from adinspect.imageio import read_image_header

    ok, data = cv2.imencode(f".{fmt}", np.zeros((37, 53, 3), np.uint8))
    assert ok and read_image_header(data.tobytes()).shape[:2] == (37, 53)
