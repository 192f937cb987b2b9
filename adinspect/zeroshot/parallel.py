"""Coarse-grained parallelism for zero-shot scoring: a few threads, each running torch single-threaded.

Zero-shot scoring is many small tensor ops (one backbone batch, one cache-sized similarity block).
Split across OpenMP threads, each op pays a synchronisation, and on a shared machine a thread
that loses its core makes the others spin: measured on 2 loaded cores, the 83-image bottle
features took 20 s of CPU with 2 intra-op threads against 3.7 s with one. So work items (image
batches, image rows) go to `workers` Python threads instead, each with one intra-op thread; torch
releases the GIL inside its ops. The calling thread's own setting is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

from adinspect.zeroshot.config import ZeroShotConfig

T = TypeVar("T")
R = TypeVar("R")


def worker_count(config: ZeroShotConfig) -> int:
    """The configured number of workers, or torch's intra-op thread count (the cores) when unset."""
    return config.workers or torch.get_num_threads()


def map_in_threads(fn: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    """[fn(x) for x in items], results in order; items are handed out one at a time as threads free up."""
    if workers <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        return list(pool.map(fn, items))
