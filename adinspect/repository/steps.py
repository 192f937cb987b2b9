"""The work behind each Python-backend model, as plain functions (numpy, opencv, onnxruntime).

Each Triton `model.py` parses its config once and hands its requests to these (gpu: `preprocess`
and `postprocess` per request; cpu: `ProductPipeline` per batch, which chains all of them; a
unified package's model runs `unified_steps.UnifiedPipeline`), so everything here is testable
without a server. Bad input raises `RequestError`, which
`model.py` turns into a per-request INVALID_ARGUMENT; anything else is a bug.

Nothing decoded outlives its request: a refused request is kept as a `Refusal` (its message only,
never the exception, whose traceback would hold the frames and the pixels they hold), and every
`RequestError` is raised outside the `except` block that caught the cause, so it carries no
context. Whatever a client chose (a request id, a map format) is echoed at most `ECHO_CHARS` long.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np

from adinspect.contracts import (
    BACKBONE,
    INSPECT_OUT,
    MAP_FORMATS,
    RESIDUAL,
    RESIDUAL_OUT,
    SEG,
    SEG_OUT,
)
from adinspect.geometry import PreprocessSpec, check_rgb, preprocess
from adinspect.imageio import (
    DEFAULT_DECODE_BUDGET,
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    check_image_size,
    decode_image,
)
from adinspect.runtime.postprocess import find_regions, resize_map, verdict_of

ECHO_CHARS = 40
"""Most characters of a client-chosen value (request id, map format) put into an error message:
the message travels in gRPC trailers, which a client refuses past 16 KiB (RESOURCE_EXHAUSTED)."""
MAP_FORMAT_MAX_BYTES = 16


class RequestError(ValueError):
    """A request that cannot be served as sent; the message names what was received and expected."""


class Refusal(NamedTuple):
    """The answer to a request that is not served: its message and gRPC status name."""

    message: str
    code: str = "INVALID_ARGUMENT"  # or CANCELLED: the client gave up (deadline passed) before the work


def echo(value: str | bytes) -> str:
    """A client-chosen value for an error message: at most ECHO_CHARS characters, then its length."""
    text = value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)
    if len(text) <= ECHO_CHARS:
        return text
    return f"{text[:ECHO_CHARS]}… ({len(value)} {'bytes' if isinstance(value, bytes) else 'characters'})"


def request_name(request_id: str) -> str:
    """How errors name a request: its id (capped), or "(no id)"."""
    return f"request {echo(request_id) if request_id else '(no id)'}"


# ------------------------------------------------------------------------------------ preprocess


def _check_pixels(height: int, width: int, max_pixels: int, name: str) -> None:
    message = ""
    try:
        check_image_size((height, width), max_pixels, name)
    except ImageReadError as exc:
        message = str(exc)
    if message:
        raise RequestError(message)


def decode_request_image(
    image_bytes: np.ndarray | None,
    image_raw: np.ndarray | None,
    max_pixels: int,
    name: str = "request",
    max_bytes: int | None = DEFAULT_DECODE_BUDGET,
) -> np.ndarray:
    """One request's image, from exactly one of the two ensemble inputs, as (H, W, 3) uint8 RGB.

    Args:
        image_bytes: TYPE_STRING tensor of shape (1, 1) holding one encoded image, or None.
        image_raw: uint8 tensor of shape (1, H, W, 3), or None.
        max_pixels: refuse larger images (checked from the header before decoding).
        max_bytes: refuse images whose decoding would take more memory (from the header too).

    Raises:
        RequestError: both or neither input, a batch other than 1, corrupt bytes, wrong shape.
    """
    if (image_bytes is None) == (image_raw is None):
        raise RequestError(
            f"{name}: send exactly one of image_bytes (encoded file) or image_raw (uint8 H x W x 3), "
            f"got {'both' if image_bytes is not None else 'neither'}"
        )
    tensor = image_bytes if image_bytes is not None else image_raw
    assert tensor is not None
    if tensor.shape[0] != 1:
        raise RequestError(f"{name}: expected one image per request (batch 1), got batch {tensor.shape[0]}")
    if image_raw is not None:
        image = image_raw[0]
        if image.ndim == 3:
            _check_pixels(image.shape[0], image.shape[1], max_pixels, name)
        return _checked_rgb(image, name)
    assert image_bytes is not None
    if image_bytes.size != 1:
        raise RequestError(f"{name}: image_bytes must hold one encoded image, got shape {image_bytes.shape}")
    data = image_bytes.reshape(-1)[0]
    if not isinstance(data, (bytes, bytearray)):
        raise RequestError(f"{name}: image_bytes must be bytes, got {type(data).__name__}")
    message = ""
    try:  # size, sample type and decode memory are checked from the header before anything is decoded
        image = decode_image(data, name=name, max_pixels=max_pixels, max_bytes=max_bytes)
    except ImageReadError as exc:
        message = str(exc)
    if message:  # raised out here: the error keeps no context, so no frame that held pixels
        raise RequestError(message)
    return _checked_rgb(image, name)


def _checked_rgb(image: np.ndarray, name: str) -> np.ndarray:
    message = ""
    try:
        check_rgb(image, name)
    except ValueError as exc:
        message = str(exc)
    if message:
        del image
        raise RequestError(message)
    return image


def preprocess_request(
    image_bytes: np.ndarray | None,
    image_raw: np.ndarray | None,
    spec: PreprocessSpec,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str = "request",
    max_bytes: int | None = DEFAULT_DECODE_BUDGET,
) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble inputs of one request → (1, 3, H_in, W_in) float32 normalised, (1, 2) int32 original
    (H, W)."""
    image = decode_request_image(image_bytes, image_raw, max_pixels, name, max_bytes)
    size = np.array([[image.shape[0], image.shape[1]]], dtype=np.int32)
    return preprocess(image, spec)[None], size


