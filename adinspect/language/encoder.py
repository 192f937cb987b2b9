"""V_lang per defect type (Eq. 6), computed once offline and saved with the model package.

For every defect type p with prompts t_1..t_U, each prompt is tokenised ([CLS] ... [SEP]), padded
to Z tokens and encoded to a token-feature matrix (Z, Q) with padded rows set to zero;
V_lang[p] is the mean of the U matrices. Z is the longest prompt over all types (or a fixed
`max_tokens`), so all types share one (P, Z, Q) tensor. A word mask (P, Z) marks the rows that
at least one prompt fills; the models attend only to those.

Files (safetensors + JSON, no pickle): ``language.safetensors`` with ``v_lang`` (P, Z, Q) and
``word_mask`` (P, Z), and ``language.json`` with the encoder name and weights checksum, Z, Q,
the defect-type order, the prompts and the tensor file's sha256.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from adinspect.errors import InputError
from adinspect.language.bert import LoadedEncoder

LANGUAGE_TENSORS = "language.safetensors"
LANGUAGE_META = "language.json"
LANGUAGE_VERSION = 1


class LanguageError(InputError):
    """Language features that are missing, corrupt or inconsistent."""


@dataclass
class LanguageFeatures:
    """V_lang for P defect types: `v_lang` (P, Z, Q) float32 and `word_mask` (P, Z) float32 in {0, 1}."""

    v_lang: np.ndarray
    word_mask: np.ndarray
    defect_types: list[str]
    encoder: str
    encoder_checksum: str
    prompts: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p, z, _ = self.v_lang.shape
        if self.word_mask.shape != (p, z) or len(self.defect_types) != p:
            raise LanguageError(
                f"inconsistent language features: v_lang {self.v_lang.shape}, word_mask "
                f"{self.word_mask.shape}, {len(self.defect_types)} defect types"
            )

    @property
    def num_types(self) -> int:
        return self.v_lang.shape[0]

    @property
    def width(self) -> int:
        """Q, the encoder width."""
        return self.v_lang.shape[2]

    def index(self, defect_type: str) -> int:
        """Position of a defect type in V_lang; unknown names raise with the known ones."""
        if defect_type not in self.defect_types:
            raise LanguageError(f"unknown defect type {defect_type!r}; known: {self.defect_types}")
        return self.defect_types.index(defect_type)


def tokenize(encoder: LoadedEncoder, texts: list[str]) -> list[list[int]]:
    """Token ids per text, with [CLS]/[SEP], untruncated."""
    tok = encoder.tokenizer
    tok.no_padding()
    tok.no_truncation()
    return [tok.encode(t).ids for t in texts]


@torch.no_grad()
def token_features(encoder: LoadedEncoder, texts: list[str], length: int) -> torch.Tensor:
    """Encode texts to token features (N, length, Q), rows beyond each text's tokens zeroed."""
    ids = tokenize(encoder, texts)
    too_long = [(t, len(i)) for t, i in zip(texts, ids, strict=True) if len(i) > length]
    if too_long:
        raise LanguageError(f"prompt {too_long[0][0]!r} has {too_long[0][1]} tokens, more than Z={length}")
    batch = torch.zeros(len(ids), length, dtype=torch.int64)
    mask = torch.zeros(len(ids), length, dtype=torch.int64)
    for row, seq in enumerate(ids):
        batch[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    feats = encoder.model(batch, mask)
    return feats * mask[..., None]


def encode_prompts(
    encoder: LoadedEncoder, prompts: dict[str, list[str]], max_tokens: int | None = None
) -> LanguageFeatures:
    """Eq. 6: V_lang[p] = mean over the U prompts of defect type p of their (Z, Q) token features.

    Args:
        encoder: from `load_text_encoder`.
        prompts: {defect type: prompts}; the dict order is the defect-type order.
        max_tokens: fixed Z; default the longest prompt (in tokens, incl. [CLS]/[SEP]).
    """
    if not prompts:
        raise LanguageError("no defect types to encode")
    for name, texts in prompts.items():
        if not texts or any(not t.strip() for t in texts):
            raise LanguageError(f"defect type {name!r} has an empty prompt list or an empty prompt")
    longest = max(len(i) for texts in prompts.values() for i in tokenize(encoder, texts))
    z = longest if max_tokens is None else max_tokens
    if z > encoder.model.dims.max_positions:
        raise LanguageError(f"Z={z} exceeds the encoder's {encoder.model.dims.max_positions} positions")
    v, m = [], []
    for texts in prompts.values():
        feats = token_features(encoder, texts, z)  # (U, Z, Q)
        v.append(feats.mean(0))
        m.append((feats.abs().sum(-1) > 0).any(0).float())
    return LanguageFeatures(
        v_lang=torch.stack(v).numpy().astype(np.float32),
        word_mask=torch.stack(m).numpy().astype(np.float32),
        defect_types=list(prompts),
        encoder=encoder.name,
        encoder_checksum=encoder.checksum,
        prompts={k: list(t) for k, t in prompts.items()},
    )


@torch.no_grad()
def sentence_embeddings(encoder: LoadedEncoder, texts: list[str]) -> torch.Tensor:
    """Mean-pooled, L2-normalised sentence embeddings (N, Q), as sentence-transformers computes them."""
    length = max(len(i) for i in tokenize(encoder, texts))
    feats = token_features(encoder, texts, length)
    counts = torch.tensor([len(i) for i in tokenize(encoder, texts)], dtype=torch.float32)
    emb = feats.sum(1) / counts[:, None]
    return torch.nn.functional.normalize(emb, dim=-1)


def save_language(features: LanguageFeatures, directory: Path) -> Path:
    """Write language.safetensors + language.json into `directory`; returns the JSON path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = directory / LANGUAGE_TENSORS
    tmp = tensors.with_suffix(".tmp")
    save_file({"v_lang": features.v_lang, "word_mask": features.word_mask}, str(tmp))
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    meta = {
        "version": LANGUAGE_VERSION,
        "encoder": features.encoder,
        "encoder_checksum": features.encoder_checksum,
        "num_types": features.num_types,
        "Z": int(features.v_lang.shape[1]),
        "Q": features.width,
        "defect_types": features.defect_types,
        "single_type": features.num_types == 1,
        "prompts": features.prompts,
        "tensors_sha256": digest,
    }
    tmp.replace(tensors)
    path = directory / LANGUAGE_META
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path


def load_language(directory: Path) -> LanguageFeatures:
    """Read the language tensors of a model package, verifying the checksum and shapes."""
    directory = Path(directory)
    meta_path, tensors = directory / LANGUAGE_META, directory / LANGUAGE_TENSORS
    if not meta_path.is_file() or not tensors.is_file():
        raise LanguageError(
            f"{directory}: no language features ({LANGUAGE_META}/{LANGUAGE_TENSORS}); "
            f"run `adinspect train-click` (or the language step) on this model package first"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise LanguageError(f"{meta_path}: corrupt JSON: {exc}") from exc
    digest = hashlib.sha256(tensors.read_bytes()).hexdigest()
    if digest != meta.get("tensors_sha256"):
        raise LanguageError(
            f"{tensors}: checksum does not match {meta_path}; the file is corrupt or replaced"
        )
    arrays = load_file(str(tensors))
    feats = LanguageFeatures(
        v_lang=arrays["v_lang"],
        word_mask=arrays["word_mask"],
        defect_types=list(meta["defect_types"]),
        encoder=meta["encoder"],
        encoder_checksum=meta["encoder_checksum"],
        prompts=meta.get("prompts", {}),
    )
    if feats.v_lang.shape[1:] != (meta["Z"], meta["Q"]):
        raise LanguageError(f"{tensors}: v_lang shape {feats.v_lang.shape} disagrees with Z/Q in {meta_path}")
    return feats
