"""Line-side gRPC client of the served `inspect_<product>` ensembles (tritonclient.grpc; no torch).

    client = InspectionClient("127.0.0.1:8001")
    result = client.inspect("part_0001.png", product="bottle")       # InspectionResult
    result, heat = client.inspect_with_map(frame, product="bottle")  # raw uint8 HWC in, map out
    results = client.inspect_batch(paths, product="bottle")          # concurrent requests

Files and encoded bytes are sent as `image_bytes` (what a camera PC has). A numpy array is sent as
`image_raw` when the repository accepts raw pixels of its size (`repo build --raw-size HxW`), else
encoded as a lossless PNG. One image per request; batches are sent as concurrent requests, which
Triton's dynamic batchers group.

Every image has one overall deadline (`deadline_s`). Within it, answers that mean "try again"
(UNAVAILABLE: starting, draining, overloaded; NOT_FOUND "has no available versions": a model being
swapped or unloaded) are retried with jittered exponential back-off; each attempt tells the server
the time left (Triton's request timeout), so a request queued past its deadline is dropped there,
not computed. A product the server does not know (NOT_FOUND "is not found") is never retried: that
is a configuration error, not a transient one. Retries run in the caller's thread or in this
client's worker threads, never inside a gRPC callback, so a slow or failing attempt cannot block
tritonclient's own threads. Each attempt carries a request id (`<label>@<client id>:<n>/<attempt>`)
that the server's error log names.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adinspect.contracts import INSPECT_IN, INSPECT_OUT, MAP_FORMATS, ensemble_model
from adinspect.imageio import encode_png
from adinspect.results import InspectionResult, Region
from adinspect.runtime.postprocess import verdict_of

ImageLike = str | Path | bytes | np.ndarray


class InspectionError(RuntimeError):
    """The server refused or failed a request; `code` is the gRPC status name (e.g. INVALID_ARGUMENT)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ProductInfo:
    """What the ensemble's config says about a served product."""

    product: str
    threshold: float
    random_weights: bool
    adinspect_version: str
    defect_types: tuple[str, ...] = ()  # served with ADClick-Seg; empty for training-free products
    raw_size: tuple[int, int] | None = None  # (H, W) of the raw images it accepts; None: encoded only


def tritonclient_grpc():
    """`tritonclient.grpc`, imported when first needed, with what to install when it is missing."""
    try:
        import tritonclient.grpc as grpcclient
    except ImportError as exc:
        raise ImportError(
            "adinspect.client needs tritonclient[grpc]==2.51.0 (`.ci/install_triton.sh` or the serving extra)"
        ) from exc
    return grpcclient


def _status(exc: Exception) -> str | None:
    status = getattr(exc, "status", None)
    code = status() if callable(status) else None
    return str(code).removeprefix("StatusCode.") if code else None


def is_transient(code: str | None, message: str) -> bool:
    """True for answers worth retrying: the server is (re)starting, draining, overloaded or swapping a
    model version. Triton says NOT_FOUND both for an unknown model ("... is not found") and for a
    model with no loaded version at this moment ("... has no available versions"); only the second
    is transient."""
    if code == "UNAVAILABLE":
        return True
    return code == "NOT_FOUND" and "no available version" in message


