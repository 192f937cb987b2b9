"""The fitted model package (DESIGN.md §5): one directory per product, read without torch.

Layout::

    MODEL_DIR/
      package.json        manifest: format version, product, preprocess spec, threshold,
                          backbone + weights checksum, SHA-256 of every file below
      config.json         the PipelineConfig that made it
      backbone.onnx       image → features, global_map (shared by products with the same backbone)
      residual.onnx       features, global_map → residual, anomaly_map, score (bank as constants)
      residual.onnx.data  large banks only: residual.onnx's constants (ONNX external data)
      bank.safetensors    the bank's PCA and descriptors; its features are read from residual.onnx
      calibration.json    held-out good scores and the threshold rule
      model_card.md       what a person reads
      package.sha256      SHA-256 of package.json itself (`sha256sum -c` format), so the manifest's
                          own fields (threshold, product, file list) are covered too

A unified package (`adinspect train-unified`: one InvAD model for several products) has the same
manifest, checksums and card, with `unified` naming its products and each product's threshold; its
files are `invad.onnx` (image → anomaly_map, score), `invad.safetensors` (the torch weights),
`unified.json` (the training settings) and `calibration.json` (each product's held-out scores). It
has no reference bank and no config.json: `config` and `threshold` refuse it, `threshold_for(product)`
reads a product's threshold.

Everything downstream (inspector, Triton repository, benchmarks) reads only this directory.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adinspect.config import PipelineConfig, check_product_name, validate_config
from adinspect.errors import InputError
from adinspect.geometry import InputGeometry, PreprocessSpec

FORMAT_VERSION = 2  # 2: out-of-fold calibration for a target false-reject rate
MANIFEST = "package.json"
MANIFEST_CHECKSUM = "package.sha256"
# written by `adinspect label`, read by training and by `evaluate` (which must not import torch)
LABELS_DIR = "labels"
LABELS_JSON = "labels.json"
# residual.onnx's external data (the bank) when it is large; written by fit, served beside model.onnx
RESIDUAL_DATA = "residual.onnx.data"


class PackageError(InputError):
    """A model package that is missing, incomplete, corrupt or from an incompatible version."""


class BackboneRecord(BaseModel):
    """The backbone and the per-image shapes of what it produces: features (d_f, h, w), global map
    (c_1, h_g, w_g). Packages from before rectangular inputs record square sides (`feature_grid`,
    `global_grid`); they are read as (side, side)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    weights_source: str
    weights_sha256: str | None
    random_weights: bool
    feature_dim: int
    feature_shape: tuple[int, int]
    global_channels: int
    global_shape: tuple[int, int]

    @model_validator(mode="before")
    @classmethod
    def _square_grids(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for old, new in (("feature_grid", "feature_shape"), ("global_grid", "global_shape")):
                if old in data and new not in data:
                    side = data.pop(old)
                    data[new] = (side, side)
        return data


class ThresholdEvidence(BaseModel):
    """How far the good training images vouch for the threshold (`fitting.calibration`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_good: int = Field(description="good images scored out of fold")
    target_frr: float
    folds: str
    false_rejects: int = Field(description="out-of-fold scores above the threshold")
    false_reject_rate: float
    false_reject_upper_95: float = Field(description="one-sided 95 % Clopper-Pearson upper bound")
    statement: str


class ProductThreshold(BaseModel):
    """One product of a unified package: its threshold from its own held-out good images."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float
    threshold_rule: str
    n_train: int = Field(ge=1, description="good images trained on")
    n_holdout: int = Field(ge=1, description="good images held out (never trained on) for the threshold")


class UnifiedRecord(BaseModel):
    """What makes a package unified: one model for these products, a threshold for each."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["invad"] = "invad"
    products: dict[str, ProductThreshold] = Field(min_length=1)

    @field_validator("products")
    @classmethod
    def _names(cls, products: dict[str, ProductThreshold]) -> dict[str, ProductThreshold]:
        for name in products:
            check_product_name(name)  # each becomes served model names
        return products


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int
    adinspect_version: str
    product: str
    preprocess: PreprocessSpec
    backbone: BackboneRecord
    threshold: float
    threshold_rule: str
    threshold_evidence: ThresholdEvidence | None = None
    n_references: int
    choices: dict[str, str] | None = Field(
        default=None, description="what `fit --auto` chose (backbone, matching, ...) and by which rule"
    )
    files: dict[str, str] = Field(description="file name → SHA-256")
    optional_models: list[str] = Field(default_factory=list, description="e.g. 'seg' when seg.onnx exists")
    geometry: InputGeometry | None = Field(
        default=None, description="how fit chose the input shape (None in packages from before)"
    )
    unified: UnifiedRecord | None = Field(
        default=None, description="one model for several products (train-unified); product names the model"
    )

    @field_validator("product")
    @classmethod
    def _product_is_identifier(cls, v: str) -> str:
        return check_product_name(v)  # it becomes model names and paths: never `../x`

    @field_validator("files")
    @classmethod
    def _files_stay_inside(cls, files: dict[str, str]) -> dict[str, str]:
        for name in files:
            parts = PurePosixPath(name).parts
            outside = not name or name.startswith("/") or "\\" in name or ".." in parts
            if outside or name in (MANIFEST, MANIFEST_CHECKSUM):
                raise ValueError(f"file name {name!r} must be a relative path inside the package")
        return files


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _replace_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Write package.json and the checksum that covers it (package.sha256), each atomically.

    A crash between the two leaves a checksum that does not match: the package then fails to load
    (fail closed) instead of serving a manifest nobody sealed.
    """
    root = Path(root)
    text = manifest.model_dump_json(indent=2) + "\n"
    _replace_atomically(root / MANIFEST, text)
    digest = hashlib.sha256(text.encode()).hexdigest()
    _replace_atomically(root / MANIFEST_CHECKSUM, f"{digest}  {MANIFEST}\n")


def _check_manifest_checksum(root: Path) -> None:
    path = root / MANIFEST_CHECKSUM
    if not path.is_file():
        raise PackageError(
            f"{root}: no {MANIFEST_CHECKSUM}, so {MANIFEST} (threshold, file list) is not covered by a "
            "checksum; re-run `adinspect fit` with this version"
        )
    expected = path.read_text().split()[0] if path.read_text().split() else ""
    if sha256_of(root / MANIFEST) != expected:
        raise PackageError(
            f"{root / MANIFEST} was changed after it was written (its SHA-256 differs from "
            f"{MANIFEST_CHECKSUM}); restore it or re-run `adinspect fit`"
        )


class ModelPackage:
    """A validated model package. `load` checks the manifest, versions and every file's checksum."""

    def __init__(self, root: Path, manifest: Manifest, config: PipelineConfig | None) -> None:
        self.root = root
        self.manifest = manifest
        self._config = config

    @property
    def product(self) -> str:
        """The product (a unified package: the model's name; `products` lists what it inspects)."""
        return self.manifest.product

    @property
    def is_unified(self) -> bool:
        return self.manifest.unified is not None

    @property
    def products(self) -> list[str]:
        """The products this package inspects: its one product, or a unified package's products."""
        unified = self.manifest.unified
        return [self.manifest.product] if unified is None else list(unified.products)

    @property
    def config(self) -> PipelineConfig:
        """The pipeline config of a package from `adinspect fit` (a unified package has none)."""
        if self._config is None:
            self.require_bank()
        assert self._config is not None
        return self._config

    @property
    def threshold(self) -> float:
        """The threshold of a one-product package (a unified package: `threshold_for(product)`)."""
        if self.manifest.unified is not None:
            raise PackageError(
                f"{self.root} is one model for products {self.products}: each has its own threshold; "
                "name the product (--product)"
            )
        return self.manifest.threshold

    def resolve_product(self, product: str | None) -> str:
        """The product to inspect: `product` when the package knows it (None: a one-product
        package's own), else a PackageError listing what it knows."""
        if product is None and not self.is_unified:
            return self.manifest.product
        if product is None or product not in self.products:
            got = "no product" if product is None else f"product {product!r}"
            raise PackageError(
                f"{self.root} inspects products {self.products}, got {got}: name one of them "
                "(--product); a product it was not trained on has no threshold"
            )
        return product

    def product_for_data(self, product: str | None, data_name: str) -> str | None:
        """The product to inspect a data folder named `data_name` as: `product` when given, else a
        unified package's product of that name (None when it has none: `resolve_product` says so)."""
        if product is None and self.is_unified and data_name in self.products:
            return data_name
        return product

    def threshold_for(self, product: str | None) -> float:
        """The threshold of `product` (see `resolve_product`)."""
        name = self.resolve_product(product)
        unified = self.manifest.unified
        return self.manifest.threshold if unified is None else unified.products[name].threshold

    def require_bank(self) -> None:
        """PackageError unless this package holds one product's reference bank (`adinspect fit`)."""
        if self.is_unified:
            raise PackageError(
                f"{self.root} is one InvAD model for products {self.products} (from `adinspect "
                "train-unified`): it has no reference bank, which ADClick, ADClick-Seg, labelling and "
                "the torch residual pipeline work on; fit the product with `adinspect fit --data DIR "
                "--out PKG` and use that package"
            )

    @property
    def preprocess(self) -> PreprocessSpec:
        return self.manifest.preprocess

    def manifest_sha256(self) -> str:
        """SHA-256 of package.json: names this exact package version (served, logged, compared)."""
        return sha256_of(self.root / MANIFEST)

    def path(self, name: str) -> Path:
        if name not in self.manifest.files:
            raise PackageError(f"{self.root}: the package has no file {name!r}")
        return self.root / name

    def has(self, name: str) -> bool:
        return name in self.manifest.files

    @classmethod
    def load(cls, root: Path, verify: bool = True) -> ModelPackage:
        root = Path(root)
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise PackageError(
                f"{root} is not a model package (no {MANIFEST}); create one with `adinspect fit --out {root}`"
            )
        try:
            raw = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise PackageError(f"{manifest_path} is not valid JSON ({exc}); re-run `adinspect fit`") from exc
        if verify:
            _check_manifest_checksum(root)
        version = raw.get("format_version") if isinstance(raw, dict) else None
        if version != FORMAT_VERSION:
            raise PackageError(
                f"{manifest_path}: package format version {version!r}, this adinspect reads version "
                f"{FORMAT_VERSION}; re-fit the product with this version"
            )
        try:
            manifest = Manifest.model_validate(raw)
        except ValidationError as exc:
            raise PackageError(
                f"{manifest_path}: invalid manifest: {exc.errors()[0]['msg']} at "
                f"{'.'.join(map(str, exc.errors()[0]['loc']))}"
            ) from exc
        if verify:
            for name, digest in manifest.files.items():
                path = root / name
                if not path.is_file():
                    raise PackageError(
                        f"{root}: file {name} listed in {MANIFEST} is missing; re-run `adinspect fit`"
                    )
                if sha256_of(path) != digest:
                    raise PackageError(
                        f"{path} is corrupt (checksum differs from {MANIFEST}); re-run `adinspect fit`"
                    )
        if manifest.unified is not None:
            return cls(root, manifest, None)
        try:
            config_raw = json.loads((root / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise PackageError(f"{root / 'config.json'}: unreadable ({exc}); re-run `adinspect fit`") from exc
        return cls(root, manifest, validate_config(config_raw, source=str(root / "config.json")))