# ------------------------------------------------------------------------------------ postprocess


def parse_map_format(tensor: np.ndarray | None) -> str:
    """The optional map_format input → one of MAP_FORMATS ("none" when absent)."""
    if tensor is None:
        return "none"
    value = tensor.reshape(-1)[0] if tensor.size else b""
    raw = bytes(value) if isinstance(value, (bytes, bytearray)) else str(value).encode()
    text = raw.decode("utf-8", "replace") if len(raw) <= MAP_FORMAT_MAX_BYTES else ""
    if text not in MAP_FORMATS:
        raise RequestError(f"map_format must be one of {list(MAP_FORMATS)}, got {echo(raw)!r}")
    return text


def map_png(anomaly_map: np.ndarray, threshold: float) -> bytes:
    """(H, W) map → 8-bit gray PNG with 128 at the threshold and 255 at twice it."""
    scale = 128.0 / threshold if threshold > 0 else 1.0
    # NaN/inf (a broken model, already a `fail`) become 255 rather than undefined bytes.
    gray = np.clip(np.rint(np.nan_to_num(anomaly_map * scale, nan=255.0)), 0, 255).astype(np.uint8)
    ok, buffer = cv2.imencode(".png", gray)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a map of shape {anomaly_map.shape} as PNG")
    return buffer.tobytes()


