"""Tests for adinspect.imageio: round trips, bit depths, alpha, truncated and bad files, masks."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from adinspect.imageio import (
    ImageReadError,
    decode_image,
    decode_mask,
    encode_mask_png,
    encode_png,
    read_image,
    read_mask,
    write_mask,
    write_png,
)


def _smooth_rgb(h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth colour image (JPEG-friendly), uint8 RGB (h, w, 3)."""
    yy, xx = np.mgrid[0:h, 0:w]
    channels = [xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) * 255 // (h + w - 2)]
    return np.dstack(channels).astype(np.uint8)


def _cv2_bytes(rgb_or_gray: np.ndarray, ext: str, params: list[int] | None = None) -> bytes:
    """Encode with OpenCV directly (independent of the code under test); input RGB or gray."""
    arr = rgb_or_gray
    if arr.ndim == 3:
        arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(arr), params or [])
    assert ok
    return buf.tobytes()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _handmade_png(pixels: np.ndarray, color_type: int) -> bytes:
    """Minimal 8-bit PNG writer (filter 0) for colour types OpenCV cannot encode (gray+alpha = 4)."""
    h, w = pixels.shape[:2]
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".tiff"])
def test_lossless_rgb_round_trip_is_exact(tmp_path: Path, ext: str) -> None:
    rgb = _smooth_rgb()
    path = tmp_path / f"img{ext}"
    path.write_bytes(_cv2_bytes(rgb, ext))
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("ext", [".jpg", ".jpeg"])
def test_jpeg_round_trip_is_close_and_channel_order_is_rgb(tmp_path: Path, ext: str) -> None:
    rgb = _smooth_rgb()
    rgb[:16, :16] = (255, 0, 0)
    path = tmp_path / f"img{ext}"
    path.write_bytes(_cv2_bytes(rgb, ext, [cv2.IMWRITE_JPEG_QUALITY, 95]))
    out = read_image(path)
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).mean() < 3.0
    assert out[4, 4, 0] > 200 and out[4, 4, 2] < 50  # red stays in channel 0


def test_write_png_then_read_image_round_trip(tmp_path: Path) -> None:
    rgb = _smooth_rgb()
    path = write_png(tmp_path / "sub" / "dir" / "a.png", rgb)
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["a.png"]  # no temporary file left
    np.testing.assert_array_equal(read_image(path), rgb)
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # independent reader sees RGB stored correctly
    np.testing.assert_array_equal(bgr[:, :, ::-1], rgb)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif"])
def test_gray_becomes_three_equal_channels(tmp_path: Path, ext: str) -> None:
    gray = _smooth_rgb()[:, :, 0]
    path = tmp_path / f"g{ext}"
    path.write_bytes(_cv2_bytes(gray, ext))
    out = read_image(path)
    assert out.shape == (48, 64, 3)
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 1])
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 2])
    tol = 3 if ext == ".jpg" else 0
    assert np.abs(out[:, :, 0].astype(int) - gray).max() <= tol


def test_16_bit_is_scaled_with_rounding_not_truncated(tmp_path: Path) -> None:
    values = np.array([0, 128, 129, 257 * 100 + 128, 257 * 100 + 129, 32896, 65534, 65535], np.uint16)
    expected = np.array([0, 0, 1, 100, 101, 128, 255, 255], np.uint8)
    rgb16 = np.stack([values, values[::-1], values], axis=1)[None].repeat(3, axis=0)  # (3, 8, 3)
    for ext in (".png", ".tif"):
        path = tmp_path / f"deep{ext}"
        path.write_bytes(_cv2_bytes(rgb16, ext))
        out = read_image(path)
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out[0, :, 0], expected)
        np.testing.assert_array_equal(out[0, :, 1], expected[::-1])


