"""adinspect: industrial visual anomaly detection and localization (ADClick / ADClick-Seg)."""

__version__ = "0.1.0"
