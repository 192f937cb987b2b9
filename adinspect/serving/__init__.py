"""Serving on NVIDIA Triton: server launcher, model repository builder, perf tools (no torch)."""
