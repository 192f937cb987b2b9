"""What `train-seg` decides once the network is trained, from training-time images only.

Three decisions, in this order, each on the pseudo-labelled defects and the good images held out
of seg's training (`residual_data.seg_holdout`), never on test images:
1. the served map: the seg probability, or fused with the training-free map (`seg_fusion`);
2. its threshold for the target false-reject rate, and whether results may name a defect type
   (`seg_calibration`);
3. whether seg takes over the package's verdict at all (`seg_serving`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from adinspect.errors import InputError
from adinspect.models.export import SegGraph
from adinspect.residual.position import PositionNorm
from adinspect.train.residual_data import ResidualSet, honest_residuals, seg_holdout
from adinspect.train.seg_calibration import defect_type_claim, seg_threshold
from adinspect.train.seg_fusion import choose_fusion
from adinspect.train.seg_serving import decide_serving, serving_line

FUSED_MAP = "sqrt(seg probability * training-free map / free_threshold)"
CARD_HEADING = "## ADClick-Seg (`train-seg`)"


def decide_after_training(
    ctx, model, v_lang: torch.Tensor, word_mask: torch.Tensor, sets: dict, fusion_how: str, serve_how: str,
    target_frr: float | None,
) -> tuple[SegGraph, dict]:  # fmt: skip
    """The graph to export and the report's `fusion`, `calibration`, `defect_type_claim` and
    `serving`. `sets` holds the training sets (`pseudo`, `pseudo_types`, `pseudo_meta`,
    `pseudo_free_scores` when there are pseudo labels); `target_frr` None: the package's."""
    blur, t = ctx.package.config.method.blur_sigma, ctx.package.threshold
    plain = SegGraph(model, v_lang, word_mask, blur).eval()
    position = ctx.pipeline.residual_model.position  # the training-free map as served (normalised or not)
    norm = position if isinstance(position, PositionNorm) else None
    fused = SegGraph(model, v_lang, word_mask, blur, free_threshold=t, position=norm).eval()
    holdout = holdout_residuals(ctx)
    rules = ctx.package.config.calibration  # the seg threshold's target (the package's unless set) and floor
    target = rules.target_frr if target_frr is None else target_frr
    pseudo = sets.get("pseudo")
    fusion = decide_fusion(plain, fused, holdout[1], pseudo, fusion_how, target, rules.seg_floor)
    graph = fused if fusion["kind"] == "geometric" else plain
    report: dict = {
        "fusion": {
            **fusion,
            "map": FUSED_MAP if graph is fused else "seg probability",
            "free_threshold": t if graph is fused else None,
        }
    }
    pseudo_names = [r["image"] for r in sets.get("pseudo_meta", [])]
    report["calibration"], report["defect_type_claim"] = calibrate_seg(
        ctx, graph, holdout, pseudo, pseudo_names, sets.get("pseudo_types"), target
    )
    cal = report["calibration"]
    free_scores = sets.get("pseudo_free_scores")
    ev = ctx.package.manifest.threshold_evidence  # None: fitted before it was recorded
    free_rejects = None if ev is None else (ev.false_rejects, ev.n_good)
    report["serving"] = decide_serving(
        cal["pseudo_passed"], None if free_scores is None else free_scores.numpy(), t, serve_how,
        (cal["false_rejects"], len(cal["holdout_scores"])), free_rejects,
    )  # fmt: skip
    return graph, report


def card_lines(report: dict) -> list[str]:
    """The model card's ADClick-Seg section: what the package serves, why, and the evidence."""
    serving, cal, fusion = report["serving"], report["calibration"], report["fusion"]
    served = (
        "**yes**: the package's verdict, map and regions are seg's, at the seg threshold"
        if serving["served"]
        else "**no**: the package's verdict, map and regions stay the training-free ones"
    )
    lines = [
        f"- served: {served}",
        f"- decision: {serving_line(serving)}",
        f"- serving rule: {serving['rule']}",
        f"- map: {fusion['map']}; fusion rule: {fusion['rule']}",
        f"- seg threshold = **{cal['threshold']:.6g}**: {cal['rule']}",
        f"- {cal['statement']}",
    ]
    if cal["expected_miss_rate"] is not None:
        lines.append(
            f"- pseudo-labelled defects passing the seg threshold: {cal['pseudo_passed']} of "
            f"{len(cal['pseudo_scores'])} (95 % interval {cal['expected_miss_low_95']:.1%}-"
            f"{cal['expected_miss_high_95']:.1%}; trained on them, so optimistic)"
        )
    claim = report["defect_type_claim"]
    named = "yes" if claim["claimed"] else "no"
    steps = report["steps"]
    return [
        *lines,
        f"- defect types named in results: {named} ({claim['rule']})",
        f"- trained: {steps['pretrain']} + {steps['finetune']} steps, {report['n_pseudo_labelled']} "
        f"pseudo-labelled images, {report['seconds']['train']:.0f} s",
    ]


