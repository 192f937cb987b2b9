"""The fitted model package (one directory per product, read without torch) and its model card."""

from adinspect.package.manifest import (
    FORMAT_VERSION,
    LABELS_DIR,
    LABELS_JSON,
    MANIFEST,
    MANIFEST_CHECKSUM,
    RESIDUAL_DATA,
    BackboneRecord,
    Manifest,
    ModelPackage,
    PackageError,
    ProductThreshold,
    ThresholdEvidence,
    UnifiedRecord,
    sha256_of,
    write_manifest,
)

__all__ = [
    "FORMAT_VERSION",
    "LABELS_DIR",
    "LABELS_JSON",
    "MANIFEST",
    "MANIFEST_CHECKSUM",
    "RESIDUAL_DATA",
    "BackboneRecord",
    "Manifest",
    "ModelPackage",
    "PackageError",
    "ProductThreshold",
    "UnifiedRecord",
    "ThresholdEvidence",
    "sha256_of",
    "write_manifest",
]