def postprocess_request(
    anomaly_map: np.ndarray,
    score: np.ndarray,
    threshold: np.ndarray,
    original_size: np.ndarray,
    map_format: str = "none",
    defect_type: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One request's step outputs → the ensemble's outputs (same code as the in-process inspector).

    Args:
        anomaly_map: (1, 1, H_in, W_in) float32; score, threshold: (1, 1) float32; original_size:
            (1, 2) int32.
        defect_type: (1, 1) object, the highest-scoring defect type from seg_<product>, or None.

    Returns:
        score, threshold (1, 1) float32; verdict, regions, defect_type (1, 1) object (bytes; b"" for
        no defect type); anomaly_map (1, H, W) float32 or (1, 0, 0); anomaly_map_png (1, 1) object.
    """
    height, width = (int(v) for v in original_size.reshape(-1)[:2])
    if height < 1 or width < 1:
        raise RequestError(f"original_size must be positive (height, width), got {(height, width)}")
    value = float(score.reshape(-1)[0])
    limit = float(threshold.reshape(-1)[0])
    full = resize_map(anomaly_map.reshape(anomaly_map.shape[-2:]), height, width)
    regions = find_regions(full, limit)
    payload = json.dumps([region.model_dump() for region in regions]).encode()
    verdict, reason = verdict_of(value, limit, full)
    out_map = full[None] if map_format == "array" else np.zeros((1, 0, 0), np.float32)
    png = map_png(full, limit) if map_format == "png" else b""
    return {
        INSPECT_OUT.score: np.array([[value]], np.float32),
        INSPECT_OUT.threshold: np.array([[limit]], np.float32),
        INSPECT_OUT.verdict: np.array([[verdict.encode()]], dtype=object),
        INSPECT_OUT.reason: np.array([[reason.encode()]], dtype=object),
        INSPECT_OUT.regions: np.array([[payload]], dtype=object),
        INSPECT_OUT.anomaly_map: np.ascontiguousarray(out_map, dtype=np.float32),
        INSPECT_OUT.anomaly_map_png: np.array([[png]], dtype=object),
        INSPECT_OUT.defect_type: np.array([[_text(defect_type)]], dtype=object),
    }


def _text(tensor: np.ndarray | None) -> bytes:
    """A (1, 1) string tensor's value as bytes (b"" for None)."""
    if tensor is None or tensor.size == 0:
        return b""
    value = tensor.reshape(-1)[0]
    return bytes(value) if isinstance(value, (bytes, bytearray)) else str(value).encode()


# ------------------------------------------------------------------------------------ one-hop product


class ProductRequest(NamedTuple):
    """One request to `inspect_<product>` as its tensors (None for an input it did not send).

    `cancelled` says whether its client gave up (Triton's `request.is_cancelled`: a passed deadline
    cancels the call); it is asked again after decoding and after the models, so a request whose
    deadline passed meanwhile costs no more work and is not counted as served.
    """

    image_bytes: np.ndarray | None
    image_raw: np.ndarray | None
    map_format: np.ndarray | None
    name: str = "request"
    cancelled: Callable[[], bool] | None = None

    def is_cancelled(self) -> bool:
        return self.cancelled is not None and bool(self.cancelled())


CANCELLED = Refusal("request cancelled: its deadline passed before it was served", "CANCELLED")


@dataclass(frozen=True)
class ProductPipeline:
    """`inspect_<product>` of the cpu flavour: every step of the ensemble in one Python model.

    On CPU each Python-backend hop costs a stub round trip and a copy of its tensors through shared
    memory; four of them made the served p50 1.37x the in-process one. Here one hop runs the same
    functions the ensemble's steps run, on the residual and seg models `repo build` baked (threshold,
    product id and defect-type names inside), so both flavours serve the same graphs.

    Args:
        sessions: ONNX Runtime sessions (backbone, baked residual, baked seg or None).
        max_bytes: decode memory budget per image (`imageio.limits`).
    """

    spec: PreprocessSpec
    max_pixels: int
    backbone: Any
    residual: Any
    seg: Any | None = None
    max_bytes: int | None = DEFAULT_DECODE_BUDGET

    def run(self, requests: Sequence[ProductRequest]) -> list[dict[str, np.ndarray] | Refusal]:
        """Each request's outputs (`postprocess_request`'s), or the Refusal it gets; the valid
        requests of a batch go through the ONNX models together."""
        answers: list[dict[str, np.ndarray] | Refusal] = []
        valid: list[tuple[int, np.ndarray, np.ndarray, str]] = []
        for index, request in enumerate(requests):
            try:
                map_format = parse_map_format(request.map_format)  # before decoding: it is cheap
                image, size = preprocess_request(
                    request.image_bytes,
                    request.image_raw,
                    self.spec,
                    self.max_pixels,
                    request.name,
                    self.max_bytes,
                )
            except RequestError as exc:
                answers.append(Refusal(str(exc)))  # the message only: the exception dies here
                continue
            if request.is_cancelled():  # its deadline passed while it was decoded: no model time
                answers.append(CANCELLED)
                continue
            answers.append({})
            valid.append((index, image, size, map_format))
        if not valid:
            return answers
        amap, score, threshold, pid, kind = self._models(np.concatenate([v[1] for v in valid]))
        for row, (index, _, size, map_format) in enumerate(valid):
            if requests[index].is_cancelled():
                answers[index] = CANCELLED
                continue
            one = slice(row, row + 1)
            outputs = postprocess_request(
                amap[one], score[one], threshold[one], size, map_format, None if kind is None else kind[one]
            )
            answers[index] = {**outputs, RESIDUAL_OUT.product_id: pid[one]}
        return answers

    def warm_up(self) -> None:
        """One black 64x64 image through every step: the first camera request pays no start-up."""
        black = ProductRequest(None, np.zeros((1, 64, 64, 3), np.uint8), None, name="warm-up")
        (answer,) = self.run([black])
        if isinstance(answer, Refusal):
            raise RequestError(f"warm-up refused: {answer.message}")

    def _models(
        self, batch: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """(B, 3, H_in, W_in) → map (B, 1, H_in, W_in), score, threshold, product id, defect name or None."""
        features, global_map = self.backbone.run(
            [BACKBONE.features, BACKBONE.global_map], {BACKBONE.image: batch}
        )
        feeds = {RESIDUAL.features: features, RESIDUAL.global_map: global_map}
        if self.seg is None:
            wanted = [RESIDUAL_OUT.anomaly_map, RESIDUAL_OUT.score, RESIDUAL_OUT.threshold]
            amap, score, threshold, pid = self.residual.run([*wanted, RESIDUAL_OUT.product_id], feeds)
            return amap, score, threshold, pid, None
        residual, pid = self.residual.run([RESIDUAL_OUT.residual, RESIDUAL_OUT.product_id], feeds)
        amap, score, threshold, kind = self.seg.run(
            [SEG_OUT.anomaly_map, SEG_OUT.score, SEG_OUT.threshold, SEG_OUT.defect_name],
            {SEG.residual: residual},
        )
        return amap, score, threshold, pid, np.asarray(kind, dtype=object)
