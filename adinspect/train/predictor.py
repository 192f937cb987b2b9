"""ADClick on one image in torch, as `label`, `evaluate-clicks`, `choose-snap` and the validation in
`train-click` run it: (previous probability, clicks so far) → probability (H_in, W_in).

Each prediction goes through the same steps as in the labelling runtime (`runtime.click`): the
network, snapping to the image and tracing the line between positive clicks when the package says
so (`runtime.snap`, `runtime.trace`), then the floor that keeps
every positive click inside its mask (`runtime.coverage`). The predictor counts how often the
network (and snapping) left a positive click outside the mask, and how often the mask was empty,
before that floor.
"""

from __future__ import annotations

import numpy as np
import torch

from adinspect.models.adclick import ADClick
from adinspect.runtime.click import AS_PREDICTED, FinishOnImage, MaskFinish
from adinspect.runtime.clicks import PRED_THRESHOLD, Click, click_maps, click_radius
from adinspect.runtime.coverage import cover_positive_clicks


class ClickPredictor:
    """ADClick for one image: (previous probability (H_in, W_in), clicks so far) → probability."""

    def __init__(
        self,
        model: ADClick,
        residual: torch.Tensor,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        image: torch.Tensor | None = None,
        rgb: np.ndarray | None = None,
        features: torch.Tensor | None = None,
        finish: MaskFinish = AS_PREDICTED,
    ) -> None:
        self.finish_on_image = FinishOnImage(finish, rgb)  # raises when `finish` needs `rgb`
        self.model = model
        self.residual = residual  # (1, d_f, h, w)
        self.image = image  # (1, 3, H_in, W_in) normalised; used by models with the image branch
        self.features = features  # (1, d_f, h, w) backbone features; used by models with the prior
        self.words, self.word_mask = words[None], word_mask[None]
        self.shape = model.cfg.image_hw
        self.radius = click_radius(min(self.shape))
        self.predictions = 0
        self.missed = 0  # predictions whose mask left a positive click out, before the floor
        self.empty = 0  # predictions whose mask was empty, before the floor

    @torch.no_grad()
    def __call__(self, prev: np.ndarray, clicks: list[Click]) -> np.ndarray:
        maps = torch.from_numpy(click_maps(clicks, self.shape, self.radius))[None]
        prev_t = torch.from_numpy(prev.astype(np.float32))[None, None]
        logits = self.model(
            self.residual, prev_t, maps, self.words, self.word_mask, self.image, self.features
        )
        prob = torch.sigmoid(logits)[0, 0].numpy()
        prob = self.finish_on_image(prob, clicks, self.radius)
        self.predictions += 1
        self.empty += int(not (prob > PRED_THRESHOLD).any())
        prob, missed = cover_positive_clicks(prob, clicks, self.radius)
        self.missed += int(missed > 0)
        return prob

    def run(self, clicks: list[Click]) -> np.ndarray:
        """Feed the clicks one by one (each prediction is the next previous mask); final probability."""
        prob = np.zeros(self.shape, np.float32)
        for k in range(1, len(clicks) + 1):
            prob = self(prob, clicks[:k])
        return prob
