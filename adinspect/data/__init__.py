"""Datasets: readers for MVTec AD, KolektorSDD2 and plain folders, and a synthetic generator.

``make_synthetic_dataset`` is loaded lazily so ``python -m adinspect.data.synthetic`` runs cleanly.
"""

from __future__ import annotations

from typing import Any

from adinspect.data.datasets import (
    Dataset,
    DatasetError,
    Sample,
    detect_layout,
    list_images,
    load_folder,
    load_ksdd2,
    load_mvtec,
    open_dataset,
)

__all__ = [
    "Dataset",
    "DatasetError",
    "Sample",
    "detect_layout",
    "list_images",
    "load_folder",
    "load_ksdd2",
    "load_mvtec",
    "make_synthetic_dataset",
    "open_dataset",
]


def __getattr__(name: str) -> Any:
    if name == "make_synthetic_dataset":
        from adinspect.data.synthetic import make_synthetic_dataset

        return make_synthetic_dataset
    raise AttributeError(f"module 'adinspect.data' has no attribute {name!r}")