def holdout_residuals(ctx) -> tuple[list[Path], torch.Tensor]:
    """The good images kept out of training (`seg_holdout`) and their residuals, each against the
    package's bank without it (as a new good part's)."""
    from adinspect.imageio import read_image

    paths, places = seg_holdout(ctx)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(
            f"held-out good image {missing[0]} (from calibration.json) is missing; restore the data"
        )
    return paths, honest_residuals(ctx, [read_image(p) for p in paths], places)


def _candidate_maps(plain: SegGraph, fused: SegGraph, sources: list[torch.Tensor], batch: int = 16) -> tuple:
    """The seg network once per image, `batch` at a time: its map (N, H_in, W_in) and the same map fused
    (`SegGraph.fuse`), as numpy."""
    p_maps, f_maps = [], []
    with torch.no_grad():
        for source in sources:
            for i in range(0, len(source), batch):
                residual = source[i : i + batch].float()
                amap = plain(residual)[0]
                p_maps.append(amap[:, 0])
                f_maps.append(fused.fuse(amap, residual)[:, 0])
    return torch.cat(p_maps).numpy(), torch.cat(f_maps).numpy()


def decide_fusion(
    plain: SegGraph,
    fused: SegGraph,
    good_residual: torch.Tensor,
    pseudo: ResidualSet | None,
    how: str,
    target_frr: float,
    floor: float | None,
) -> dict:
    """`seg_fusion.choose_fusion` on the pseudo-labelled and held-out good images, both candidate
    maps computed here; `target_frr` and `floor`: the seg threshold's."""
    if how != "auto" or pseudo is None:
        return choose_fusion(None, None, None, how)
    shape = pseudo.masks.shape[-2:]
    masks = torch.cat([pseudo.masks > 0.5, torch.zeros(len(good_residual), *shape, dtype=torch.bool)])
    p_maps, f_maps = _candidate_maps(plain, fused, [pseudo.residual, good_residual])
    return choose_fusion(p_maps, f_maps, masks.numpy(), how, len(pseudo.residual), target_frr, floor)


def calibrate_seg(
    ctx,
    graph: SegGraph,
    good: tuple[list[Path], torch.Tensor],
    pseudo: ResidualSet | None,
    pseudo_names: list[str],
    pseudo_types: torch.Tensor | None,
    target_frr: float,
) -> tuple[dict, dict]:
    """The seg threshold, and whether results may name a defect type, from training-time images
    only (rules: `seg_calibration`); `good` is `holdout_residuals(ctx)`.

    The seg score (a probability, or fused with the training-free map) is on another scale than
    the residual score, so the served verdict uses this threshold when seg_<product> is in the
    pipeline.
    """
    paths, good_residual = good
    with torch.no_grad():
        good_scores = graph(good_residual)[1].numpy()
        outs = graph(pseudo.residual.float()) if pseudo is not None else None
    bad = outs[1].numpy() if outs is not None else np.zeros(0)
    floor = ctx.package.config.calibration.seg_floor
    cal = seg_threshold(good_scores, [str(p) for p in paths], bad, pseudo_names, target_frr, floor)
    predicted = outs[2].numpy() if outs is not None else np.zeros(0, np.int64)
    labelled = pseudo_types.numpy() if pseudo_types is not None else np.zeros(0, np.int64)
    return cal.to_dict(), defect_type_claim(predicted, labelled, len(graph.v_lang))