class InspectionClient:
    """gRPC client for the `inspect_<product>` ensembles of one Triton server.

    Args:
        url: "host:port" of Triton's gRPC endpoint.
        deadline_s: overall deadline of one image, retries included (DEADLINE_EXCEEDED after it).
        backoff_s: first wait between attempts; doubles each time, with full jitter, at most 2 s.
        max_in_flight: concurrent requests `inspect_batch` keeps open (its worker threads).
        retry: False sends every call once (benchmarks that count raw failures); the deadline holds.
    """

    def __init__(
        self,
        url: str = "127.0.0.1:8001",
        *,
        deadline_s: float = 10.0,
        backoff_s: float = 0.05,
        max_in_flight: int = 8,
        retry: bool = True,
    ) -> None:
        self.url = url
        self.deadline_s = float(deadline_s)
        if not math.isfinite(self.deadline_s) or self.deadline_s <= 0:
            raise ValueError(f"deadline_s must be a positive number of seconds, got {self.deadline_s!r}")
        self.backoff_s = backoff_s
        self.max_in_flight = max_in_flight
        self.retry = retry
        self._grpc = tritonclient_grpc()
        self._client = self._grpc.InferenceServerClient(url=url, channel_args=_channel_args(self._grpc))
        self._info: dict[str, ProductInfo] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._ids = itertools.count(1)
        self._client_id = uuid.uuid4().hex[:8]

    # -------------------------------------------------------------------------------- health
    def is_live(self) -> bool:
        return self._call(lambda t: self._client.is_server_live(client_timeout=t))

    def is_ready(self) -> bool:
        return self._call(lambda t: self._client.is_server_ready(client_timeout=t))

    def is_product_ready(self, product: str) -> bool:
        """True when the product's ensemble (and so every step of it) is loaded and ready."""
        return self._call(lambda t: self._client.is_model_ready(ensemble_model(product), client_timeout=t))

    def wait_until_ready(self, product: str | None = None, timeout_s: float = 60.0) -> None:
        """Block until the server (and `product`, if given) is ready; TimeoutError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.is_ready() and (product is None or self.is_product_ready(product)):
                    return
            except InspectionError:
                pass
            time.sleep(0.2)
        what = f"product {product!r}" if product else "the server"
        raise TimeoutError(f"{what} at {self.url} was not ready within {timeout_s:.0f} s")

    def products(self) -> list[str]:
        """Products served (from the repository index: models named inspect_<product>)."""
        index = self._call(lambda t: self._client.get_model_repository_index(as_json=True, client_timeout=t))
        names = [m["name"] for m in index.get("models", []) if m.get("state", "READY") == "READY"]
        return sorted(n.removeprefix("inspect_") for n in names if n.startswith("inspect_"))

    def product_info(self, product: str, refresh: bool = False) -> ProductInfo:
        """Threshold and labels of a served product, read from its ensemble's config (cached)."""
        with self._lock:
            if product in self._info and not refresh:
                return self._info[product]
        model = ensemble_model(product)
        config = self._call(
            lambda t: self._client.get_model_config(model, as_json=True, client_timeout=t),
            what=f"config of {product!r}",
        )
        params = {k: v.get("string_value", "") for k, v in config["config"].get("parameters", {}).items()}
        info = ProductInfo(
            product=params.get("product", product),
            threshold=float(params["threshold"]),
            random_weights=json.loads(params.get("random_weights", "false")),
            adinspect_version=params.get("adinspect_version", "?"),
            defect_types=tuple(json.loads(params.get("defect_types", "[]"))),
            raw_size=_raw_size(params.get("raw_size", "")),
        )
        with self._lock:
            self._info[product] = info
        return info

    # -------------------------------------------------------------------------------- inference
    def inspect(self, image: ImageLike, product: str, name: str | None = None) -> InspectionResult:
        """One image (file path, encoded bytes or uint8 HxWx3 RGB array) → its result."""
        return self.inspect_with_map(image, product, name=name, map_format="none")[0]

    def inspect_with_map(
        self, image: ImageLike, product: str, name: str | None = None, map_format: str = "array"
    ) -> tuple[InspectionResult, np.ndarray | bytes | None]:
        """Like `inspect`, plus the anomaly map: (H, W) float32 for "array", PNG bytes for "png"."""
        inputs, outputs, label = self._request(image, product, name, map_format)
        request_id = f"{label}@{self._client_id}:{next(self._ids)}"
        response = self._call(
            lambda t, attempt: self._client.infer(
                ensemble_model(product),
                inputs,
                outputs=outputs,
                client_timeout=t,
                timeout=max(1, int(t * 1e6)),  # µs: the server drops it from its queue once it passed
                request_id=f"{request_id}/{attempt}",
            ),
            what=f"{label} on {product!r}",
            with_attempt=True,
        )
        return self._parse(response, product, label, map_format)

    def inspect_batch(
        self,
        images: Sequence[ImageLike],
        product: str,
        names: Sequence[str] | None = None,
        map_format: str = "none",
    ) -> list[InspectionResult]:
        """Many images as concurrent requests (at most `max_in_flight` open); results in input order.

        Raises:
            InspectionError: the first failed image (all others still complete first).
        """
        labels: list[str | None] = list(names) if names is not None else [None] * len(images)
        futures = [
            self.inspect_async(image, product, name=name, map_format=map_format)
            for image, name in zip(images, labels, strict=True)
        ]
        return [future.result()[0] for future in futures]

    def inspect_async(
        self, image: ImageLike, product: str, name: str | None = None, map_format: str = "none"
    ) -> Future:
        """Send without waiting; the Future resolves to (InspectionResult, map or None) or raises.

        At most `max_in_flight` requests run at once (worker threads); retries happen there.
        """
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="adinspect-client")
            pool = self._pool
        return pool.submit(self.inspect_with_map, image, product, name, map_format)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._client.close()

    def __enter__(self) -> InspectionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------- helpers
    def _request(
        self, image: ImageLike, product: str, name: str | None, map_format: str
    ) -> tuple[list, list, str]:
        grpc = self._grpc
        if map_format not in MAP_FORMATS:
            raise ValueError(f"map_format must be one of {list(MAP_FORMATS)}, got {map_format!r}")
        if isinstance(image, (str, Path)):
            path = Path(image)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such image file")
            image, name = path.read_bytes(), name or str(path)
        if isinstance(image, (bytes, bytearray)):
            tensor = grpc.InferInput(INSPECT_IN.image_bytes, [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[bytes(image)]], dtype=np.object_))
        elif isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"a raw image must be uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}")
            if self.product_info(product).raw_size == image.shape[:2]:
                tensor = grpc.InferInput(INSPECT_IN.image_raw, [1, *image.shape], "UINT8")
                tensor.set_data_from_numpy(np.ascontiguousarray(image)[None])
            else:  # lossless: the server decodes the same pixels (and sizes them before decoding)
                tensor = grpc.InferInput(INSPECT_IN.image_bytes, [1, 1], "BYTES")
                tensor.set_data_from_numpy(np.array([[encode_png(image, compression=1)]], dtype=np.object_))
        else:
            raise TypeError(
                f"image must be a path, encoded bytes or a uint8 array, got {type(image).__name__}"
            )
        inputs = [tensor]
        wanted = [
            INSPECT_OUT.score,
            INSPECT_OUT.threshold,
            INSPECT_OUT.verdict,
            INSPECT_OUT.reason,
            INSPECT_OUT.regions,
            INSPECT_OUT.defect_type,
        ]
        if map_format != "none":
            fmt = grpc.InferInput(INSPECT_IN.map_format, [1, 1], "BYTES")
            fmt.set_data_from_numpy(np.array([[map_format.encode()]], dtype=np.object_))
            inputs.append(fmt)
            wanted.append(INSPECT_OUT.anomaly_map if map_format == "array" else INSPECT_OUT.anomaly_map_png)
        outputs = [grpc.InferRequestedOutput(n) for n in wanted]
        return inputs, outputs, name or "image"

    def _parse(
        self, response: Any, product: str, label: str, map_format: str
    ) -> tuple[InspectionResult, np.ndarray | bytes | None]:
        info = self.product_info(product)
        regions = json.loads(response.as_numpy(INSPECT_OUT.regions).reshape(-1)[0])
        score = float(response.as_numpy(INSPECT_OUT.score).reshape(-1)[0])
        threshold = float(response.as_numpy(INSPECT_OUT.threshold).reshape(-1)[0])
        verdict = response.as_numpy(INSPECT_OUT.verdict).reshape(-1)[0].decode()
        reason = _text(response, INSPECT_OUT.reason)
        if verdict == "pass" and verdict_of(score, threshold)[0] != "pass":
            # Fail closed here too, by the one rule: an older or broken server must not pass a bad number.
            verdict, reason = "fail", f"server said pass for score {score} / threshold {threshold}"
        result = InspectionResult(
            image=label,
            product=product,
            score=score,
            threshold=threshold,
            verdict=verdict if verdict == "pass" else "fail",
            reason=reason,
            regions=[Region.model_validate(r) for r in regions],
            defect_type=_text(response, INSPECT_OUT.defect_type) or None,
            random_weights=info.random_weights,
        )
        extra: np.ndarray | bytes | None = None
        if map_format == "array":
            extra = response.as_numpy(INSPECT_OUT.anomaly_map)[0]
        elif map_format == "png":
            extra = bytes(response.as_numpy(INSPECT_OUT.anomaly_map_png).reshape(-1)[0])
        return result, extra

    def _call(self, fn: Callable[..., Any], what: str = "request", with_attempt: bool = False) -> Any:
        """Run a tritonclient call until it answers, a non-transient error, or the deadline.

        `fn(timeout)` (or `fn(timeout, attempt)`) gets the time left as its gRPC deadline.
        """
        exc_type = self._grpc.InferenceServerException
        deadline = time.monotonic() + self.deadline_s
        for attempt in itertools.count():
            left = deadline - time.monotonic()
            try:
                return fn(left, attempt) if with_attempt else fn(left)
            except exc_type as exc:
                code, message = _status(exc), str(exc.message() or exc)
                wait = random.uniform(0, min(2.0, self.backoff_s * 2**attempt))  # full jitter
                last = not self.retry or time.monotonic() + wait >= deadline
                if not is_transient(code, message) or last:
                    if is_transient(code, message):  # reported as what it is: the server is unavailable
                        message = (
                            f"still failing after {attempt + 1} attempts in {self.deadline_s:g} s: {message}"
                        )
                        code = "UNAVAILABLE"
                    raise InspectionError(f"{what} at {self.url}: {message}", code) from exc
                time.sleep(wait)
        raise AssertionError("unreachable")


def _channel_args(grpcclient: Any) -> list[tuple[str, Any]]:
    """tritonclient's own channel options, plus a reconnect back-off capped at 1 s: gRPC's default
    grows to 120 s, so after a server restart the channel stayed down ~10 s past readiness."""
    size = grpcclient.MAX_GRPC_MESSAGE_SIZE
    return [
        ("grpc.max_send_message_length", size),
        ("grpc.max_receive_message_length", size),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]


def _raw_size(text: str) -> tuple[int, int] | None:
    """The ensemble parameter "raw_size" ("HxW", or "" when it takes no raw input)."""
    if not text:
        return None
    height, width = (int(v) for v in text.split("x"))
    return height, width


def _text(response: Any, name: str) -> str:
    """A (1, 1) string output as text ("" when the server did not send it, e.g. an older repository)."""
    array = response.as_numpy(name)
    if array is None or array.size == 0:
        return ""
    value = array.reshape(-1)[0]
    return (bytes(value) if isinstance(value, (bytes, bytearray)) else str(value).encode()).decode()
