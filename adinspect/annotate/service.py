"""The labelling tool's operations, independent of HTTP: queue, click runtime and store together.

Every public method takes already-parsed values and either returns a result or raises `ApiError`
with an HTTP status and a one-line message the page shows. Nothing is written unless the whole
request is valid. One lock serialises model runs: the machine's cores serve one click at a time
faster than two interleaved ones, and the per-image caches stay consistent.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from adinspect.annotate.queue import QueueItem, build_queue
from adinspect.annotate.store import EMPTY_MASK, ClickPoint, ConflictError, Decision, LabelStore, State
from adinspect.errors import InputError
from adinspect.imageio import decode_mask, encode_png, read_image
from adinspect.runtime.click import ClickRuntime, ClickSession, NoClickModel
from adinspect.runtime.clicks import Click

_OPEN_IMAGES = 4  # residuals kept in memory (a few back-and-forth images)


class ApiError(Exception):
    """A request that cannot be served: HTTP status and a message for the person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Segmentation:
    """A mask after some clicks: (H, W) bool at the original size (or at the model input when asked)."""

    mask: np.ndarray
    area: int
    clicks_scaled: list[Click]


class Annotator:
    """The state behind `adinspect annotate`.

    Args:
        model_dir: a fitted package (with click.onnx for clicking; without, only heat maps).
        data_dir: the dataset whose images are labelled.
        out_dir: the labels directory; nothing is written elsewhere.
    """

    def __init__(self, model_dir: Path, data_dir: Path, out_dir: Path, threads: int | None = None) -> None:
        self.model_dir = Path(model_dir).resolve()
        self.data_dir = Path(data_dir).resolve()
        self.runtime = ClickRuntime(self.model_dir, threads)
        self.queue = build_queue(self.data_dir)
        self.store = LabelStore(out_dir, self.data_dir)
        self._sessions: OrderedDict[int, ClickSession] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def defect_types(self) -> list[str]:
        return self.runtime.defect_types

    def item(self, image_id: object) -> QueueItem:
        """The queue item of an id; anything but an integer in range is a 404."""
        if isinstance(image_id, str) and image_id.isdigit():
            image_id = int(image_id)
        if not isinstance(image_id, int) or isinstance(image_id, bool) or not 0 <= image_id < len(self.queue):
            raise ApiError(404, f"unknown image id {image_id!r}; ids are 0..{len(self.queue) - 1}")
        return self.queue[image_id]

    def listing(self) -> dict:
        """The queue with each image's state and the progress counts."""
        decisions = self.store.load().images
        images = []
        for it in self.queue:
            d = decisions.get(it.rel)
            images.append({"id": it.id, "name": it.rel, "folder_type": it.folder_type,
                           "state": d.state if d else "todo",
                           "defect_type": d.defect_type if d else None})  # fmt: skip
        counts = {
            s: sum(i["state"] == s for i in images) for s in ("accepted", "no_defect", "skipped", "todo")
        }
        resume = next((i["id"] for i in images if i["state"] == "todo"), 0)
        return {"images": images, "progress": counts, "resume": resume, "defect_types": self.defect_types,
                "click_model": self.runtime.click is not None, "image_size": self.runtime.size,
                "input_shape": list(self.runtime.model_shape), "snap": self.runtime.finish.snap,
                "trace": self.runtime.finish.trace}  # fmt: skip

    def describe(self, image_id: object) -> dict:
        """An image's facts, its decision so far and where to fetch its pixels and heat map."""
        it = self.item(image_id)
        session = self.session(it.id)
        d = self.store.load().images.get(it.rel)
        h, w = session.shape
        return {
            "id": it.id, "name": it.rel, "width": w, "height": h, "folder_type": it.folder_type,
            "decision": d.model_dump() if d else None,
            "image_url": f"/api/images/{it.id}/image.png", "heatmap_url": f"/api/images/{it.id}/heatmap.png",
            "mask_url": f"/api/images/{it.id}/mask.png" if d and d.mask else None,
        }  # fmt: skip

    def session(self, image_id: int) -> ClickSession:
        """The opened image (residual computed once, kept for the last few images)."""
        with self._lock:
            if image_id in self._sessions:
                self._sessions.move_to_end(image_id)
                return self._sessions[image_id]
            it = self.queue[image_id]
            try:
                session = self.runtime.open(read_image(it.path), name=it.rel)
            except (InputError, ValueError) as exc:
                raise ApiError(422, f"{it.rel}: {exc}") from exc
            self._sessions[image_id] = session
            if len(self._sessions) > _OPEN_IMAGES:
                self._sessions.popitem(last=False)
            return session

    def image_png(self, image_id: object) -> bytes:
        return encode_png(read_image(self.item(image_id).path))

    def heatmap_png(self, image_id: object) -> bytes:
        """The training-free anomaly map as a translucent RGBA overlay at the original size."""
        it = self.item(image_id)
        session = self.session(it.id)
        amap = session.anomaly_map
        scale = max(float(self.runtime.package.threshold), float(amap.max()), 1e-6)
        norm = np.clip(amap / scale, 0, 1)
        color = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
        rgba = np.dstack([color, (norm * 200).astype(np.uint8)])
        h, w = session.shape
        return encode_png(cv2.resize(rgba, (w, h), interpolation=cv2.INTER_LINEAR))

    def saved_mask_png(self, image_id: object) -> bytes:
        d = self.store.load().images.get(self.item(image_id).rel)
        if d is None or d.mask is None:
            raise ApiError(404, f"image {image_id} has no accepted mask")
        return (self.store.root / d.mask).read_bytes()

    def segment(
        self, image_id: object, defect_type: str, clicks: list[ClickPoint], full_size: bool
    ) -> Segmentation:
        """ADClick's mask after the clicks (original pixels, in order)."""
        session = self.session(self.item(image_id).id)
        points = [Click(c.y, c.x, c.positive) for c in clicks]
        with self._lock:
            try:
                prob = session.probability(points, defect_type)
            except NoClickModel as exc:
                raise ApiError(409, str(exc)) from exc
            except ValueError as exc:
                raise ApiError(422, str(exc)) from exc
        mask = session.mask(prob, full_size)
        return Segmentation(mask, int(mask.sum()), session.scaled(points))

    def accept(
        self, image_id: object, defect_type: str, clicks: list[ClickPoint], mask_png: bytes | None
    ) -> Decision:
        """Save the mask (the page's, after brush edits, or ADClick's for the clicks) and the clicks."""
        it = self.item(image_id)
        seg = self.segment(it.id, defect_type, clicks, full_size=True)
        mask = seg.mask
        if mask_png is not None:
            try:
                mask = decode_mask(mask_png, name="accepted mask", expected_shape=mask.shape)
            except (InputError, ValueError) as exc:
                raise ApiError(422, str(exc)) from exc
        if not mask.any():  # a defect label of nothing would train the seg model on nothing
            raise ApiError(422, EMPTY_MASK)
        try:
            return self.store.accept(it, defect_type, clicks, mask.astype(bool))
        except ConflictError as exc:
            raise ApiError(409, str(exc)) from exc

    def mark(self, image_id: object, state: State) -> Decision:
        return self.store.mark(self.item(image_id), state)