def test_16_bit_gray_png(tmp_path: Path) -> None:
    gray16 = (np.arange(64 * 8, dtype=np.uint32).reshape(8, 64) * 128).astype(np.uint16)
    path = tmp_path / "g16.png"
    path.write_bytes(_cv2_bytes(gray16, ".png"))
    out = read_image(path)
    expected = ((gray16.astype(np.uint32) + 128) // 257).astype(np.uint8)
    np.testing.assert_array_equal(out, np.dstack([expected] * 3))


def test_rgba_is_composited_on_black(tmp_path: Path) -> None:
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[..., 3] = [[255, 0, 128], [255, 255, 255]]
    path = tmp_path / "rgba.png"
    path.write_bytes(_cv2_bytes(rgba, ".png"))
    out = read_image(path)
    np.testing.assert_array_equal(out[0, 0], (200, 100, 50))  # opaque: unchanged
    np.testing.assert_array_equal(out[0, 1], (0, 0, 0))  # transparent: black
    np.testing.assert_array_equal(out[0, 2], np.rint(np.array([200, 100, 50]) * 128 / 255))
    np.testing.assert_array_equal(out[1], [(200, 100, 50)] * 3)


def test_rgba_16_bit(tmp_path: Path) -> None:
    rgba = np.zeros((1, 2, 4), np.uint16)
    rgba[..., :3] = (65535, 257 * 10, 0)
    rgba[..., 3] = [65535, 0]
    path = tmp_path / "rgba16.png"
    path.write_bytes(_cv2_bytes(rgba, ".png"))
    out = read_image(path)
    np.testing.assert_array_equal(out[0], [(255, 10, 0), (0, 0, 0)])


def test_gray_alpha_png(tmp_path: Path) -> None:
    ga = np.array([[[100, 255], [100, 0], [200, 255]]], np.uint8)  # (1, 3, 2) gray + alpha
    path = tmp_path / "ga.png"
    path.write_bytes(_handmade_png(ga, color_type=4))
    np.testing.assert_array_equal(read_image(path)[0], [(100, 100, 100), (0, 0, 0), (200, 200, 200)])


def test_any_size_including_tiny_and_non_square(tmp_path: Path) -> None:
    for shape in [(1, 1, 3), (3, 700, 3), (513, 2, 3)]:
        img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_array_equal(decode_image(encode_png(img)), img)


# --------------------------------------------------------------------------- bad files


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif"])
@pytest.mark.parametrize("keep", [0.5, 0.9, -2, -1])
def test_truncated_files_raise(tmp_path: Path, ext: str, keep: float) -> None:
    data = _cv2_bytes(_smooth_rgb(96, 128), ext)
    cut = int(len(data) * keep) if keep > 0 else len(data) + int(keep)
    path = tmp_path / f"cut{ext}"
    path.write_bytes(data[:cut])
    with pytest.raises(ImageReadError, match="truncated") as info:
        read_image(path)
    assert str(path) in str(info.value)
    with pytest.raises(ImageReadError, match="truncated"):
        decode_image(data[:cut], name="upload-7")


def test_png_without_iend_and_jpeg_without_eoi_raise() -> None:
    png = _cv2_bytes(_smooth_rgb(), ".png")
    assert png.endswith(_png_chunk(b"IEND", b""))
    with pytest.raises(ImageReadError, match="IEND"):
        decode_image(png[:-12])
    jpeg = _cv2_bytes(_smooth_rgb(), ".jpg")
    assert jpeg.endswith(b"\xff\xd9")
    with pytest.raises(ImageReadError, match="EOI"):
        decode_image(jpeg[:-2])


def test_bytes_after_the_end_marker_are_tolerated() -> None:
    rgb = _smooth_rgb()
    np.testing.assert_array_equal(decode_image(_cv2_bytes(rgb, ".png") + b"\x00" * 10), rgb)
    assert decode_image(_cv2_bytes(rgb, ".jpg") + b"trailer").shape == rgb.shape


def test_corrupt_png_data_raises() -> None:
    data = bytearray(_cv2_bytes(_smooth_rgb(), ".png"))
    idat = data.index(b"IDAT")
    data[idat + 20 : idat + 40] = b"\x55" * 20  # same length, garbage payload (bad CRC, bad zlib)
    with pytest.raises(ImageReadError, match="corrupt") as info:
        decode_image(bytes(data), name="cam3/0001.png")
    assert "cam3/0001.png" in str(info.value)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(ImageReadError, match="not found") as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_empty_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty") as info:
        read_image(path)
    assert str(path) in str(info.value)
    with pytest.raises(ImageReadError, match="empty"):
        decode_image(b"")


def test_directory_and_non_image_raise(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    with pytest.raises(ImageReadError, match="not an accepted image format") as info:
        read_image(text)
    assert str(text) in str(info.value)


def test_read_image_is_subclass_of_value_error() -> None:
    assert issubclass(ImageReadError, ValueError)


# --------------------------------------------------------------------------- bytes


def test_decode_image_matches_read_image(tmp_path: Path) -> None:
    rgb = _smooth_rgb()
    data = _cv2_bytes(rgb, ".png")
    path = tmp_path / "a.png"
    path.write_bytes(data)
    np.testing.assert_array_equal(decode_image(data), read_image(path))
    np.testing.assert_array_equal(decode_image(bytearray(data)), rgb)
    np.testing.assert_array_equal(decode_image(memoryview(data)), rgb)


def test_decode_image_rejects_non_bytes() -> None:
    with pytest.raises(ImageReadError, match="expected encoded image bytes, got ndarray"):
        decode_image(np.zeros(10, np.uint8), name="req-1")  # type: ignore[arg-type]


def test_encode_png_is_decodable_by_opencv_and_validates_input() -> None:
    rgb = _smooth_rgb()
    bgr = cv2.imdecode(np.frombuffer(encode_png(rgb), np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(bgr[:, :, ::-1], rgb)
    gray = rgb[:, :, 1]
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(encode_png(gray), np.uint8), -1), gray)
    with pytest.raises(ValueError, match="uint8 or uint16"):
        encode_png(rgb.astype(np.float32))
    with pytest.raises(ValueError, match=r"got \(48, 64, 2\)"):
        encode_png(rgb[:, :, :2])


def test_encode_mask_png_is_a_1_bit_png_that_decodes_to_the_mask() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((37, 53)) > 0.6  # odd width: rows are padded to whole bytes
    data = encode_mask_png(mask)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert (data[24], data[25]) == (1, 0)  # bit depth 1, grayscale
    np.testing.assert_array_equal(decode_mask(data), mask)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.dtype == np.uint8 and set(np.unique(decoded)) == {0, 255}
    np.testing.assert_array_equal(decode_mask(encode_mask_png(mask.astype(np.float32) * 0.3)), mask)
    with pytest.raises(ValueError, match=r"got \(0, 4\)"):
        encode_mask_png(np.zeros((0, 4), bool))
    with pytest.raises(ValueError, match=r"got \(4, 4, 3\)"):
        encode_mask_png(np.zeros((4, 4, 3), bool))


# --------------------------------------------------------------------------- masks


def test_mask_round_trip_and_nonzero_is_defect(tmp_path: Path) -> None:
    mask = np.zeros((20, 30), bool)
    mask[5:9, 10:25] = True
    path = write_mask(tmp_path / "m.png", mask)
    stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert stored.ndim == 2 and set(np.unique(stored)) == {0, 255}
    out = read_mask(path, expected_shape=(20, 30))
    assert out.dtype == bool
    np.testing.assert_array_equal(out, mask)
    low = np.where(mask, 1, 0).astype(np.uint8)  # value 1 still counts as defect
    np.testing.assert_array_equal(decode_mask(encode_png(low)), mask)


def test_color_and_16_bit_masks(tmp_path: Path) -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[1, 2] = (0, 0, 9)
    np.testing.assert_array_equal(np.argwhere(decode_mask(encode_png(rgb))), [[1, 2]])
    m16 = np.zeros((4, 5), np.uint16)
    m16[3, 4] = 65535
    np.testing.assert_array_equal(np.argwhere(decode_mask(encode_png(m16))), [[3, 4]])


def test_mask_size_mismatch_names_both_sizes_and_the_file(tmp_path: Path) -> None:
    path = write_mask(tmp_path / "001_mask.png", np.ones((100, 120), bool))
    with pytest.raises(ImageReadError) as info:
        read_mask(path, expected_shape=(64, 64))
    message = str(info.value)
    assert "100x120" in message and "64x64" in message and str(path) in message


def test_truncated_mask_raises(tmp_path: Path) -> None:
    data = encode_png(np.full((16, 16), 255, np.uint8))
    path = tmp_path / "m.png"
    path.write_bytes(data[: len(data) - 5])
    with pytest.raises(ImageReadError, match="truncated"):
        read_mask(path)


def test_write_mask_rejects_wrong_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"expected a \(H, W\) array"):
        write_mask(tmp_path / "m.png", np.zeros((4, 4, 3), bool))
