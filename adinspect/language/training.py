"""Language as the trainers feed it (paper §3.3): per-prompt features and a generic description.

The served V_lang (`language.safetensors`) is the mean over each type's U prompts (Eq. 6). For
training, the paper feeds that mean for half of the samples and a single prompt's features for
the other half, so the per-prompt token features are kept here. Synthetic anomalies are not of any
of the product's types; they get the language of a *generic* defect description ("a visible
defect on the edge of a glass bottle", ...), which is true for them, instead of a random type's.

All types, plus the generic one as the last row, share one Z (the longest prompt), so a batch can
mix them; rows beyond a prompt's tokens are zero and masked. Computed once per package with the
package's own encoder and cached by the trainers in their work directory (not served).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from adinspect.language.encoder import LanguageError, LanguageFeatures, token_features, tokenize
from adinspect.language.prompts import template_prompts

GENERIC = "defect"  # the generic description's defect noun (template prompts "a visible defect on ...")


@dataclass
class TrainingLanguage:
    """Per-prompt features of the P types and the generic description (row P).

    prompt_feats (P + 1, U, Z, Q) float32, prompt_masks (P + 1, U, Z) float32; a type with fewer than
    U prompts has all-zero rows for the missing ones (`counts` says how many are real).
    """

    prompt_feats: np.ndarray
    prompt_masks: np.ndarray
    counts: np.ndarray  # (P + 1,) int

    @property
    def generic(self) -> int:
        """Index of the generic description."""
        return self.prompt_feats.shape[0] - 1

    def averaged(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 6 for every row: mean over its prompts (P + 1, Z, Q) and the union word mask (P + 1, Z)."""
        n = torch.from_numpy(self.counts).float()[:, None, None]
        feats = torch.from_numpy(self.prompt_feats).sum(1) / n
        return feats, (torch.from_numpy(self.prompt_masks).sum(1) > 0).float()

    def sample(
        self, types: np.ndarray, rng: np.random.Generator, single_fraction: float = 0.5
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Words for a batch of type indices (B,): the averaged features, or with probability
        `single_fraction` one random prompt's own features → (B, Z, Q), (B, Z)."""
        avg, avg_mask = self.averaged()
        words, masks = avg[types].clone(), avg_mask[types].clone()
        for b, t in enumerate(types):
            if rng.random() < single_fraction:
                u = int(rng.integers(self.counts[t]))
                words[b] = torch.from_numpy(self.prompt_feats[t, u])
                masks[b] = torch.from_numpy(self.prompt_masks[t, u])
        return words, masks


def generic_prompts(object_name: str, num: int, seed: int = 0) -> list[str]:
    """U template prompts of a generic defect on the product's object."""
    return template_prompts(object_name, GENERIC, num=num, seed=seed)


@torch.no_grad()
def encode_training_language(encoder, lang: LanguageFeatures, generic: list[str]) -> TrainingLanguage:
    """Token features of every prompt of `lang` (its stored prompts) and of `generic`.

    Raises:
        LanguageError: `lang` does not carry its prompts (made by an older version), or its
            averaged features disagree with what this encoder gives (another encoder).
    """
    prompts = [lang.prompts.get(t, []) for t in lang.defect_types] + [generic]
    if any(not p for p in prompts):
        raise LanguageError(
            "language.json lists no prompts for some defect type; re-run train-click --prompts"
        )
    z = max(len(i) for texts in prompts for i in tokenize(encoder, texts))
    u = max(len(p) for p in prompts)
    feats = np.zeros((len(prompts), u, z, lang.width), np.float32)
    masks = np.zeros((len(prompts), u, z), np.float32)
    for t, texts in enumerate(prompts):
        f = token_features(encoder, texts, z)
        feats[t, : len(texts)] = f.numpy()
        masks[t, : len(texts)] = (f.abs().sum(-1) > 0).float().numpy()
    out = TrainingLanguage(feats, masks, np.array([len(p) for p in prompts]))
    served = out.averaged()[0][:-1, : lang.v_lang.shape[1]].numpy()
    if not np.allclose(served, lang.v_lang, atol=1e-4):
        raise LanguageError(
            "the package's V_lang was made with another encoder or prompts; re-run train-click"
        )
    return out


def save_training_language(tl: TrainingLanguage, path: Path) -> None:
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    save_file(
        {"prompt_feats": tl.prompt_feats, "prompt_masks": tl.prompt_masks, "counts": tl.counts}, str(tmp)
    )
    tmp.replace(path)


def load_training_language(path: Path) -> TrainingLanguage:
    t = load_file(str(path))
    return TrainingLanguage(t["prompt_feats"], t["prompt_masks"], t["counts"])
