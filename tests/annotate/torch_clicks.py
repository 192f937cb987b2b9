"""The torch path (`ClickPredictor`) on one image, to hold the labelling runtime against."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adinspect.runtime.click import MaskFinish
from adinspect.runtime.clicks import Click, scale_clicks


def torch_clicks(
    model: Path, data: Path, image: np.ndarray, clicks: list[Click], defect_type: str, finish: MaskFinish
) -> tuple[np.ndarray, np.ndarray]:
    """(probability as predicted, probability finished as `finish`) after `clicks` (original
    pixels), both (H_in, W_in), from the package's click model in torch."""
    from adinspect.runtime.snap import snap_rgb
    from adinspect.train.click_trainer import load_click_model
    from adinspect.train.common import language_tensors, prepare_language
    from adinspect.train.interactive import ClickPredictor
    from adinspect.train.residual_data import load_context, residuals_of

    ctx = load_context(model)
    lang = prepare_language(ctx, data)
    v_lang, word_mask = language_tensors(lang)
    t = lang.index(defect_type)
    net = load_click_model(ctx, lang)
    residual = residuals_of(ctx, [image])
    scaled = scale_clicks(clicks, image.shape[:2], ctx.image_size)
    plain = ClickPredictor(net, residual, v_lang[t], word_mask[t]).run(scaled)
    rgb = snap_rgb(image, ctx.image_size)
    finished = ClickPredictor(net, residual, v_lang[t], word_mask[t], None, rgb, finish=finish).run(scaled)
    return plain, finished
