"""Per-product inspection metrics and a drift signal, computed from the served scores.

The model that answers (`inspect_<product>` in the cpu flavour, `postprocess` in the gpu one)
feeds every verdict to a `Monitor` and exports what it reports as
Prometheus metrics on Triton's own metrics endpoint (:8002/metrics), next to Triton's `nv_*`:

    adinspect_inspections_total{product}        counter: images inspected
    adinspect_fails_total{product}               counter: verdicts `fail` (non-finite scores included)
    adinspect_nonfinite_scores_total{product}    counter: NaN/inf scores (a broken model, never a pass)
    adinspect_relative_score{product}            histogram of score / threshold (1.0 = the threshold)
    adinspect_drift_window_size{product,instance}      scores in the sliding window
    adinspect_drift_fail_fraction{product,instance}    fraction of the window that failed
    adinspect_drift_ks_statistic{product,instance}     two-sample KS statistic: window passes vs
                                                       the package's calibration scores
    adinspect_drift_ks_pvalue{product,instance}        its asymptotic p-value

The drift gauges are NaN until the window holds `min_samples` passes. Each model instance
(a separate stub process) keeps its own window over the requests Triton gives it, hence the
`instance` label; counters and the histogram are summed by Triton across instances.

Which product a request belongs to: `postprocess` is shared by all products, so the residual
model carries a baked constant `product_id` (`product_id(name)`, an int32 that survives TensorRT),
and the builder writes `MONITORING_FILE` beside the answering model's model.py with its products'
ids, thresholds and calibration scores (every product for postprocess, one for inspect_<product>).
Numpy only: no torch, no Triton here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from adinspect.contracts import INSPECT_OUT
from adinspect.package import ModelPackage

MONITORING_FILE = "monitoring.json"
TABLE_CHECK_S = 5.0
RELATIVE_SCORE_BUCKETS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 4.0, 8.0)


class MetricSpec(BaseModel):
    """One exported metric family: Triton's kind ("COUNTER", "GAUGE", "HISTOGRAM") and its help."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: str
    help: str


INSPECTIONS = MetricSpec(name="adinspect_inspections_total", kind="COUNTER", help="Images inspected.")
FAILS = MetricSpec(name="adinspect_fails_total", kind="COUNTER", help="Verdicts 'fail'.")
NONFINITE = MetricSpec(
    name="adinspect_nonfinite_scores_total", kind="COUNTER", help="NaN/inf scores (verdict fail)."
)
RELATIVE_SCORE = MetricSpec(
    name="adinspect_relative_score", kind="HISTOGRAM", help="Image score / the product's threshold."
)
WINDOW_SIZE = MetricSpec(
    name="adinspect_drift_window_size", kind="GAUGE", help="Recent scores in the drift window."
)
FAIL_FRACTION = MetricSpec(
    name="adinspect_drift_fail_fraction", kind="GAUGE", help="Fraction of the drift window that failed."
)
KS_STATISTIC = MetricSpec(
    name="adinspect_drift_ks_statistic",
    kind="GAUGE",
    help="Two-sample KS statistic, recent passing scores vs the package's calibration scores.",
)
KS_PVALUE = MetricSpec(
    name="adinspect_drift_ks_pvalue", kind="GAUGE", help="Asymptotic p-value of the KS statistic."
)
COUNTERS = (INSPECTIONS, FAILS, NONFINITE)
GAUGES = (WINDOW_SIZE, FAIL_FRACTION, KS_STATISTIC, KS_PVALUE)


def product_id(product: str) -> int:
    """A stable int32 id for a product name (the first 31 bits of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(product.encode()).digest()[:4], "big") & 0x7FFFFFFF


class ProductCalibration(BaseModel):
    """What the monitor knows of one served product."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    product: str
    product_id: int
    threshold: float
    calibration_scores: list[float] = Field(description="held-out good scores on the served score's scale")


