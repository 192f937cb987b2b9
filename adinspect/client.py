"""Line-side gRPC client of the served `inspect_<product>` ensembles (tritonclient.grpc; no torch).

    client = InspectionClient("127.0.0.1:8001")
    result = client.inspect("part_0001.png", product="bottle")       # InspectionResult
    result, heat = client.inspect_with_map(frame, product="bottle")  # raw uint8 HWC in, map out
    results = client.inspect_batch(paths, product="bottle")          # concurrent requests

Files and encoded bytes are sent as `image_bytes` (what a camera PC has), numpy arrays as
`image_raw`. One image per request; batches are sent as concurrent requests, which Triton's
dynamic batchers group. UNAVAILABLE answers are retried with back-off; every call has a deadline.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adinspect.results import InspectionResult, Region
from adinspect.serving.contracts import INSPECT_IN, INSPECT_OUT, MAP_FORMATS, ensemble_model

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


def _grpc():
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


class InspectionClient:
    """gRPC client for the `inspect_<product>` ensembles of one Triton server.

    Args:
        url: "host:port" of Triton's gRPC endpoint.
        timeout_s: deadline of each request (DEADLINE_EXCEEDED after it).
        retries: extra attempts after an UNAVAILABLE answer (server starting, restarting, overloaded).
        backoff_s: first wait between attempts; doubles each time.
        max_in_flight: concurrent requests `inspect_batch` keeps open.
    """

    def __init__(
        self,
        url: str = "127.0.0.1:8001",
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        max_in_flight: int = 8,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_in_flight = max_in_flight
        self._grpc = _grpc()
        self._client = self._grpc.InferenceServerClient(url=url)
        self._info: dict[str, ProductInfo] = {}
        self._lock = threading.Lock()

    # -------------------------------------------------------------------------------- health
    def is_live(self) -> bool:
        return self._call(lambda: self._client.is_server_live(client_timeout=self.timeout_s))

    def is_ready(self) -> bool:
        return self._call(lambda: self._client.is_server_ready(client_timeout=self.timeout_s))

    def is_product_ready(self, product: str) -> bool:
        """True when the product's ensemble (and so every step of it) is loaded and ready."""
        return self._call(
            lambda: self._client.is_model_ready(ensemble_model(product), client_timeout=self.timeout_s)
        )

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
        index = self._call(
            lambda: self._client.get_model_repository_index(as_json=True, client_timeout=self.timeout_s)
        )
        names = [m["name"] for m in index.get("models", []) if m.get("state", "READY") == "READY"]
        return sorted(n.removeprefix("inspect_") for n in names if n.startswith("inspect_"))

    def product_info(self, product: str) -> ProductInfo:
        """Threshold and labels of a served product, read once from its ensemble's config."""
        with self._lock:
            if product in self._info:
                return self._info[product]
        model = ensemble_model(product)
        config = self._call(
            lambda: self._client.get_model_config(model, as_json=True, client_timeout=self.timeout_s)
        )
        params = {k: v["string_value"] for k, v in config["config"].get("parameters", {}).items()}
        info = ProductInfo(
            product=params.get("product", product),
            threshold=float(params["threshold"]),
            random_weights=json.loads(params.get("random_weights", "false")),
            adinspect_version=params.get("adinspect_version", "?"),
            defect_types=tuple(json.loads(params.get("defect_types", "[]"))),
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
        response = self._call(
            lambda: self._client.infer(
                ensemble_model(product), inputs, outputs=outputs, client_timeout=self.timeout_s
            ),
            what=f"{label} on {product!r}",
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
        futures: list[Future] = []
        gate = threading.Semaphore(self.max_in_flight)
        for image, name in zip(images, labels, strict=True):
            gate.acquire()
            future = self.inspect_async(image, product, name=name, map_format=map_format)
            future.add_done_callback(lambda _f: gate.release())
            futures.append(future)
        return [future.result()[0] for future in futures]

    def inspect_async(
        self, image: ImageLike, product: str, name: str | None = None, map_format: str = "none"
    ) -> Future:
        """Send without waiting; the Future resolves to (InspectionResult, map or None).

        UNAVAILABLE answers are retried from the callback thread with the same back-off.
        """
        inputs, outputs, label = self._request(image, product, name, map_format)
        future: Future = Future()

        def attempt(number: int) -> None:
            self._client.async_infer(
                ensemble_model(product),
                inputs,
                callback=lambda result, error: done(number, result, error),
                outputs=outputs,
                client_timeout=self.timeout_s,
            )

        def done(number: int, result: Any, error: Exception | None) -> None:
            if error is None:
                try:
                    future.set_result(self._parse(result, product, label, map_format))
                except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
                    future.set_exception(exc)
            elif _status(error) == "UNAVAILABLE" and number < self.retries:
                time.sleep(self.backoff_s * 2**number)
                attempt(number + 1)
            else:
                future.set_exception(InspectionError(f"{label} on {product!r}: {error}", _status(error)))

        attempt(0)
        return future

    def close(self) -> None:
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
            tensor = grpc.InferInput(INSPECT_IN.image_raw, [1, *image.shape], "UINT8")
            tensor.set_data_from_numpy(np.ascontiguousarray(image)[None])
        else:
            raise TypeError(
                f"image must be a path, encoded bytes or a uint8 array, got {type(image).__name__}"
            )
        inputs = [tensor]
        wanted = [
            INSPECT_OUT.score,
            INSPECT_OUT.threshold,
            INSPECT_OUT.verdict,
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
        result = InspectionResult(
            image=label,
            product=product,
            score=float(response.as_numpy(INSPECT_OUT.score).reshape(-1)[0]),
            threshold=float(response.as_numpy(INSPECT_OUT.threshold).reshape(-1)[0]),
            verdict=response.as_numpy(INSPECT_OUT.verdict).reshape(-1)[0].decode(),
            regions=[Region.model_validate(r) for r in regions],
            defect_type=_defect_type(response),
            random_weights=info.random_weights,
        )
        extra: np.ndarray | bytes | None = None
        if map_format == "array":
            extra = response.as_numpy(INSPECT_OUT.anomaly_map)[0]
        elif map_format == "png":
            extra = bytes(response.as_numpy(INSPECT_OUT.anomaly_map_png).reshape(-1)[0])
        return result, extra

    def _call(self, fn: Callable[[], Any], what: str = "request") -> Any:
        """Run a tritonclient call; retry UNAVAILABLE with back-off; raise InspectionError otherwise."""
        exc_type = self._grpc.InferenceServerException
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except exc_type as exc:
                code = _status(exc)
                if code == "UNAVAILABLE" and attempt < self.retries:
                    time.sleep(self.backoff_s * 2**attempt)
                    continue
                raise InspectionError(f"{what} at {self.url}: {exc.message() or exc}", code) from exc
        raise AssertionError("unreachable")


def _defect_type(response: Any) -> str | None:
    """The ensemble's defect_type output (b"" when the product has no seg model) → name or None."""
    value = response.as_numpy(INSPECT_OUT.defect_type).reshape(-1)[0]
    return bytes(value).decode() or None
