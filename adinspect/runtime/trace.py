"""Trace a thin line from one positive click to the next: the path a crack takes between them.

On a crack a pixel or two wide and faint against a textured surface, ADClick's residual grid (stride
8) and GrabCut's colour models see little, and a mask grows one click disc at a time; a person who
clicks twice along a crack means the crack between the clicks. So each positive click after the
first is joined to the nearest earlier one by the cheapest path through the image, where a pixel is
cheap in proportion to how much it stands out as a thin line: its grey black-hat or top-hat (darker
or brighter than a closing / opening with a `LINE_PX` disc), in units of the image's median, so the
scale of the texture cancels. The path (3 px wide) is raised to `FLOOR`, just over the 0.49 cut;
negative clicks' discs are walls it neither crosses nor marks. It is looked for within the two
clicks' bounding box grown by `BOX_MARGIN` px, so it cannot wander the whole image.

It pays where defects are thin lines (KolektorSDD's cracks) and costs where two positive clicks lie
on different defects (the path between them is false), so a package turns it on only when it
measured better on labelled images (`train.snap_choice`). numpy, SciPy and OpenCV only: the
labelling tool runs it.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from adinspect.runtime.clicks import Click

LINE_PX = 7  # structures thinner than this disc stand out in the black-hat / top-hat
BOX_MARGIN = 16  # px around the two clicks' bounding box that the path may use
FLOOR = 0.5  # probability given to the path: over the 0.49 cut
WALL = 1e6  # cost of a pixel in a negative click's disc


def line_strength(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) → how much each pixel stands out as a thin dark or bright line, float32
    (H, W), in units of the image's median response."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (LINE_PX, LINE_PX))
    dark = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, disc)
    bright = cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, disc)
    strength = np.maximum(dark, bright).astype(np.float32)
    return strength / max(float(np.median(strength)), 1.0)


def trace_clicks(
    prob: np.ndarray, strength: np.ndarray, clicks: Sequence[Click], radius: float
) -> np.ndarray:
    """Join each positive click after the first to the nearest earlier positive click by the
    cheapest path on `line_strength`; the paths raised to `FLOOR` in a copy of `prob` (H, W)."""
    positive = [c for c in clicks if c.positive]
    if len(positive) < 2:
        return prob
    yy, xx = np.ogrid[: prob.shape[0], : prob.shape[1]]
    walls = np.zeros(prob.shape, bool)
    for c in clicks:
        if not c.positive:
            walls |= (yy - c.y) ** 2 + (xx - c.x) ** 2 <= radius * radius
    cost = np.where(walls, WALL, 1.0 / (0.2 + strength))
    path = np.zeros(prob.shape, np.uint8)
    for j in range(1, len(positive)):
        a = positive[j]
        b = min(positive[:j], key=lambda c: (c.y - a.y) ** 2 + (c.x - a.x) ** 2)
        for y, x in _cheapest_path(cost, a, b):
            path[y, x] = 1
    band = (cv2.dilate(path, np.ones((3, 3), np.uint8)) > 0) & ~walls
    out = prob.copy()
    out[band] = np.maximum(out[band], FLOOR)
    return out


def _cheapest_path(cost: np.ndarray, a: Click, b: Click) -> list[tuple[int, int]]:
    """Pixels of the cheapest 8-connected path from `a` to `b` within their grown bounding box."""
    h, w = cost.shape
    y0, y1 = max(min(a.y, b.y) - BOX_MARGIN, 0), min(max(a.y, b.y) + BOX_MARGIN + 1, h)
    x0, x1 = max(min(a.x, b.x) - BOX_MARGIN, 0), min(max(a.x, b.x) + BOX_MARGIN + 1, w)
    box = cost[y0:y1, x0:x1]
    bh, bw = box.shape
    index = np.arange(bh * bw).reshape(bh, bw)
    sources, targets, weights = [], [], []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):  # each undirected edge once
        ys, xs = slice(0, bh - dy), slice(max(-dx, 0), bw - max(dx, 0))
        yt, xt = slice(dy, bh), slice(max(dx, 0), bw - max(-dx, 0) or None)
        sources.append(index[ys, xs].ravel())
        targets.append(index[yt, xt].ravel())
        weights.append((0.5 * np.hypot(dy, dx) * (box[ys, xs] + box[yt, xt])).ravel())
    graph = coo_matrix(
        (np.concatenate(weights), (np.concatenate(sources), np.concatenate(targets))), shape=(bh * bw,) * 2
    ).tocsr()
    start, goal = index[a.y - y0, a.x - x0], index[b.y - y0, b.x - x0]
    _, previous = dijkstra(graph, directed=False, indices=start, return_predecessors=True)
    pixels, node = [], goal
    while node >= 0:
        pixels.append((y0 + node // bw, x0 + node % bw))
        node = previous[node]
    return pixels
