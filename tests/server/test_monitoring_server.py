"""Per-product metrics on a real tritonserver's metrics endpoint, checked against the client's results.

One instance of each inspect_<product> (python_instances=1), so one drift window sees every request and its
KS statistic can be recomputed exactly from the scores the client received.
"""

from __future__ import annotations

import json
import math
import urllib.request
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers import served

from adinspect.client import InspectionClient
from adinspect.repository.monitoring import (
    FAIL_FRACTION,
    FAILS,
    INSPECTIONS,
    KS_PVALUE,
    KS_STATISTIC,
    MONITORING_FILE,
    NONFINITE,
    RELATIVE_SCORE,
    WINDOW_SIZE,
    ks_pvalue,
    ks_statistic,
    product_id,
)

pytestmark = [pytest.mark.triton, pytest.mark.slow]


@pytest.fixture(scope="module")
def monitored_server(served_packages: list[Path], tmp_path_factory: pytest.TempPathFactory):
    from adinspect.repository.settings import RepositorySettings

    root = tmp_path_factory.mktemp("monitored")
    settings = RepositorySettings(python_instances=1)
    with served(served_packages, root, settings, "model_repository", "tritonserver.log", 300) as server:
        yield server


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of the endpoint: (sample name, labels) → value."""
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def by_product(samples: dict, name: str) -> dict[str, list[float]]:
    values: dict[str, list[float]] = defaultdict(list)
    for (sample, labels), value in samples.items():
        if sample == name:
            values[dict(labels)["product"]].append(value)
    return values


def test_repository_carries_ids_and_calibration(monitored_server, served_packages: list[Path]) -> None:
    entries = {}
    for product in ("widget", "gadget"):  # cpu flavour: each product's model has its own table
        path = monitored_server.repository / f"inspect_{product}" / "1" / MONITORING_FILE
        (entry,) = json.loads(path.read_text())["products"]
        entries[entry["product"]] = entry
    assert set(entries) == {"widget", "gadget"}
    for package in served_packages:
        entry = entries[package.name]
        manifest = json.loads((package / "package.json").read_text())
        calibration = json.loads((package / "calibration.json").read_text())
        assert entry["product_id"] == product_id(package.name)
        assert entry["threshold"] == manifest["threshold"]
        assert entry["calibration_scores"] == calibration["holdout_scores"]


def test_metrics_endpoint_counts_what_the_client_saw(
    monitored_server, served_packages: list[Path], synthetic_root: Path
) -> None:
    train = sorted((synthetic_root / "train" / "good").glob("*.png"))[:24]
    defects = sorted(p for p in (synthetic_root / "test").rglob("*.png") if p.parent.name != "good")[:4]
    sent = {"widget": train + defects, "gadget": train[:3] + defects[:3]}
    before = scrape(monitored_server.metrics_url)
    # every product's counters exist from the start, at 0; drift gauges appear with the first verdict
    assert by_product(before, INSPECTIONS.name) == {"widget": [0.0], "gadget": [0.0]}
    assert by_product(before, NONFINITE.name) == {"widget": [0.0], "gadget": [0.0]}
    assert not by_product(before, KS_STATISTIC.name)
    results = {}
    with InspectionClient(monitored_server.grpc_url, deadline_s=120) as client:
        for product, paths in sent.items():
            results[product] = [client.inspect(p, product) for p in paths]
    samples = scrape(monitored_server.metrics_url)

    for product, inspected in results.items():
        scores = np.array([r.score for r in inspected], np.float64)
        threshold = inspected[0].threshold
        fails = [r.verdict == "fail" for r in inspected]
        labels = frozenset({"product": product}.items())
        assert samples[(INSPECTIONS.name, labels)] == len(inspected)
        assert samples[(FAILS.name, labels)] == sum(fails)
        assert samples[(NONFINITE.name, labels)] == 0
        assert samples[(f"{RELATIVE_SCORE.name}_count", labels)] == len(inspected)
        assert samples[(f"{RELATIVE_SCORE.name}_sum", labels)] == pytest.approx(
            np.sum(scores / threshold), rel=1e-5
        )
        buckets = {
            float(dict(key)["le"]): value
            for (name, key), value in samples.items()
            if name == f"{RELATIVE_SCORE.name}_bucket" and dict(key)["product"] == product
        }
        assert buckets[1.0] == np.sum(scores / threshold <= 1.0)
        assert buckets[math.inf] == len(inspected)
        assert by_product(samples, WINDOW_SIZE.name)[product] == [len(inspected)]
        assert by_product(samples, FAIL_FRACTION.name)[product] == [pytest.approx(np.mean(fails))]

    # widget: 24 training images → enough passes for the KS test against the 4 held-out scores
    widget = results["widget"]
    passes = np.array([r.score for r in widget if r.verdict == "pass"], np.float64)
    assert passes.size >= 20
    calibration = json.loads((served_packages[0] / "calibration.json").read_text())["holdout_scores"]
    expected = ks_statistic(passes, np.asarray(calibration))
    assert by_product(samples, KS_STATISTIC.name)["widget"] == [pytest.approx(expected, abs=1e-9)]
    pvalue = ks_pvalue(expected, passes.size, len(calibration))
    assert by_product(samples, KS_PVALUE.name)["widget"] == [pytest.approx(pvalue, abs=1e-9)]
    gadget_ks = by_product(samples, KS_STATISTIC.name)["gadget"]
    assert len(gadget_ks) == 1 and math.isnan(gadget_ks[0])  # fewer than 20 passes: no verdict on drift
    assert "metrics not recorded" not in monitored_server.log_file.read_text()
