"""The optimisation loop shared by the ADClick and ADClick-Seg trainers.

Resume from a checkpoint (checked against the run's identity: kind, preset, sizes, language; and
its training settings, but for those the trainer names free: steps, checkpoint interval),
then per step: learning rate, loss, backward, gradient clipping at 1.0, AdamW step, EMA update,
a tqdm bar with the running loss, and a checkpoint every `checkpoint_every` steps and at the end.
Training seconds accumulate across resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from adinspect.train.checkpoint import EMA, check_same_settings, load_checkpoint, read_meta, save_checkpoint


@dataclass
class LoopResult:
    start: int  # the step training (re)started from
    losses: list[float]  # per step of this run
    seconds: float  # training time of this run plus earlier runs of the same checkpoint

    @property
    def final_loss(self) -> float | None:
        """Mean loss of the last 50 steps (None when nothing ran)."""
        return float(np.mean(self.losses[-50:])) if self.losses else None


def run_loop(
    model: nn.Module,
    ema: EMA,
    optimizer: torch.optim.Optimizer,
    *,
    total: int,
    loss_at: Callable[[int], torch.Tensor],
    rate_at: Callable[[int], object],
    checkpoint: Path,
    identity: dict,
    extra: dict,
    resume: bool,
    checkpoint_every: int,
    desc: str,
    progress: bool,
    free_settings: Collection[str] = (),
) -> LoopResult:
    """Run steps [start, total); `loss_at(step)` builds the batch and returns the loss tensor,
    `rate_at(step)` sets the learning rate; `identity` is saved and checked on resume, `extra`
    saved; its "settings", when given, are checked on resume too, but for the keys in
    `free_settings` (those a resumed run may change)."""
    start, earlier = 0, 0.0
    if resume and checkpoint.is_file():
        if "settings" in extra:
            recorded = read_meta(checkpoint).get("settings")
            check_same_settings(recorded, extra["settings"], free_settings, checkpoint)
        state = load_checkpoint(checkpoint, model, ema, optimizer, identity)
        start, earlier = state.step, float(state.meta.get("train_seconds", 0.0))
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(range(start, total), desc=desc, initial=start, total=total, disable=not progress)
    for step in bar:
        rate_at(step)
        loss = loss_at(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        ema.update(model, step)
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if (step + 1) % checkpoint_every == 0 or step + 1 == total:
            seconds = earlier + time.perf_counter() - t0
            meta = {**identity, **extra, "train_seconds": seconds}
            save_checkpoint(checkpoint, model, ema, optimizer, step + 1, meta)
    return LoopResult(start, losses, earlier + time.perf_counter() - t0)
