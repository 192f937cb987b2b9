"""The drift statistics and metric bookkeeping of repository/monitoring.py, without Triton."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from adinspect.repository.monitoring import (
    FAILS,
    INSPECTIONS,
    KS_STATISTIC,
    NONFINITE,
    RELATIVE_SCORE,
    RELATIVE_SCORE_BUCKETS,
    WINDOW_SIZE,
    MetricsExporter,
    Monitor,
    MonitoringTable,
    ProductCalibration,
    ProductMonitor,
    ks_pvalue,
    ks_statistic,
    product_id,
)

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(("n", "m", "shift"), [(200, 21, 0.0), (50, 21, 1.0), (30, 300, 0.3), (5, 7, 2.0)])
def test_ks_matches_scipy(n: int, m: int, shift: float) -> None:
    a, b = RNG.normal(shift, 1.0, n), RNG.normal(0.0, 1.0, m)
    reference = stats.ks_2samp(a, b, method="asymp")
    assert ks_statistic(a, b) == pytest.approx(reference.statistic, abs=1e-12)
    # scipy's asymptotic p-value omits the small-sample correction: close, not equal
    assert ks_pvalue(ks_statistic(a, b), n, m) == pytest.approx(reference.pvalue, abs=0.06)


def test_ks_with_ties_matches_scipy() -> None:
    a, b = np.array([1.0, 1.0, 2.0, 3.0]), np.array([1.0, 2.0, 2.0, 2.0, 4.0])
    assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


def test_product_id_is_stable_int32() -> None:
    assert product_id("bottle") == product_id("bottle") != product_id("bottles")
    assert 0 <= product_id("bottle") < 2**31
    assert np.int32(product_id("bottle")) == product_id("bottle")


def _calibration(scores, threshold: float = 1.0, product: str = "bottle") -> ProductCalibration:
    return ProductCalibration(
        product=product,
        product_id=product_id(product),
        threshold=threshold,
        calibration_scores=[float(s) for s in scores],
    )


def test_window_statistics() -> None:
    calibration_scores = RNG.uniform(0.0, 0.8, 40)
    monitor = ProductMonitor(_calibration(calibration_scores), window=50, min_samples=20)
    assert math.isnan(monitor.snapshot().fail_fraction)
    for s in RNG.uniform(0.0, 0.8, 10):
        monitor.observe(float(s), failed=False)
    early = monitor.snapshot()
    assert early.window_size == 10 and early.fail_fraction == 0.0
    assert math.isnan(early.ks_statistic) and math.isnan(early.ks_pvalue)  # fewer than min_samples passes

    live = list(RNG.uniform(0.0, 0.8, 45)) + [1.5] * 4 + [math.nan]  # 45 passes, 5 fails
    for s in live:
        monitor.observe(s, failed=not s <= 1.0)
    snap = monitor.snapshot()
    assert snap.window_size == 50  # the 10 early scores slid out
    assert snap.fail_fraction == pytest.approx(5 / 50)
    expected = stats.ks_2samp(live[:45], calibration_scores)
    assert snap.ks_statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert snap.ks_pvalue > 0.05  # same distribution


def test_drift_is_detected_among_passes() -> None:
    """Scores creeping towards the threshold while still passing: the KS statistic sees it."""
    monitor = ProductMonitor(_calibration(RNG.uniform(0.0, 0.5, 30)), window=100, min_samples=20)
    for s in RNG.uniform(0.4, 0.95, 100):
        monitor.observe(float(s), failed=False)
    snap = monitor.snapshot()
    assert snap.fail_fraction == 0.0
    assert snap.ks_statistic > 0.5 and snap.ks_pvalue < 1e-4


def test_monitor_observations() -> None:
    table = MonitoringTable(products=[_calibration([0.1, 0.2, 0.3], threshold=2.0)])
    monitor = Monitor(table)
    pid = product_id("bottle")
    assert monitor.observe(pid + 1, 1.0, "pass") is None
    ok = monitor.observe(pid, 1.0, "pass")
    assert ok is not None and ok.product == "bottle" and not ok.failed and ok.relative_score == 0.5
    nan = monitor.observe(pid, math.nan, "pass")  # a broken score counts as a fail whatever the verdict
    assert nan is not None and nan.failed and nan.nonfinite and nan.relative_score is None
    fail = monitor.observe(pid, 3.0, "fail")
    assert fail is not None and fail.failed and not fail.nonfinite and fail.relative_score == 1.5
    assert monitor.snapshots()["bottle"].fail_fraction == pytest.approx(2 / 3)


class _Recorder:
    """Stands in for pb_utils.MetricFamily: keeps what was created and written (Triton-free test)."""

    def __init__(self, spec) -> None:
        self.spec = spec
        self.metrics: dict[tuple, _Series] = {}

    def Metric(self, labels, buckets=None):  # noqa: N802 (pb_utils' name)
        assert isinstance(buckets, list) == (self.spec.kind == "HISTOGRAM")  # Triton wants a list
        series = _Series(labels, buckets)
        self.metrics[tuple(sorted(labels.items()))] = series
        return series


class _Series:
    def __init__(self, labels, buckets) -> None:
        self.labels, self.buckets, self.value, self.observed = labels, buckets, 0.0, []

    def increment(self, value: float) -> None:
        self.value += value

    def set(self, value: float) -> None:
        self.value = value

    def observe(self, value: float) -> None:
        self.observed.append(value)


def test_exporter_counts_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "monitoring.json"
    MonitoringTable(products=[_calibration(np.linspace(0, 1, 21), threshold=2.0)]).write(path)
    families: dict[str, _Recorder] = {}

    def make_family(spec):
        families[spec.name] = _Recorder(spec)
        return families[spec.name]

    exporter = MetricsExporter(path, make_family, "postprocess_0_0")
    assert families[INSPECTIONS.name].metrics[(("product", "bottle"),)].value == 0  # exists before use
    for score, verdict in [(1.0, "pass"), (3.0, "fail"), (math.inf, "fail")]:
        assert exporter.record(product_id("bottle"), score, verdict) == "bottle"
    exporter.publish(["bottle"])
    label = (("product", "bottle"),)
    assert families[INSPECTIONS.name].metrics[label].value == 3
    assert families[FAILS.name].metrics[label].value == 2
    assert families[NONFINITE.name].metrics[label].value == 1
    histogram = families[RELATIVE_SCORE.name].metrics[label]
    assert histogram.observed == [0.5, 1.5] and histogram.buckets == list(RELATIVE_SCORE_BUCKETS)
    gauge_label = (("instance", "postprocess_0_0"), ("product", "bottle"))
    assert families[WINDOW_SIZE.name].metrics[gauge_label].value == 3
    assert math.isnan(families[KS_STATISTIC.name].metrics[gauge_label].value)

    # a product added to the repository later: unknown until the table file changes, then counted
    assert exporter.record(product_id("cable"), 1.0, "pass") is None
    table = json.loads(path.read_text())
    table["products"].append(_calibration([0.5], product="cable").model_dump())
    path.write_text(json.dumps(table))
    assert exporter.record(product_id("cable"), 1.0, "pass") == "cable"
    assert families[INSPECTIONS.name].metrics[(("product", "cable"),)].value == 1


def test_exporter_picks_up_a_refitted_product(tmp_path: Path) -> None:
    path = tmp_path / "monitoring.json"
    MonitoringTable(products=[_calibration([0.1, 0.2], threshold=2.0)]).write(path)
    exporter = MetricsExporter(path, _Recorder, "postprocess_0_0")
    exporter.record(product_id("bottle"), 1.0, "pass")
    assert exporter.monitor.products[product_id("bottle")].calibration.threshold == 2.0
    MonitoringTable(products=[_calibration([0.1, 0.2], threshold=4.0)]).write(path)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a distinct mtime on any filesystem
    exporter.checked_at = 0.0  # as if TABLE_CHECK_S had passed
    exporter.record(product_id("bottle"), 1.0, "pass")
    monitor = exporter.monitor.products[product_id("bottle")]
    assert monitor.calibration.threshold == 4.0 and len(monitor.scores) == 1  # the window started afresh
