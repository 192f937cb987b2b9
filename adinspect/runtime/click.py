"""ADClick on ONNX Runtime for people labelling (DESIGN.md §8): numpy, SciPy, OpenCV, onnxruntime only.

`ClickRuntime.open(image)` runs backbone.onnx and residual.onnx once and keeps the residual and the
training-free anomaly map; every `ClickSession.probability(clicks, defect_type)` then runs only
click.onnx. Clicks arrive in the original image's pixels and are scaled per axis to the model input
(H_in x W_in, the package's `preprocess.shape`) exactly as `adinspect label --clicks` scales them
(`train.clicks.scale_clicks`), and they are fed one by one, each prediction becoming the next
previous mask, as `evaluate-clicks` and `label` do, so the same clicks give the same masks; when the
package says so (click_model.json "snap", "trace"), each prediction is snapped to the image
(`runtime.snap`) and the line between positive clicks traced (`runtime.trace`) there as here, and
every positive click is kept inside its mask (`runtime.coverage`) there as here. Predictions for
every click prefix are cached, so a new click (or an undo) costs one click.onnx run. A click model
trained with an image prior takes the preprocessed image and / or the backbone's features of it,
both computed once on opening.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adinspect.contracts import BACKBONE, CLICK, RESIDUAL
from adinspect.geometry import check_rgb, preprocess
from adinspect.package import ModelPackage, PackageError
from adinspect.runtime.clicks import (
    PRED_THRESHOLD,
    Click,
    check_clicks,
    click_maps,
    click_radius,
    scale_clicks,
)
from adinspect.runtime.coverage import cover_positive_clicks
from adinspect.runtime.postprocess import resize_map
from adinspect.runtime.sessions import make_session
from adinspect.runtime.snap import snap_rgb, snap_to_image
from adinspect.runtime.trace import line_strength, trace_clicks

CLICK_ONNX = "click.onnx"
CLICK_META = "click_model.json"
_CACHE_SIZE = 256  # click prefixes kept per opened image


class NoClickModel(PackageError):
    """The package has no trained ADClick (click.onnx)."""


@dataclass(frozen=True)
class MaskFinish:
    """What happens to each of ADClick's predictions before the coverage floor, as the package says."""

    snap: bool = False  # snap it to the image (`runtime.snap`)
    trace: bool = False  # then trace the line between positive clicks (`runtime.trace`)

    @property
    def needs_image(self) -> bool:
        return self.snap or self.trace


AS_PREDICTED = MaskFinish()  # neither snapped nor traced


class FinishOnImage:
    """One image's finishing step, shared by the labelling runtime and the torch path: the
    network's probability → snapped to the image → traced between positive clicks, as `finish`
    says, with the image's line strength computed once."""

    def __init__(self, finish: MaskFinish, rgb: np.ndarray | None) -> None:
        if finish.needs_image and rgb is None:
            raise ValueError(f"{finish} needs the image at the model input (rgb)")
        self.finish, self.rgb = finish, rgb
        self.strength = line_strength(rgb) if finish.trace and rgb is not None else None

    def __call__(self, prob: np.ndarray, clicks: Sequence[Click], radius: float) -> np.ndarray:
        if self.finish.snap and self.rgb is not None:
            prob = snap_to_image(prob, self.rgb, clicks)
        if self.strength is not None:
            prob = trace_clicks(prob, self.strength, clicks, radius)
        return prob


class ClickRuntime:
    """A package's backbone, residual and (when trained) click model on ONNX Runtime.

    Args:
        model_dir: a package written by `adinspect fit` (and `adinspect train-click` for clicks).
        threads: ONNX Runtime intra-op threads (default: all cores).
    """

    def __init__(self, model_dir: Path, threads: int | None = None) -> None:
        self.package = ModelPackage.load(Path(model_dir))
        self.package.require_bank()  # clicks work on residuals against one product's bank
        self.model_shape = self.package.preprocess.shape  # (H_in, W_in) of the model input
        self.size = self.package.preprocess.image_size  # its short side S (click discs scale with it)
        self.backbone = make_session(self.package.path("backbone.onnx"), threads)
        self.residual = make_session(self.package.path("residual.onnx"), threads)
        self.click = None
        self.defect_types: list[str] = []
        self.finish = AS_PREDICTED
        if self.package.has(CLICK_ONNX):
            self.click = make_session(self.package.path(CLICK_ONNX), threads)
            self.defect_types = _defect_types(self.package.path(CLICK_META))
            self.finish = mask_finish(self.package.path(CLICK_META))
            self.input_names = [i.name for i in self.click.get_inputs()]
            unknown = set(self.input_names) - set(CLICK)
            if unknown:
                raise PackageError(
                    f"{self.package.root / CLICK_ONNX}: unknown inputs {sorted(unknown)}; expected "
                    f"{list(CLICK[:4])} (and optionally {CLICK.image!r}, {CLICK.features!r}); re-run "
                    "`adinspect train-click`"
                )

    def type_index(self, defect_type: str) -> int:
        """Index of a defect type in click.onnx's language constants; unknown names raise ValueError."""
        if defect_type not in self.defect_types:
            raise ValueError(f"unknown defect type {defect_type!r}; known: {self.defect_types}")
        return self.defect_types.index(defect_type)

    def open(self, image: np.ndarray, name: str = "image") -> ClickSession:
        """uint8 RGB (H, W, 3) → a session holding its residual and anomaly map (computed once)."""
        check_rgb(image, name)
        x = preprocess(image, self.package.preprocess)[None]
        features, global_map = self.backbone.run(None, {BACKBONE.image: x})
        residual, amap = self.residual.run(
            [RESIDUAL.residual, RESIDUAL.anomaly_map],
            {RESIDUAL.features: features, RESIDUAL.global_map: global_map},
        )
        rgb = snap_rgb(image, self.model_shape) if self.finish.needs_image else None
        shape = (image.shape[0], image.shape[1])
        return ClickSession(self, x, residual, amap[0, 0], shape, rgb, features)


