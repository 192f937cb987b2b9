"""The serving path run in-process: ONNX Runtime, numpy and opencv only (never torch)."""
