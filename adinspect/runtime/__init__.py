"""The serving path run in-process: ONNX Runtime, numpy and opencv only (never torch)."""

from adinspect.runtime.inspector import Inspection, Inspector

__all__ = ["Inspection", "Inspector"]