class ClickSession:
    """One opened image: its residual (1, d_f, h, w), anomaly map (H_in, W_in) and cached predictions."""

    def __init__(
        self,
        runtime: ClickRuntime,
        image: np.ndarray,
        residual: np.ndarray,
        amap: np.ndarray,
        shape: tuple,
        rgb: np.ndarray | None = None,
        features: np.ndarray | None = None,
    ) -> None:
        self.runtime = runtime
        self.image = image  # (1, 3, H_in, W_in) float32, fed when click.onnx takes the image too
        self.features = features  # (1, d_f, h, w) float32, fed when click.onnx takes the features
        self.finish_on_image = FinishOnImage(runtime.finish, rgb)
        self.residual = residual
        self.anomaly_map = amap
        self.shape: tuple[int, int] = shape
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()

    @property
    def size(self) -> int:
        """The model input's short side S."""
        return self.runtime.size

    @property
    def model_shape(self) -> tuple[int, int]:
        """The model input (H_in, W_in): what `probability` returns."""
        return self.runtime.model_shape

    def scaled(self, clicks: Sequence[Click]) -> list[Click]:
        """Original-pixel clicks → model-input clicks; a click outside the image raises ValueError."""
        check_clicks(clicks, self.shape)
        return scale_clicks(clicks, self.shape, self.model_shape)

    def probability(self, clicks: Sequence[Click], defect_type: str) -> np.ndarray:
        """ADClick's probability (H_in, W_in) float32 after the clicks (original pixels), in order.

        Raises:
            NoClickModel: the package has no click.onnx.
            ValueError: a click outside the image, no clicks, or an unknown defect type.
        """
        if self.runtime.click is None:
            raise NoClickModel(
                f"{self.runtime.package.root}: no click model; run `adinspect train-click` first"
            )
        if not clicks:
            raise ValueError("no clicks: give at least one")
        index = self.runtime.type_index(defect_type)
        scaled = self.scaled(clicks)
        start, prob = 0, np.zeros(self.model_shape, np.float32)
        for k in range(len(scaled), 0, -1):
            key = (index, tuple(scaled[:k]))
            if key in self._cache:
                start, prob = k, self._cache[key]
                self._cache.move_to_end(key)
                break
        for k in range(start + 1, len(scaled) + 1):
            prob = self._run(prob, scaled[:k], index)
            self._cache[(index, tuple(scaled[:k]))] = prob
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return prob

    def mask(self, prob: np.ndarray, full_size: bool = True) -> np.ndarray:
        """Binary mask of a probability map: at the original (H, W) size, or (H_in, W_in); bool."""
        if not full_size:
            return prob > PRED_THRESHOLD
        return resize_map(prob, *self.shape) > PRED_THRESHOLD

    def _run(self, prev: np.ndarray, clicks: list[Click], index: int) -> np.ndarray:
        radius = click_radius(self.size)
        maps = click_maps(clicks, self.model_shape, radius)
        feeds = {
            CLICK.residual: self.residual,
            CLICK.prev_mask: prev[None, None].astype(np.float32),
            CLICK.clicks: maps[None],
            CLICK.defect_type: np.array([index], np.int64),
            CLICK.image: self.image,
            CLICK.features: self.features,
        }
        session = self.runtime.click
        if session is None:  # checked by `probability`; keeps the type checker honest
            raise NoClickModel(f"{self.runtime.package.root}: no click model")
        (out,) = session.run([CLICK.mask], {n: feeds[n] for n in self.runtime.input_names})
        prob = self.finish_on_image(out[0, 0], clicks, radius)
        return cover_positive_clicks(prob, clicks, radius)[0]


def mask_finish(meta_path: Path) -> MaskFinish:
    """How the click model's masks are finished: click_model.json "snap" and "trace", each
    {"enabled": bool, ...} (written by `adinspect choose-snap`; absent in older packages: off)."""
    try:
        meta = json.loads(Path(meta_path).read_text())
        records = {key: meta.get(key) or {} for key in ("snap", "trace")}
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise PackageError(f"{meta_path}: unreadable ({exc!r}); re-run `adinspect train-click`") from exc
    enabled: dict[str, bool] = {}
    for key, record in records.items():
        value = record.get("enabled", False) if isinstance(record, dict) else None
        if not isinstance(value, bool):
            raise PackageError(
                f"{meta_path}: {key} {record!r} is not {{'enabled': true|false, ...}}; "
                "re-run `adinspect choose-snap`"
            )
        enabled[key] = value
    return MaskFinish(enabled["snap"], enabled["trace"])


def _defect_types(meta_path: Path) -> list[str]:
    """The defect-type order of click.onnx's language constants, from click_model.json."""
    try:
        types = json.loads(meta_path.read_text())["defect_types"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise PackageError(f"{meta_path}: no defect_types ({exc!r}); re-run `adinspect train-click`") from exc
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        raise PackageError(f"{meta_path}: defect_types {types!r} is not a list of names")
    return list(types)
