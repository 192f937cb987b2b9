"""Backbones, feature aggregation and the global descriptor's input (torch)."""
