"""Worker threads: results in input order, torch single-threaded inside them, the caller untouched."""

from __future__ import annotations

import torch

from adinspect.zeroshot import ZeroShotConfig
from adinspect.zeroshot.parallel import map_in_threads, worker_count


def test_results_in_order_and_one_intra_op_thread_per_worker():
    caller = torch.get_num_threads()
    out = map_in_threads(lambda x: (x * x, torch.get_num_threads()), range(7), workers=2)
    assert [value for value, _ in out] == [x * x for x in range(7)]
    assert {threads for _, threads in out} == {1}
    assert torch.get_num_threads() == caller


def test_one_worker_runs_in_the_calling_thread():
    caller = torch.get_num_threads()
    assert map_in_threads(lambda x: torch.get_num_threads(), [0, 1], workers=1) == [caller, caller]


def test_worker_count_defaults_to_torch_threads():
    assert worker_count(ZeroShotConfig()) == torch.get_num_threads()
    assert worker_count(ZeroShotConfig(workers=3)) == 3
