"""Synthetic anomalies on defect-free images (DRAEM / CPR style), for training ADClick and ADClick-Seg.

A Perlin-noise field (scale 2^k cells, k random) is thresholded and rotated into an irregular
mask of which one to `max_regions` connected blobs are kept; with probability `thin_fraction` the
mask is instead a thin bent stroke (`scar_mask`: CutPaste's "scar", bent like a scratch or a
crack), since Perlin blobs are never 1-3 px wide and real lines have such defects. The masked
pixels are replaced by a blend of the image and a foreign fill:

- ``texture``: procedural texture (coloured Perlin noise, stripes or speckle);
- ``colour``: a flat colour with mild noise (stains, contamination);
- ``image``: a rotated, colour-shifted crop of another image (CutPaste-like).

Blend: out = (1 − m)·img + m·(β·img + (1 − β)·fill), β ~ U[beta_range] (DRAEM keeps up to 80% of
the original). Numpy/OpenCV only; every call is seeded through a `numpy.random.Generator`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

KINDS = ("texture", "colour", "image")


@dataclass(frozen=True)
class AnomalySettings:
    """Knobs of the generator; areas are fractions of the image (or of the foreground if given)."""

    min_scale: int = 0  # Perlin lattice 2^k cells per side, k in [min_scale, max_scale]
    max_scale: int = 3
    threshold: float = 0.5
    min_area: float = 0.005
    max_area: float = 0.15
    kinds: tuple[str, ...] = KINDS
    beta_range: tuple[float, float] = (0.0, 0.6)
    max_regions: int = 3
    max_tries: int = 100
    # share of thin strokes; repr=False keeps the synthetic caches' keys of the default settings
    thin_fraction: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"anomaly kinds {self.kinds} invalid; choose from {KINDS}")
        if not 0 <= self.min_area < self.max_area <= 1:
            raise ValueError(f"need 0 <= min_area < max_area <= 1, got {self.min_area}, {self.max_area}")
        if not 0 <= self.thin_fraction <= 1:
            raise ValueError(f"thin_fraction must be in [0, 1], got {self.thin_fraction}")


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """2-D gradient (Perlin) noise of `shape` with `res` lattice cells per axis, values ≈ [−1, 1]."""
    h, w = shape
    ys = np.linspace(0, res[0], h, endpoint=False)
    xs = np.linspace(0, res[1], w, endpoint=False)
    yi, xi = np.floor(ys).astype(int), np.floor(xs).astype(int)
    yf, xf = (ys - yi)[:, None], (xs - xi)[None, :]
    angles = rng.uniform(0, 2 * np.pi, (res[0] + 1, res[1] + 1))
    gy, gx = np.sin(angles), np.cos(angles)

    def corner(dy: int, dx: int) -> np.ndarray:
        iy, ix = (yi + dy)[:, None], (xi + dx)[None, :]
        return gy[iy, ix] * (yf - dy) + gx[iy, ix] * (xf - dx)

    def fade(t: np.ndarray) -> np.ndarray:
        return 6 * t**5 - 15 * t**4 + 10 * t**3

    u, v = fade(xf), fade(yf)
    top = corner(0, 0) * (1 - u) + corner(0, 1) * u
    bottom = corner(1, 0) * (1 - u) + corner(1, 1) * u
    return np.sqrt(2) * (top * (1 - v) + bottom * v)


def _rotate(a: np.ndarray, angle: float, interp: int = cv2.INTER_LINEAR) -> np.ndarray:
    h, w = a.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(a, m, (w, h), flags=interp, borderMode=cv2.BORDER_REFLECT)


def perlin_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    settings: AnomalySettings,
    foreground: np.ndarray | None = None,
) -> np.ndarray:
    """A bool mask (H, W) from thresholded, rotated Perlin noise with an area inside the settings' range.

    Raises RuntimeError when `max_tries` draws all miss the range (e.g. a tiny foreground).
    """
    h, w = shape
    region = np.ones(shape, bool) if foreground is None else foreground.astype(bool)
    total = max(int(region.sum()), 1)
    for _ in range(settings.max_tries):
        ky, kx = (2 ** int(rng.integers(settings.min_scale, settings.max_scale + 1)) for _ in range(2))
        noise = _rotate(perlin_noise(shape, (ky, kx), rng).astype(np.float32), float(rng.uniform(-90, 90)))
        mask = (noise > settings.threshold) & region
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
        if n > 1:  # real defects are a few regions: keep 1..max_regions of the blobs
            keep = rng.permutation(np.arange(1, n))[: int(rng.integers(1, settings.max_regions + 1))]
            mask = np.isin(labels, keep)
        frac = mask.sum() / total
        if settings.min_area <= frac <= settings.max_area:
            return mask
    raise RuntimeError(
        f"no Perlin mask with area in [{settings.min_area}, {settings.max_area}] of the region after "
        f"{settings.max_tries} tries (region {total} px of {h * w})"
    )


def scar_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    foreground: np.ndarray | None = None,
    max_tries: int = 100,
) -> np.ndarray:
    """A thin bent stroke (H, W) bool: a random walk of 3–10 segments of 3–8 % of the side, turning
    up to ±0.5 rad per segment, 1–3 px wide at 256 px, starting inside the region and at least
    mostly inside it.

    Raises RuntimeError when `max_tries` strokes all leave the region (e.g. a tiny foreground).
    """
    h, w = shape
    region = np.ones(shape, bool) if foreground is None else foreground.astype(bool)
    ys, xs = np.nonzero(region)
    side = min(h, w)
    for _ in range(max_tries if len(ys) else 0):
        i = int(rng.integers(len(ys)))
        points, heading = [np.array([xs[i], ys[i]], float)], float(rng.uniform(0, 2 * np.pi))
        for _ in range(int(rng.integers(3, 11))):
            heading += float(rng.uniform(-0.5, 0.5))
            step = float(rng.uniform(0.03, 0.08)) * side
            points.append(points[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
        thickness = max(1, int(round(float(rng.uniform(1.0, 3.0)) * side / 256)))
        stroke = np.zeros(shape, np.uint8)
        cv2.polylines(stroke, [np.rint(np.array(points)).astype(np.int32)], False, 1, thickness)
        mask = stroke.astype(bool) & region
        if mask.sum() >= max(10, 0.7 * stroke.sum()):
            return mask
    raise RuntimeError(f"no thin stroke stays inside the region ({len(ys)} px) after {max_tries} tries")


def _texture(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    style = int(rng.integers(3))
    tex: np.ndarray
    if style == 0:  # coloured Perlin noise
        chans = [perlin_noise(shape, (2 ** int(rng.integers(2, 6)),) * 2, rng) for _ in range(3)]
        tex = np.stack(chans, -1) * rng.uniform(60, 127) + rng.uniform(40, 215, 3)
    elif style == 1:  # stripes
        period, angle = rng.uniform(3, 16), rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)[..., None]
        c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        tex = np.where(wave > 0, c1, c2) + rng.normal(0, 8, (h, w, 3))
    else:  # speckle
        tex = cv2.GaussianBlur(
            rng.uniform(0, 255, (h, w, 3)).astype(np.float32), (0, 0), rng.uniform(0.5, 2.5)
        )
        tex = (tex - tex.mean()) * rng.uniform(2, 5) + rng.uniform(40, 215, 3)
    return np.clip(tex, 0, 255).astype(np.float32)


def _colour(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(0, 255, 3)
    return np.clip(base + rng.normal(0, 6, (*shape, 3)), 0, 255).astype(np.float32)


def _donor_patch(shape: tuple[int, int], donor: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    d = cv2.resize(donor, (shape[1], shape[0])) if donor.shape[:2] != shape else donor
    d = _rotate(d, float(rng.uniform(0, 360)))
    if rng.random() < 0.5:
        d = d[:, ::-1]
    shift = rng.uniform(-60, 60, 3)
    return np.clip(d.astype(np.float32) * rng.uniform(0.6, 1.4) + shift, 0, 255).astype(np.float32)


def synthesize_anomaly(
    image: np.ndarray,
    rng: np.random.Generator,
    settings: AnomalySettings | None = None,
    foreground: np.ndarray | None = None,
    donors: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Paint one synthetic anomaly on a defect-free image.

    Args:
        image: (H, W, 3) uint8 RGB.
        rng: seeded generator; the same state gives the same result.
        foreground: optional (H, W) mask confining the anomaly (object categories).
        donors: images (any size, uint8 RGB) for the ``image`` kind; without donors the ``image``
            kind uses the input image itself, rotated.

    Returns:
        (anomalous image (H, W, 3) uint8, mask (H, W) uint8 in {0, 1}, kind).
    """
    settings = settings or AnomalySettings()
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    shape = image.shape[:2]
    if settings.thin_fraction > 0 and rng.random() < settings.thin_fraction:  # no draw when 0
        mask = scar_mask(shape, rng, foreground, settings.max_tries)
    else:
        mask = perlin_mask(shape, rng, settings, foreground)
    kind = settings.kinds[int(rng.integers(len(settings.kinds)))]
    if kind == "texture":
        fill = _texture(shape, rng)
    elif kind == "colour":
        fill = _colour(shape, rng)
    else:
        donor = donors[int(rng.integers(len(donors)))] if donors else image
        fill = _donor_patch(shape, donor, rng)
    beta = rng.uniform(*settings.beta_range)
    m = mask[..., None].astype(np.float32)
    img = image.astype(np.float32)
    out = (1 - m) * img + m * (beta * img + (1 - beta) * fill)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), mask.astype(np.uint8), kind
