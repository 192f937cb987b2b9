"""Shared orchestration for the trainers: language setup, package files, optimiser, schedule."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from adinspect.config import DefectType
from adinspect.data.datasets import open_dataset
from adinspect.errors import InputError
from adinspect.language.bert import PACKAGED_ENCODER
from adinspect.language.encoder import (
    LANGUAGE_META,
    LANGUAGE_TENSORS,
    LanguageFeatures,
    encode_prompts,
    load_language,
    save_language,
)
from adinspect.language.prompts import DEFAULT_NUM_PROMPTS, product_with_prompts, resolve_prompts
from adinspect.language.training import (
    TrainingLanguage,
    encode_training_language,
    generic_prompts,
    load_training_language,
    save_training_language,
)
from adinspect.package import MANIFEST, Manifest, sha256_of, write_manifest
from adinspect.train.residual_data import ResidualContext


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch; returns the numpy generator the trainer draws from."""
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def register_files(
    model_dir: Path, names: list[str], optional_models: Sequence[str] = (), unserved: Sequence[str] = ()
) -> None:
    """Add files (with their SHA-256) and optional model names to the package manifest, atomically;
    the models named in `unserved` leave `optional_models` (their files stay, checksummed)."""
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST
    manifest = Manifest.model_validate_json(path.read_text())
    files = {**manifest.files, **{n: sha256_of(model_dir / n) for n in names}}
    models = sorted((set(manifest.optional_models) | set(optional_models)) - set(unserved))
    updated = manifest.model_copy(update={"files": files, "optional_models": models})
    write_manifest(model_dir, updated)


def commit_files(
    model_dir: Path,
    staged: dict[str, Path],
    optional_models: Sequence[str] = (),
    unserved: Sequence[str] = (),
) -> None:
    """Move fully written temporary files to their final names, then register them in the manifest.

    Callers write every output under a temporary name first, so a failure while producing any of
    them leaves the package exactly as it was.
    """
    for name, tmp in staged.items():
        Path(tmp).replace(Path(model_dir) / name)
    register_files(model_dir, list(staged), optional_models, unserved)


def staging(model_dir: Path, name: str) -> Path:
    """Temporary path next to the final file `name` (same directory, so the rename is atomic)."""
    return Path(model_dir) / f".{name}.tmp"


def defect_types_for(ctx: ResidualContext, data_dir: Path | None) -> list[DefectType]:
    """The product's defect types: from its spec, else the dataset's defect folders."""
    spec = ctx.package.config.product
    if spec.defect_types:
        return list(spec.defect_types)
    names = open_dataset(Path(data_dir)).defect_types if data_dir is not None else []
    if not names:
        raise InputError(
            f"product {spec.name!r} lists no defect types and {data_dir} has no test/<defect> folders; "
            f"give a prompt file (--prompts) naming the defect types"
        )
    return [DefectType(name=n) for n in names]


def prepare_language(
    ctx: ResidualContext,
    data_dir: Path | None,
    prompts_file: Path | None = None,
    encoder: str | None = None,
    num_prompts: int = DEFAULT_NUM_PROMPTS,
    seed: int = 0,
) -> LanguageFeatures:
    """V_lang of the package: loaded if present (and no new prompts/encoder asked), else computed
    once with the offline encoder and saved into the package (registered in its manifest)."""
    root = ctx.package.root
    if prompts_file is None and encoder is None and (root / LANGUAGE_META).is_file():
        return load_language(root)
    from adinspect.language.bert import load_text_encoder

    spec = ctx.package.config.product
    spec = spec.model_copy(update={"defect_types": defect_types_for(ctx, data_dir)})
    if prompts_file is not None:
        spec = product_with_prompts(spec, prompts_file)
    prompts = resolve_prompts(spec, num=num_prompts, seed=seed)
    features = encode_prompts(load_text_encoder(encoder), prompts)
    save_language(features, root)
    register_files(root, [LANGUAGE_TENSORS, LANGUAGE_META])
    return features


def training_language(ctx: ResidualContext, lang: LanguageFeatures, work_dir: Path) -> TrainingLanguage:
    """Per-prompt features of the package's types and a generic description (`language.training`),
    computed once with the package's encoder and cached in the trainers' work directory."""
    meta = json.loads((ctx.package.root / LANGUAGE_META).read_text())
    path = Path(work_dir) / f"language-train-{meta['tensors_sha256'][:16]}.safetensors"
    if path.is_file():
        return load_training_language(path)
    from adinspect.language.bert import load_text_encoder

    spec = ctx.package.config.product
    obj = spec.object_name or spec.name.replace("_", " ")
    num = max(len(p) for p in lang.prompts.values()) if lang.prompts else DEFAULT_NUM_PROMPTS
    encoder = load_text_encoder(None if lang.encoder == PACKAGED_ENCODER else lang.encoder)
    tl = encode_training_language(encoder, lang, generic_prompts(obj, num))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_training_language(tl, path)
    return tl


def language_tensors(lang: LanguageFeatures) -> tuple[torch.Tensor, torch.Tensor]:
    """V_lang (P, Z, Q) and word mask (P, Z) as float32 tensors."""
    return torch.from_numpy(lang.v_lang).float(), torch.from_numpy(lang.word_mask).float()


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices and kernels only (not on biases and norm scales)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def set_lr(optimizer: torch.optim.Optimizer, step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 1% of `base`; returns the rate set."""
    if step < warmup:
        lr = base * (step + 1) / warmup
    else:
        t = (step - warmup) / max(1, total - warmup)
        lr = base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def write_json(path: Path, obj: dict) -> None:
    """Atomic JSON write."""
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)
