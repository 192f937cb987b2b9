"""The PyTorch eager reference of a fitted package: the same computation the ONNX files hold.

Used for parity tests, the eager side of `adinspect bench`, and by trainers that need the
residual tensor R of images (ADClick / ADClick-Seg).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from adinspect.features.backbones import WeightsError, create_backbone
from adinspect.features.embedder import FeatureEmbedder
from adinspect.package import ModelPackage
from adinspect.residual.bank import load_bank
from adinspect.residual.model import ResidualModel


class TorchPipeline(torch.nn.Module):
    """image (B, 3, H_in, W_in) → residual (B, d_f, h, w), anomaly_map (B, 1, H_in, W_in), score (B,)."""

    def __init__(self, embedder: FeatureEmbedder, residual: ResidualModel) -> None:
        super().__init__()
        self.embedder = embedder
        self.residual_model = residual

    @classmethod
    def from_package(cls, model_dir: Path) -> TorchPipeline:
        package = ModelPackage.load(Path(model_dir))
        package.require_bank()
        cfg = package.config
        record = package.manifest.backbone
        weights = None if record.random_weights else Path(record.weights_source)
        extractor, spec, info = create_backbone(
            cfg.backbone.name, weights=weights, allow_random=record.random_weights
        )
        if not record.random_weights and info.sha256 != record.weights_sha256:
            raise WeightsError(
                f"{model_dir}: the package was fitted with weights {record.weights_sha256}, "
                f"but {info.source} has {info.sha256}; restore the original weights file"
            )
        if record.random_weights:
            raise WeightsError(
                f"{model_dir}: a random-weights package cannot be rebuilt in torch; use the ONNX files"
            )
        embedder = FeatureEmbedder(extractor, spec, cfg.method).eval()
        residual = ResidualModel(load_bank(package.path("bank.safetensors")), cfg.method).eval()
        return cls(embedder, residual).eval()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features, global_map = self.embedder(image)
        return self.residual_model(features, global_map)

    @torch.no_grad()
    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Same contract as `Inspector.run`: (B, 3, H_in, W_in) → maps (B, H_in, W_in), scores (B,)."""
        _, amap, score = self(torch.from_numpy(batch))
        return amap[:, 0].numpy(), score.numpy()
