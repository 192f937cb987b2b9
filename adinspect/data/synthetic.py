"""Synthetic MVTec-style datasets, so tests and demos run without real data.

Two kinds of product:

* ``"object"``: a glass bottle seen from the top (like MVTec ``bottle``): dark background, a
  brownish body with moulded ridges, a darker shoulder ring, a bright neck and a dark opening.
* ``"texture"``: a plain-weave fabric (like MVTec ``carpet``/``grid``).

Good images differ by mild pose jitter (a couple of pixels shift, a small rotation), a small
brightness change and Gaussian sensor noise. Defects (``DEFECT_TYPES``) are drawn into a clean
rendering through a mask, so the mask covers exactly the changed pixels; sensor noise is added
afterwards. Everything is deterministic in ``seed``, and each image has its own random stream
(changing ``n_train`` does not change the test images). With ``capture_shift`` > 0 the defective
test images are photographed under another gain and an illumination gradient, and with
``misalign`` > 0 the part (and its mask) sits elsewhere in the frame (``data.capture``); both are
drawn from their own random streams, so the good images and the defects stay the same as without.

Images are square (``size`` S) or rectangular (``size`` = (H, W): the part is drawn at the short
side's scale, a tall or wide frame around it, like a line camera's strip). Run
``python -m adinspect.data.synthetic OUT_DIR --kind texture`` to write a dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from adinspect.data.capture import misalign as move_part
from adinspect.data.capture import random_capture_shift, random_offset
from adinspect.geometry import as_shape
from adinspect.imageio import write_mask, write_png

__all__ = ["DEFECT_TYPES", "Kind", "draw_defect", "finish_image", "make_synthetic_dataset", "render_good"]

Kind = Literal["object", "texture"]
DEFECT_TYPES: tuple[str, ...] = ("scratch", "spot", "crack")
_KINDS: tuple[str, ...] = ("object", "texture")
_MARKER = "synthetic.json"
_SPLIT_TRAIN, _SPLIT_TEST_GOOD, _SPLIT_TEST_DEFECT, _SHIFT, _MISALIGN = 0, 1, 2, 3, 4


# --------------------------------------------------------------------------- good images


def _soft_disc(r: np.ndarray, radius: float, width: float = 1.0) -> np.ndarray:
    """1 inside ``radius``, 0 outside, with an anti-aliased edge ``width`` pixels wide."""
    return np.clip((radius - r) / width + 0.5, 0.0, 1.0)[..., None]


def _pose_grid(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates relative to a jittered centre, rotated by a small random angle."""
    h, w = shape
    scale = min(h, w) / 256.0
    cx, cy = w / 2 + rng.uniform(-2, 2) * scale, h / 2 + rng.uniform(-2, 2) * scale
    angle = np.deg2rad(rng.uniform(-3, 3))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = xx - cx, yy - cy
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return c * x + s * y, -s * x + c * y


