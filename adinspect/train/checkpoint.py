"""Training state on disk without pickle: safetensors for tensors, JSON for everything else.

A checkpoint holds the model, its EMA copy, the AdamW moments and the step, plus metadata
(model kind, the package preset, the network sizes, the language checksum). Loading into a run
with a different preset or different sizes is a clear error rather than a silent shape mismatch.
Files are written to a temporary name and renamed, so an interrupted save never leaves a
truncated checkpoint behind.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from adinspect.errors import InputError

CHECKPOINT_VERSION = 1


class CheckpointError(InputError):
    """A checkpoint that is missing, corrupt or from another preset / architecture."""


M = TypeVar("M", bound=nn.Module)


class EMA(Generic[M]):
    """Exponential moving average of a model's parameters and buffers (decay per step)."""

    def __init__(self, model: M, decay: float = 0.999) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Blend in the current weights; the effective decay ramps up over the first steps."""
        d = min(self.decay, (1 + step) / (10 + step))
        for e, p in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if e.dtype.is_floating_point:
                e.mul_(d).add_(p.detach(), alpha=1 - d)
            else:
                e.copy_(p)


@dataclass
class TrainState:
    step: int
    meta: dict


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"meta": json.dumps(meta)})
    tmp.replace(path)


def save_checkpoint(
    path: Path, model: nn.Module, ema: EMA, optimizer: torch.optim.Optimizer, step: int, meta: dict
) -> None:
    """Write model, EMA, optimizer moments and step to one safetensors file."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.model.state_dict().items()})
    opt = optimizer.state_dict()
    for idx, state in opt["state"].items():
        for name, value in state.items():
            tensors[f"opt.{idx}.{name}"] = torch.as_tensor(value)
    meta = {
        **meta,
        "version": CHECKPOINT_VERSION,
        "step": step,
        "param_groups": opt["param_groups"],
    }
    _atomic_save(tensors, Path(path), meta)


def read_meta(path: Path) -> dict:
    """The JSON metadata of a checkpoint or weights file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        with safe_open(str(path), "pt") as fh:
            return json.loads((fh.metadata() or {}).get("meta", "{}"))
    except (OSError, ValueError, SafetensorError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc}); delete it to start over") from exc


def check_compatible(meta: dict, expected: dict, path: Path) -> None:
    """Raise CheckpointError when any expected key (preset, kind, sizes) differs."""
    for key, want in expected.items():
        got = meta.get(key)
        if got != want:
            raise CheckpointError(
                f"{path}: checkpoint {key} is {got!r}, this run needs {want!r}; it was made for another "
                f"preset or model. Start fresh (remove it or drop --resume) or use the matching package"
            )


def check_same_settings(recorded: object, settings: dict, free: Collection[str], path: Path) -> None:
    """Raise CheckpointError when a training setting other than those in `free` (how long to train,
    how often to save, what happens after training) differs from the one the checkpoint was
    trained with: resuming with another batch, learning rate or synthetic shapes would silently
    make a model that neither setting describes."""
    if not isinstance(recorded, dict):
        raise CheckpointError(
            f"{path}: the checkpoint does not record its training settings; start fresh (drop --resume)"
        )
    for key, want in settings.items():
        got = recorded.get(key, "absent")
        if key not in free and got != want:
            raise CheckpointError(
                f"{path}: the checkpoint was trained with {key} = {got!r}, this run asks for {want!r}; "
                f"resume with the checkpoint's setting or start fresh (drop --resume)"
            )


def load_checkpoint(
    path: Path, model: nn.Module, ema: EMA, optimizer: torch.optim.Optimizer, expected: dict
) -> TrainState:
    """Restore a `save_checkpoint` file into model, EMA and optimizer after checking `expected`."""
    meta = read_meta(path)
    check_compatible(meta, expected, Path(path))
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return TrainState(int(meta["step"]), meta)


def save_weights(path: Path, model: nn.Module, meta: dict) -> None:
    """Final weights (the EMA model) + metadata, the form shipped in the model package."""
    _atomic_save(dict(model.state_dict()), Path(path), {**meta, "version": CHECKPOINT_VERSION})


def load_weights(path: Path, model: nn.Module, expected: dict) -> dict:
    """Load `save_weights` output into model after checking `expected`; returns the metadata."""
    meta = read_meta(path)
    check_compatible(meta, expected, Path(path))
    model.load_state_dict(load_file(str(path)))
    return meta
