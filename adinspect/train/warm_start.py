"""`--init OTHER_MODEL_DIR`: start ADClick / ADClick-Seg from another product's trained weights.

The paper pre-trains on other categories and fine-tunes on the target one. Weights carry over
only between packages whose residuals have the same meaning and shape: the same backbone (name
and weights checksum), the same preset and input shape (hence grid, d_f) and the same network sizes; anything
else is a clear error. Language tensors are not weights (they are per-product constants), so the
other product's defect types do not matter. The residual scale is this product's own (reset by
the trainer after loading).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from adinspect.errors import InputError
from adinspect.package import ModelPackage
from adinspect.train.checkpoint import read_meta
from adinspect.train.residual_data import ResidualContext


def warm_start_weights(
    ctx: ResidualContext, other_dir: Path, names: tuple[str, ...], arch: dict, check_image_stem: bool = True
) -> tuple[dict[str, torch.Tensor], str]:
    """The first of `names` (weights files) present in package `other_dir`, checked against this run
    (ADClick's image branch, refinement and feature prior too, unless the caller loads
    non-strictly and ignores them).

    Returns:
        (state dict, "<other_dir>/<file>") for the report.
    """
    other = ModelPackage.load(Path(other_dir))
    other.require_bank()
    mine, theirs = ctx.package.manifest.backbone, other.manifest.backbone
    for field in ("name", "weights_sha256", "feature_dim", "feature_shape"):
        if getattr(mine, field) != getattr(theirs, field):
            raise InputError(
                f"--init {other_dir}: backbone {field} is {getattr(theirs, field)!r}, this package has "
                f"{getattr(mine, field)!r}; initialise from a package fitted with the same backbone"
            )
    if other.config.preset != ctx.preset:
        raise InputError(
            f"--init {other_dir}: preset {other.config.preset!r}, this package uses {ctx.preset!r}; "
            "initialise from a package of the same preset"
        )
    name = next((n for n in names if other.has(n)), None)
    if name is None:
        raise InputError(f"--init {other_dir}: no trained {' or '.join(names)}; train that package first")
    path = other.path(name)
    got = read_meta(path).get("arch")
    keys = ("in_channels", "lang_dim", "grid", "image_size", "dims", "depths", "heads", "decoder_dim")
    if (
        got is None
        or any(got.get(k) != arch.get(k) for k in keys)
        or (check_image_stem and _image_branch(got) != _image_branch(arch))
    ):
        raise InputError(
            f"--init {path}: network sizes {got} differ from this run's {arch}; "
            "use a package trained with the same preset and text encoder"
        )
    return load_file(str(path)), f"{other_dir}/{name}"


def _image_branch(arch: dict) -> tuple[int, bool, bool]:
    """ADClick's image-branch width, refinement resolution and feature prior; the defaults for
    models written before they existed (and for ADClick-Seg, which has none of them)."""
    return (
        int(arch.get("image_stem", 0)),
        bool(arch.get("refine_full", False)),
        bool(arch.get("image_features", False)),
    )