def _render_object(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Bottle seen from the top, (H, W, 3) float32 RGB in [0, 255], sized by the short side."""
    x, y = _pose_grid(shape, rng)
    size = min(shape)
    r = np.hypot(x, y)
    theta = np.arctan2(y, x)
    img = np.empty((*shape, 3), np.float32)
    img[:] = np.array([26, 28, 30], np.float32) + 10 * np.clip(1 - r / size, 0, 1)[..., None]
    body = np.array([112, 86, 56], np.float32) * (0.75 + 0.35 * np.clip(r / (0.40 * size), 0, 1))[..., None]
    body = body + (6 * np.cos(24 * theta))[..., None] * (r > 0.3 * size)[..., None]
    img = img * (1 - _soft_disc(r, 0.40 * size)) + body * _soft_disc(r, 0.40 * size)
    shoulder = _soft_disc(r, 0.29 * size) * (1 - _soft_disc(r, 0.25 * size))
    img = img * (1 - 0.4 * shoulder)
    neck = np.array([196, 174, 132], np.float32) * (1.0 - 0.25 * (r / (0.16 * size)))[..., None]
    img = img * (1 - _soft_disc(r, 0.16 * size)) + neck * _soft_disc(r, 0.16 * size)
    opening = _soft_disc(r, 0.09 * size)
    img = img * (1 - opening) + np.array([38, 33, 28], np.float32) * opening
    hx, hy = x + 0.07 * size, y + 0.07 * size
    highlight = 45 * np.exp(-(hx**2 + hy**2) / (2 * (0.03 * size) ** 2))
    return img + highlight[..., None] * _soft_disc(r, 0.40 * size)


def _render_texture(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Plain-weave fabric, (H, W, 3) float32 RGB in [0, 255], 16 threads across the short side."""
    x, y = _pose_grid(shape, rng)
    period = min(shape) / 16.0
    u, v = x / period + rng.uniform(0, 2), y / period + rng.uniform(0, 2)
    over = (np.floor(u) + np.floor(v)) % 2 == 0
    warp = np.sin(np.pi * (u % 1.0)) ** 0.5  # vertical thread profile across its width
    weft = np.sin(np.pi * (v % 1.0)) ** 0.5
    height = np.where(over, warp * (0.85 + 0.15 * np.sin(np.pi * (v % 1.0))), weft)
    fibres = 0.04 * np.sin(2 * np.pi * 5 * np.where(over, v, u))
    shade = (0.55 + 0.45 * height + fibres)[..., None]
    return np.array([176, 156, 122], np.float32) * shade


def render_good(kind: Kind, size: int | tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Noise-free defect-free image with pose jitter: (H, W, 3) float32 RGB in [0, 255]; `size` is S
    for S x S or (H, W)."""
    if kind == "object":
        return _render_object(as_shape(size), rng)
    if kind == "texture":
        return _render_texture(as_shape(size), rng)
    raise ValueError(f"unknown synthetic kind {kind!r}, expected one of {_KINDS}")


def finish_image(image: np.ndarray, rng: np.random.Generator, noise: float = 2.0) -> np.ndarray:
    """Brightness jitter (±5 %) and Gaussian sensor noise; (H, W, 3) float32 -> uint8 RGB."""
    out = image * rng.uniform(0.95, 1.05) + rng.normal(0.0, noise, image.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- defects


def _anchor(kind: Kind, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A defect position (x, y) on the product: on the bottle (within 0.32 short sides of the
    centre) or anywhere on the fabric away from the border."""
    h, w = shape
    if kind == "object":
        rho, phi = 0.32 * min(h, w) * np.sqrt(rng.uniform(0.05, 1.0)), rng.uniform(0, 2 * np.pi)
        return np.array([w / 2 + rho * np.cos(phi), h / 2 + rho * np.sin(phi)])
    return rng.uniform(0.12 * np.array([w, h]), 0.88 * np.array([w, h]))


def _scratch(mask: np.ndarray, kind: Kind, rng: np.random.Generator) -> np.ndarray:
    """Thin straight line, 12–30 % of the side long, 1–3 px thick; bright."""
    size = min(mask.shape)
    centre, angle = _anchor(kind, mask.shape, rng), rng.uniform(0, np.pi)
    half = 0.5 * rng.uniform(0.12, 0.30) * size * np.array([np.cos(angle), np.sin(angle)])
    p0, p1 = np.rint(centre - half).astype(int), np.rint(centre + half).astype(int)
    thickness = max(1, int(round(rng.uniform(1.0, 2.5) * size / 256)))
    cv2.line(mask, tuple(map(int, p0)), tuple(map(int, p1)), 255, thickness, cv2.LINE_8)
    return np.array([235, 230, 222], np.float32)


def _spot(mask: np.ndarray, kind: Kind, rng: np.random.Generator) -> np.ndarray:
    """Irregular blob of a foreign colour, mean radius 2–8 % of the side."""
    size = min(mask.shape)
    centre, radius = _anchor(kind, mask.shape, rng), rng.uniform(0.02, 0.08) * size
    angles = np.sort(rng.uniform(0, 2 * np.pi, 14))
    radii = radius * rng.uniform(0.7, 1.3, angles.size)
    pts = centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    cv2.fillPoly(mask, [np.rint(pts).astype(np.int32)], 255, cv2.LINE_8)
    palette = np.array([[150, 45, 30], [45, 70, 150], [60, 120, 60], [20, 20, 22]], np.float32)
    return palette[rng.integers(len(palette))]


def _crack(mask: np.ndarray, kind: Kind, rng: np.random.Generator) -> np.ndarray:
    """Random-walk polyline of 6–14 steps of 2–4 % of the side, 1–2 px thick; dark."""
    size = min(mask.shape)
    point, heading = _anchor(kind, mask.shape, rng), rng.uniform(0, 2 * np.pi)
    points = [point]
    for _ in range(int(rng.integers(6, 15))):
        heading += rng.uniform(-0.6, 0.6)
        step = rng.uniform(0.02, 0.04) * size
        points.append(points[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
    thickness = max(1, int(round(rng.uniform(1.0, 2.0) * size / 256)))
    cv2.polylines(mask, [np.rint(np.array(points)).astype(np.int32)], False, 255, thickness, cv2.LINE_8)
    return np.array([14, 12, 10], np.float32)


_DRAWERS = {"scratch": _scratch, "spot": _spot, "crack": _crack}


def draw_defect(
    image: np.ndarray, defect: str, kind: Kind, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one defect into a clean rendering.

    Args:
        image: (H, W, 3) float32 RGB from :func:`render_good`; not modified.
        defect: one of ``DEFECT_TYPES``.
        kind: product kind, decides where defects may lie.
        rng: random stream.

    Returns:
        ``(defective image (H, W, 3) float32, mask (H, W) bool)``; pixels outside the mask are
        unchanged, pixels inside are blended 75–95 % towards the defect colour.
    """
    if defect not in _DRAWERS:
        raise ValueError(f"unknown defect type {defect!r}, expected one of {DEFECT_TYPES}")
    mask = np.zeros(image.shape[:2], np.uint8)
    while not mask.any():  # a drawer can only miss the image if a shape is clipped away entirely
        colour = _DRAWERS[defect](mask, kind, rng)
    alpha = np.float32(rng.uniform(0.75, 0.95))
    inside = mask > 0
    out = image.copy()
    out[inside] = (1 - alpha) * image[inside] + alpha * colour
    return out, inside


# --------------------------------------------------------------------------- datasets


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse to write into a non-empty folder unless it is an earlier synthetic dataset and overwrite."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; choose a folder path for the synthetic dataset")
    if not out.is_dir() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return
    if not overwrite:
        raise FileExistsError(
            f"{out} is not empty; choose a new folder, or pass overwrite=True to replace it"
        )
    if not (out / _MARKER).is_file():
        raise FileExistsError(
            f"{out} is not empty and has no {_MARKER}: refusing to delete files not made here"
        )
    for sub in ("train", "test", "ground_truth"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / _MARKER).unlink()


def make_synthetic_dataset(
    out_dir: str | os.PathLike[str],
    kind: Kind = "object",
    n_train: int = 40,
    n_test_good: int = 8,
    n_test_defect: int = 12,
    size: int | tuple[int, int] = 256,
    seed: int = 0,
    overwrite: bool = False,
    capture_shift: float = 0.0,
    misalign: float = 0.0,
) -> Path:
    """Write a synthetic product in the MVTec AD layout.

    Layout: ``train/good/NNN.png``, ``test/good/NNN.png``, ``test/<defect>/NNN.png`` and
    ``ground_truth/<defect>/NNN_mask.png`` ({0, 255} masks), plus ``synthetic.json`` with the
    parameters. Defective test images cycle through ``DEFECT_TYPES``.

    Args:
        out_dir: the category folder to create; must be empty or absent.
        kind: ``"object"`` (bottle from the top) or ``"texture"`` (woven fabric).
        n_train: defect-free training images.
        n_test_good: defect-free test images.
        n_test_defect: defective test images.
        size: image side S in pixels, or (H, W) for a rectangular product.
        seed: the dataset is a deterministic function of all arguments.
        overwrite: replace an earlier synthetic dataset in ``out_dir``.
        capture_shift: strength of the capture shift of the defective test images (0 = none;
            0.3 means a gain of 1 ± 0.15–0.3 and an illumination gradient of ± 0.15–0.3).
        misalign: the defective test parts sit (0.5–1)·misalign·S pixels (S the short side) away from
            where the good parts sit, in a random direction (0 = where the good ones are).

    Returns:
        ``out_dir`` as a Path.
    """
    _check_arguments(kind, n_train, n_test_good, n_test_defect, size, capture_shift, misalign)
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)

    for split, folder, count in ((_SPLIT_TRAIN, "train", n_train), (_SPLIT_TEST_GOOD, "test", n_test_good)):
        for i in range(count):
            rng = np.random.default_rng([seed, split, i])
            write_png(out / folder / "good" / f"{i:03d}.png", finish_image(render_good(kind, size, rng), rng))

    per_type = _write_defective(out, kind, size, seed, n_test_defect, capture_shift, misalign)

    meta = {
        "generator": "adinspect.data.synthetic",
        "version": 1,
        "kind": kind,
        "size": size if isinstance(size, int) else list(size),
        "seed": seed,
        "n_train": n_train,
        "n_test_good": n_test_good,
        "n_test_defect": {d: n for d, n in per_type.items() if n},
        **({"capture_shift": capture_shift} if capture_shift else {}),
        **({"misalign": misalign} if misalign else {}),
    }
    (out / _MARKER).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m adinspect.data.synthetic OUT_DIR [--kind texture] ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m adinspect.data.synthetic", description=__doc__.split("\n")[0]
    )
    parser.add_argument("out_dir", type=Path, help="category folder to create (must be empty or absent)")
    parser.add_argument("--kind", choices=_KINDS, default="object")
    parser.add_argument("--n-train", type=int, default=40)
    parser.add_argument("--n-test-good", type=int, default=8)
    parser.add_argument("--n-test-defect", type=int, default=12)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier synthetic dataset")
    parser.add_argument(
        "--capture-shift", type=float, default=0.0, help="defective images' gain/gradient shift"
    )
    parser.add_argument(
        "--misalign", type=float, default=0.0, help="defective parts' offset, a fraction of the side"
    )
    args = parser.parse_args(argv)
    try:
        out = make_synthetic_dataset(
            args.out_dir,
            kind=args.kind,
            n_train=args.n_train,
            n_test_good=args.n_test_good,
            n_test_defect=args.n_test_defect,
            size=args.size,
            seed=args.seed,
            overwrite=args.overwrite,
            capture_shift=args.capture_shift,
            misalign=args.misalign,
        )
    except (ValueError, FileExistsError) as exc:
        parser.error(str(exc))
    print(f"wrote synthetic {args.kind} dataset to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def _check_arguments(
    kind: str,
    n_train: int,
    n_test_good: int,
    n_test_defect: int,
    size: int | tuple[int, int],
    capture_shift: float,
    misalign: float,
) -> None:
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if n_train < 1 or n_test_good < 0 or n_test_defect < 0:
        raise ValueError(
            f"need n_train >= 1 and non-negative test counts, got n_train={n_train}, "
            f"n_test_good={n_test_good}, n_test_defect={n_test_defect}"
        )
    if min(as_shape(size)) < 32:
        raise ValueError(f"size must be at least 32 pixels per side, got {size}")
    if not 0.0 <= capture_shift < 1.0:
        raise ValueError(f"capture_shift must be in [0, 1), got {capture_shift}")
    if not 0.0 <= misalign <= 0.5:
        raise ValueError(f"misalign must be in [0, 0.5] (a fraction of the side), got {misalign}")


def _write_defective(
    out: Path,
    kind: Kind,
    size: int | tuple[int, int],
    seed: int,
    n_test_defect: int,
    capture_shift: float,
    misalign: float,
) -> dict[str, int]:
    """The defective test images and their masks, cycling through DEFECT_TYPES; how many of each."""
    per_type = {d: 0 for d in DEFECT_TYPES}
    for i in range(n_test_defect):
        defect = DEFECT_TYPES[i % len(DEFECT_TYPES)]
        rng = np.random.default_rng([seed, _SPLIT_TEST_DEFECT, i])
        image, mask = draw_defect(render_good(kind, size, rng), defect, kind, rng)
        idx, per_type[defect] = per_type[defect], per_type[defect] + 1
        image = random_capture_shift(image, capture_shift, np.random.default_rng([seed, _SHIFT, i]))
        offset = random_offset(misalign, min(as_shape(size)), np.random.default_rng([seed, _MISALIGN, i]))
        image, mask = move_part(image, offset), move_part(mask, offset)
        write_png(out / "test" / defect / f"{idx:03d}.png", finish_image(image, rng))
        write_mask(out / "ground_truth" / defect / f"{idx:03d}_mask.png", mask)
    return per_type
