"""deploy/monitoring/: the alert rules and the dashboard parse and query only metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from adinspect.repository.monitoring import COUNTERS, GAUGES, RELATIVE_SCORE

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
EXPORTED = {spec.name for spec in (*COUNTERS, *GAUGES)} | {
    f"{RELATIVE_SCORE.name}_{suffix}" for suffix in ("bucket", "count", "sum")
}
# Triton 2.51's own series that the dashboard uses
TRITON = {"nv_inference_request_duration_us", "nv_inference_request_success"}


def _metrics(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:adinspect|nv)_[a-z_]+)\b", expr))


def test_alert_rules_use_exported_metrics() -> None:
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    assert {"AdinspectScoreDrift", "AdinspectFailRateHigh", "AdinspectNonFiniteScores"} <= set(alerts)
    for name, rule in alerts.items():
        used = _metrics(rule["expr"])
        assert used and used <= EXPORTED, f"{name} queries {sorted(used - EXPORTED)}"
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert "{{ $labels.product }}" in rule["annotations"]["summary"]


def test_dashboard_uses_exported_metrics() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = set().union(*map(_metrics, exprs))
    assert used <= EXPORTED | TRITON, sorted(used - EXPORTED - TRITON)
    assert {spec.name for spec in GAUGES if "ks" in spec.name} <= used
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_prometheus_config_loads_the_rules() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yaml"]
    assert config["scrape_configs"][0]["metrics_path"] == "/metrics"
