"""What a person decided, on disk under the labels directory (`--out`), written atomically.

    LABELS_DIR/annotations.json                   every decision: accepted / no_defect / skipped
    LABELS_DIR/clicks.json                        accepted images' clicks, the file `label --clicks` reads
    LABELS_DIR/ground_truth/<type>/<stem>_mask.png  accepted masks at the original size (MVTec layout)

annotations.json is the one source of truth; clicks.json is derived from it after every change
(and again when the store opens, so a crash between the two writes heals itself). Every file is
written under a temporary name and renamed into place; a read-modify-write holds an exclusive
`flock` on LABELS_DIR/.lock, so two browser tabs (or two servers) never lose each other's labels.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from adinspect.annotate.queue import QueueItem
from adinspect.errors import InputError
from adinspect.imageio import write_mask

ANNOTATIONS = "annotations.json"
CLICKS = "clicks.json"
GROUND_TRUTH = "ground_truth"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
EMPTY_MASK = (
    "the mask is empty (0 defect pixels): draw the defect (another click or the brush), "
    "or mark the image 'no defect'"
)

State = Literal["accepted", "no_defect", "skipped"]


class ClickPoint(BaseModel):
    """A click in the original image's pixels; positive marks the defect."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    x: int
    y: int
    positive: bool


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: State
    defect_type: str | None = None
    clicks: list[ClickPoint] = Field(default_factory=list)
    mask: str | None = None  # path relative to the labels directory
    area: int | None = None  # mask pixels at the original size


class Annotations(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    data: str
    images: dict[str, Decision] = Field(default_factory=dict)  # key: image path relative to data


class ConflictError(InputError):
    """A write that would overwrite another image's label."""


class LabelStore:
    """The labels directory of one dataset. Writes only below `out_dir`."""

    def __init__(self, out_dir: Path, data_dir: Path) -> None:
        self.root = Path(out_dir).resolve()
        self.data_dir = Path(data_dir).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._write_clicks(self.load())

    def load(self) -> Annotations:
        path = self.root / ANNOTATIONS
        if not path.is_file():
            return Annotations(data=str(self.data_dir))
        try:
            ann = Annotations.model_validate_json(path.read_text())
        except ValueError as exc:
            raise InputError(
                f"{path}: not an annotations file ({exc}); move it away or pick another --out"
            ) from exc
        if Path(ann.data) != self.data_dir:
            raise InputError(f"{path} labels {ann.data}, not {self.data_dir}; pick another --out")
        return ann

    def accept(
        self, item: QueueItem, defect_type: str, clicks: list[ClickPoint], mask: np.ndarray
    ) -> Decision:
        """Write the (H, W) bool mask and record the clicks; returns the decision."""
        if not _SAFE_NAME.fullmatch(defect_type):
            raise InputError(f"defect type {defect_type!r} cannot be a folder name")
        if not mask.any():
            raise InputError(f"{item.rel}: {EMPTY_MASK}")
        rel = f"{GROUND_TRUTH}/{defect_type}/{item.path.stem}_mask.png"
        with self._locked():
            ann = self.load()
            for other, d in ann.images.items():
                if d.mask == rel and other != item.rel:
                    raise ConflictError(
                        f"{rel} already holds the mask of {other}; relabel that image instead"
                    )
            write_mask(self.root / rel, mask)
            decision = Decision(
                state="accepted", defect_type=defect_type, clicks=clicks, mask=rel, area=int(mask.sum())
            )
            self._commit(ann, item, decision)
        return decision

    def mark(self, item: QueueItem, state: State) -> Decision:
        """Record 'no_defect' or 'skipped' (removing an earlier mask of the image)."""
        decision = Decision(state=state)
        with self._locked():
            self._commit(self.load(), item, decision)
        return decision

    def _commit(self, ann: Annotations, item: QueueItem, decision: Decision) -> None:
        old = ann.images.get(item.rel)
        ann.images[item.rel] = decision
        _write_atomic(self.root / ANNOTATIONS, ann.model_dump_json(indent=2) + "\n")
        self._write_clicks(ann)
        if old is not None and old.mask and old.mask != decision.mask:
            (self.root / old.mask).unlink(missing_ok=True)

    def _write_clicks(self, ann: Annotations) -> None:
        entries = [
            {"image": rel, "defect_type": d.defect_type, "clicks": [c.model_dump() for c in d.clicks]}
            for rel, d in sorted(ann.images.items())
            if d.state == "accepted"
        ]
        _write_atomic(self.root / CLICKS, json.dumps({"images": entries}, indent=2) + "\n")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
