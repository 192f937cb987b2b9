"""What serving needs to know about a package's ADClick-Seg model (no torch).

`adinspect train-seg` writes seg.onnx and seg_model.json into the package and lists 'seg' in the
manifest's `optional_models`. The seg score is on another scale than the residual score (the seg
probability, or its geometric mean with the training-free map over the package threshold when
`train-seg` chose that: `models/export.py: SegGraph`), so a package with seg is judged by the seg model's
own calibrated threshold; its
`defect_type` output indexes the package's defect-type list, named in results only when training
found the model can tell the types apart (`defect_type_claim` in seg_model.json; packages written
before that was recorded keep naming them). This module is the one place that
reads those facts; the in-process inspector and the Triton repository builder both use it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from adinspect.package import ModelPackage, PackageError

SEG_MODEL = "seg"
SEG_ONNX = "seg.onnx"
SEG_META = "seg_model.json"


@dataclass(frozen=True)
class SegInfo:
    """The served facts of a package's ADClick-Seg model."""

    onnx: Path
    threshold: float
    defect_types: tuple[str, ...]
    names_types: bool = True  # False: the model cannot tell its types apart; results name none

    def type_name(self, index: int) -> str | None:
        """Defect-type name of a `defect_type` output index; None when the package names no type."""
        if not 0 <= index < len(self.defect_types):
            raise ValueError(
                f"defect-type index {index} out of range, expected 0..{len(self.defect_types) - 1}"
            )
        return self.defect_types[index] if self.names_types else None


def seg_info(package: ModelPackage) -> SegInfo | None:
    """The package's seg model, or None for a training-free package.

    Raises:
        PackageError: 'seg' is listed but seg.onnx / seg_model.json are missing or incomplete.
    """
    if SEG_MODEL not in package.manifest.optional_models:
        return None
    onnx_path = package.path(SEG_ONNX)
    meta_path = package.path(SEG_META)
    try:
        meta = json.loads(meta_path.read_text())
        threshold = float(meta["calibration"]["threshold"])
        types = tuple(str(name) for name in meta["defect_types"])
        # dict(): a claim that is not an object raises TypeError / ValueError, reported below
        names_types = bool(dict(meta.get("defect_type_claim", {})).get("claimed", True))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise PackageError(
            f"{meta_path}: expected JSON with calibration.threshold, defect_types and (optional) a "
            f"defect_type_claim object ({exc!r}); "
            "re-run `adinspect train-seg`"
        ) from exc
    if not math.isfinite(threshold) or not types:
        raise PackageError(
            f"{meta_path}: threshold {threshold!r} and defect types {list(types)} are not usable; "
            "re-run `adinspect train-seg`"
        )
    return SegInfo(onnx_path, threshold, types, names_types)
