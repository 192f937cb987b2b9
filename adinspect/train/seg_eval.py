"""`adinspect evaluate-seg`: ADClick-Seg (seg.onnx, ONNX Runtime) against the training-free map.

Both maps are computed on the same images: by default the evaluation half of the defective test
images (never pseudo-labelled) plus all good test images. The training-free map is the package's
residual norm (blurred), the ADClick-Seg map the max over defect types of seg.onnx; metrics are
those of `adinspect evaluate` (metrics registry), at S x S.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from adinspect.contracts import SEG
from adinspect.data.datasets import open_dataset
from adinspect.errors import InputError
from adinspect.evaluation import load_mask_at
from adinspect.imageio import read_image
from adinspect.metrics import compute_metrics
from adinspect.runtime.seg import SEG_ONNX
from adinspect.train.interactive import defective_samples, select
from adinspect.train.residual_data import embed, load_context


def evaluate_seg(
    model_dir: Path, data_dir: Path, subset: str = "eval", seed: int = 0, progress: bool = True
) -> dict:
    """Metrics of the training-free map and of ADClick-Seg on `subset` defects + good test images."""
    import onnxruntime as ort

    t0 = time.perf_counter()
    ctx = load_context(model_dir)
    path = ctx.package.root / SEG_ONNX
    if not path.is_file():
        raise InputError(f"{model_dir}: no {SEG_ONNX}; run `adinspect train-seg` first")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    goods = [s for s in open_dataset(Path(data_dir)).test if s.label == 0]
    samples = select(defective_samples(data_dir), subset, seed) + goods
    s = ctx.image_size
    free_maps, seg_maps, masks, winners = [], [], [], []
    for sample in tqdm(samples, desc="evaluating seg", disable=not progress):
        image = read_image(sample.path)
        masks.append(load_mask_at(sample, image.shape[:2], s))
        with torch.no_grad():
            f, g = embed(ctx, [image])
            residual, amap, _ = ctx.pipeline.residual_model(f, g)
        out = session.run(None, {SEG.residual: residual.numpy()})
        free_maps.append(amap[0, 0].numpy())
        seg_maps.append(out[0][0, 0])
        winners.append(int(out[2][0]))
    labels = np.array([x.label for x in samples])
    masks_a = np.stack(masks)
    free = np.stack(free_maps)
    seg = np.stack(seg_maps)
    result = {
        "training_free": compute_metrics(free.max(axis=(1, 2)), labels, free, masks_a),
        "adclick_seg": compute_metrics(seg.max(axis=(1, 2)), labels, seg, masks_a),
        "n_images": len(samples),
        "n_defective": int(labels.sum()),
        "subset": subset,
        "seconds": time.perf_counter() - t0,
    }
    result["defect_type_accuracy"] = _type_accuracy(samples, winners, ctx)
    return result


def _type_accuracy(samples: list, winners: list[int], ctx) -> float | None:
    """Share of defective images whose highest-scoring defect type is their folder's type."""
    from adinspect.language.encoder import load_language

    types = load_language(ctx.package.root).defect_types
    pairs = [(s.defect_type, types[w]) for s, w in zip(samples, winners, strict=True) if s.label == 1]
    known = [(a, b) for a, b in pairs if a in types]
    return float(np.mean([a == b for a, b in known])) if known else None