class MonitoringTable(BaseModel):
    """Contents of MONITORING_FILE, written by `adinspect repo build`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    products: list[ProductCalibration]
    window: int = Field(default=200, ge=10, description="recent scores per product in the drift window")
    min_samples: int = Field(default=20, ge=2, description="passes needed before KS is reported")

    def write(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> MonitoringTable:
        return cls.model_validate_json(Path(path).read_text())


def served_calibration(package: ModelPackage, seg_json: Path | None, threshold: float) -> ProductCalibration:
    """The calibration scores behind the served verdict: calibration.json, or the seg model's own.

    Args:
        seg_json: the package's seg_model.json when seg_<product> decides the verdict, else None.
        threshold: the served threshold (the seg model's with seg).
    """
    source = seg_json if seg_json is not None else package.path("calibration.json")
    record = json.loads(Path(source).read_text())
    scores = (record["calibration"] if seg_json is not None else record)["holdout_scores"]
    return ProductCalibration(
        product=package.product,
        product_id=product_id(package.product),
        threshold=threshold,
        calibration_scores=[float(s) for s in scores],
    )


# ------------------------------------------------------------------------------------ statistics


def ks_statistic(sample: np.ndarray, reference: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: sup |F_sample - F_reference| (both 1-D, non-empty)."""
    a, b = np.sort(sample), np.sort(reference)
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def ks_pvalue(statistic: float, n: int, m: int) -> float:
    """Asymptotic two-sided p-value of a two-sample KS statistic (Kolmogorov distribution,
    with Stephens' small-sample correction as in Numerical Recipes)."""
    effective = math.sqrt(n * m / (n + m))
    lam = (effective + 0.12 + 0.11 / effective) * statistic
    if lam < 1e-3:
        return 1.0
    total = sum((-1) ** (k - 1) * math.exp(-2.0 * k * k * lam * lam) for k in range(1, 101))
    return float(min(1.0, max(0.0, 2.0 * total)))


@dataclass(frozen=True)
class DriftSnapshot:
    """One product's sliding-window state, as exported in the drift gauges."""

    window_size: int
    fail_fraction: float
    ks_statistic: float
    ks_pvalue: float

    def gauges(self) -> dict[str, float]:
        return {
            WINDOW_SIZE.name: float(self.window_size),
            FAIL_FRACTION.name: self.fail_fraction,
            KS_STATISTIC.name: self.ks_statistic,
            KS_PVALUE.name: self.ks_pvalue,
        }


class ProductMonitor:
    """Sliding window of one product's recent verdicts against its calibration scores."""

    def __init__(self, calibration: ProductCalibration, window: int = 200, min_samples: int = 20) -> None:
        if not calibration.calibration_scores:
            raise ValueError(f"product {calibration.product!r}: no calibration scores to compare with")
        self.calibration = calibration
        self.reference = np.asarray(calibration.calibration_scores, np.float64)
        self.min_samples = min_samples
        # recent served scores; NaN stands for a fail (its score plays no part in the KS test)
        self.scores: deque[float] = deque(maxlen=window)

    def observe(self, score: float, failed: bool) -> None:
        """Add one served score and its verdict (a non-finite score is always a fail)."""
        self.scores.append(math.nan if failed or not math.isfinite(score) else score)

    def snapshot(self) -> DriftSnapshot:
        window = np.asarray(self.scores, np.float64)
        passes = window[np.isfinite(window)]
        fail_fraction = 1.0 - passes.size / window.size if window.size else math.nan
        if passes.size < self.min_samples:
            return DriftSnapshot(int(window.size), fail_fraction, math.nan, math.nan)
        statistic = ks_statistic(passes, self.reference)
        pvalue = ks_pvalue(statistic, int(passes.size), int(self.reference.size))
        return DriftSnapshot(int(window.size), fail_fraction, statistic, pvalue)


@dataclass(frozen=True)
class Observation:
    """What one request adds to the metrics of its product."""

    product: str
    failed: bool
    nonfinite: bool
    relative_score: float | None  # None for a non-finite score


class Monitor:
    """All products of one repository, keyed by the `product_id` that residual_<product> sends."""

    def __init__(self, table: MonitoringTable) -> None:
        self.products = {
            entry.product_id: ProductMonitor(entry, table.window, table.min_samples)
            for entry in table.products
        }

    def observe(self, pid: int, score: float, verdict: str) -> Observation | None:
        """Record one served score and verdict; None for a product id the table does not know."""
        monitor = self.products.get(pid)
        if monitor is None:
            return None
        finite = math.isfinite(score)
        failed = verdict != "pass" or not finite
        monitor.observe(score, failed)
        threshold = monitor.calibration.threshold
        relative = score / threshold if finite and threshold > 0 else None
        return Observation(monitor.calibration.product, failed, not finite, relative)

    def snapshots(self, products: Sequence[str] | None = None) -> dict[str, DriftSnapshot]:
        """Drift state per product name (only `products` when given)."""
        return {
            m.calibration.product: m.snapshot()
            for m in self.products.values()
            if products is None or m.calibration.product in products
        }


# ------------------------------------------------------------------------------------ export


class MetricsExporter:
    """Feeds a Monitor and writes its figures into metric families of the serving process.

    Args:
        table_path: MONITORING_FILE; re-read when it changes (checked every TABLE_CHECK_S, and
            whenever a request names an unknown product): a product added or refitted while
            serving is counted with its new calibration; the drift windows then start afresh.
        make_family: MetricSpec → a family with `Metric(labels=..., buckets=...)` whose metrics
            have `increment`, `set` or `observe` (Triton's `pb_utils.MetricFamily` in postprocess;
            kept as a parameter so adinspect never imports Triton's backend utilities).
        instance: this model instance's name, the `instance` label of the drift gauges.
    """

    def __init__(self, table_path: Path, make_family, instance: str) -> None:
        self.table_path = Path(table_path)
        self.instance = instance
        self.families = {spec.name: make_family(spec) for spec in (*COUNTERS, RELATIVE_SCORE, *GAUGES)}
        self.metrics: dict[tuple[str, str], Any] = {}
        self.checked_at = time.monotonic()
        self._load()

    def _load(self) -> None:
        mtime = self.table_path.stat().st_mtime_ns
        self.monitor = Monitor(MonitoringTable.read(self.table_path))
        self.loaded_mtime = mtime
        for monitor in self.monitor.products.values():  # every product's series exists from the start, at 0
            for spec in (*COUNTERS, RELATIVE_SCORE):
                self._metric(spec.name, monitor.calibration.product)

    def _metric(self, name: str, product: str):
        key = (name, product)
        if key not in self.metrics:
            family = self.families[name]
            if name == RELATIVE_SCORE.name:
                self.metrics[key] = family.Metric(
                    labels={"product": product}, buckets=list(RELATIVE_SCORE_BUCKETS)
                )
            elif name in {spec.name for spec in GAUGES}:
                self.metrics[key] = family.Metric(labels={"product": product, "instance": self.instance})
            else:
                self.metrics[key] = family.Metric(labels={"product": product})
        return self.metrics[key]

    def record(self, pid: int, score: float, verdict: str) -> str | None:
        """Count one served verdict; the product's name, or None for an unknown product id."""
        now = time.monotonic()
        if now - self.checked_at > TABLE_CHECK_S or pid not in self.monitor.products:
            self.checked_at = now
            with contextlib.suppress(OSError, ValueError):  # mid-rewrite: keep the table we have
                if self.table_path.stat().st_mtime_ns != self.loaded_mtime:
                    self._load()
        observation = self.monitor.observe(pid, score, verdict)
        if observation is None:
            return None
        product = observation.product
        self._metric(INSPECTIONS.name, product).increment(1)
        if observation.failed:
            self._metric(FAILS.name, product).increment(1)
        if observation.nonfinite:
            self._metric(NONFINITE.name, product).increment(1)
        if observation.relative_score is not None:
            self._metric(RELATIVE_SCORE.name, product).observe(observation.relative_score)
        return product

    def publish(self, products: Sequence[str]) -> None:
        """Set the drift gauges of `products` (those a batch touched) from their windows."""
        for product, snapshot in self.monitor.snapshots(products).items():
            for name, value in snapshot.gauges().items():
                self._metric(name, product).set(value)

    def record_served(
        self,
        served: Sequence[tuple[np.ndarray | None, Mapping[str, np.ndarray]]],
        log_error: Callable[[str], Any],
    ) -> None:
        """Count a batch's answers — (product id tensor or None, the inspect outputs) each — and set
        the drift gauges of the products it touched. Failures are logged through `log_error`, never
        raised: metrics must not cost a part its inspection."""
        touched: set[str] = set()
        for pid, outputs in served:
            if pid is None:
                continue
            try:
                score = float(outputs[INSPECT_OUT.score].reshape(-1)[0])
                verdict = bytes(outputs[INSPECT_OUT.verdict].reshape(-1)[0]).decode()
                product = self.record(int(pid.reshape(-1)[0]), score, verdict)
            except Exception as exc:
                log_error(f"metrics not recorded: {exc!r}")
                continue
            if product:
                touched.add(product)
        if touched:
            try:
                self.publish(sorted(touched))
            except Exception as exc:
                log_error(f"drift gauges not set: {exc!r}")


def open_exporter(
    table_path: Path, make_family, instance: str, log_error: Callable[[str], Any]
) -> MetricsExporter | None:
    """A served model's exporter, or None (logged) when it has no table or the table is broken:
    without metrics the line still gets its verdicts."""
    if not Path(table_path).is_file():
        return None
    try:
        return MetricsExporter(Path(table_path), make_family, instance)
    except Exception as exc:
        log_error(f"metrics disabled: {exc!r}")
        return None
