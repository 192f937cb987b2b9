"""The bomb phase of `adinspect probe`: decode bombs sent to a served product, what each got back, how
fast, and what they left in the server's memory.

Every bomb goes through a raw gRPC client, once, as a hostile client would send it (encoded ones as
`image_bytes`, the raw one as a 48 MB `image_raw` tensor). Measured: each answer's gRPC status and
latency; the server's RSS (its process group: tritonserver and the Python stubs) before the bombs,
after each kind and after all of them; its shared-memory regions' size, likewise (they grow to fit
the largest encoded request, about 1 MiB per instance here, never to fit a raw tensor Triton
refused); a good image's score before and after. Refusing in-process (`decode_image` on the same
bytes) is timed too: the refusal itself, without the network and Triton's queue.
"""

from __future__ import annotations

import time
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adinspect.benchmarks.bombs import Bomb, bombs
from adinspect.benchmarks.load import group_memory, process_group_pids
from adinspect.contracts import INSPECT_IN, ensemble_model
from adinspect.imageio import ImageReadError, decode_image


def shm_bytes(pgid: int | None) -> int | None:
    """Bytes of the /dev/shm regions a process group has mapped (None when not measured)."""
    if pgid is None:
        return None
    names: set[str] = set()
    for pid in process_group_pids(pgid):
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        names.update(line.split(None, 5)[5] for line in maps.splitlines() if " /dev/shm/" in line)
    total = 0
    for name in names:
        try:
            total += Path(name.split(" (deleted)")[0]).stat().st_size
        except OSError:
            continue
    return total


def refuse_in_process(bomb: Bomb, repeats: int) -> dict[str, Any]:
    """Median and max seconds `decode_image` takes to refuse the bomb (encoded ones only); the memory a
    refusal allocates at its peak, and what it leaves allocated, per refusal, over 1000 refusals after
    200 that fill the caches (tracemalloc; 0 means nothing accumulates)."""
    if not isinstance(bomb.data, bytes):
        return {}
    times, message = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        message = _refusal(bomb)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    try:
        for _ in range(200):
            _refusal(bomb)
        first, peak = tracemalloc.get_traced_memory()
        for _ in range(1000):
            _refusal(bomb)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return {
        "median_s": float(np.median(times)),
        "max_s": max(times),
        "traced_peak_bytes": peak,
        "traced_growth_per_refusal_bytes": (after - first) / 1000,
        "message": message[:200],
    }


def _refusal(bomb: Bomb) -> str:
    """The message `decode_image` refuses the bomb with ("" if it decoded it)."""
    try:
        decode_image(bomb.data, name=bomb.name)  # type: ignore[arg-type]
    except ImageReadError as exc:
        return str(exc)
    return ""


def _inputs(grpc: Any, bomb: Bomb) -> list:
    if isinstance(bomb.data, np.ndarray):
        tensor = grpc.InferInput(INSPECT_IN.image_raw, [1, *bomb.data.shape], "UINT8")
        tensor.set_data_from_numpy(bomb.data[None])
    else:
        tensor = grpc.InferInput(INSPECT_IN.image_bytes, [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[bomb.data]], dtype=object))
    return [tensor]


def _good_score(client: Any, grpc: Any, product: str, good: bytes) -> float:
    tensor = grpc.InferInput(INSPECT_IN.image_bytes, [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[good]], dtype=object))
    response = client.infer(ensemble_model(product), [tensor], client_timeout=120)
    return float(response.as_numpy("score").reshape(-1)[0])


def run_bombs(
    url: str,
    product: str,
    good: bytes,
    per_kind: int = 20,
    pgid: int | None = None,
    kinds: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Send `per_kind` bombs of each kind; statuses, latencies, memory and the good score around them."""
    import tritonclient.grpc as grpc

    chosen = bombs(tuple(kinds) if kinds else None)
    client = grpc.InferenceServerClient(url)
    try:
        reference = _good_score(client, grpc, product, good)
        memory_before, shm_before = group_memory(pgid), shm_bytes(pgid)
        per: dict[str, Any] = {}
        for bomb in chosen:
            statuses: Counter[str] = Counter()
            latencies, first = [], ""
            inputs = _inputs(grpc, bomb)
            for _ in range(per_kind):
                start = time.perf_counter()
                try:
                    client.infer(ensemble_model(product), inputs, client_timeout=120)
                    statuses["OK"] += 1
                except grpc.InferenceServerException as exc:
                    statuses[str(exc.status()).removeprefix("StatusCode.")] += 1
                    first = first or str(exc.message())[:200]
                latencies.append(time.perf_counter() - start)
            per[bomb.name] = {
                "decodes_to": bomb.decodes_to,
                "sent_bytes": int(bomb.data.nbytes if isinstance(bomb.data, np.ndarray) else len(bomb.data)),
                "statuses": dict(statuses),
                "latency_median_s": float(np.median(latencies)),
                "latency_max_s": max(latencies),
                "message": first,
                "memory_after": group_memory(pgid),
                "shm_bytes_after": shm_bytes(pgid),
                "in_process": refuse_in_process(bomb, per_kind),
            }
        after = _good_score(client, grpc, product, good)
    finally:
        client.close()
    return _summary(per, per_kind, memory_before, shm_before, pgid, reference, after)


def _summary(
    per: dict[str, Any],
    per_kind: int,
    memory_before: dict[str, Any],
    shm_before: int | None,
    pgid: int | None,
    reference: float,
    after: float,
) -> dict[str, Any]:
    memory_after, shm_after = group_memory(pgid), shm_bytes(pgid)
    growth = memory_after["rss_mib"] - memory_before["rss_mib"] if "rss_mib" in memory_before else None
    refused = sum(k["statuses"].get("INVALID_ARGUMENT", 0) for k in per.values())
    return {
        "per_kind": per_kind,
        "sent": per_kind * len(per),
        "invalid_argument": refused,
        "kinds": per,
        "memory_before": memory_before,
        "memory_after": memory_after,
        "rss_growth_mib": growth,
        "shm_bytes_before": shm_before,
        "shm_bytes_after": shm_after,
        "good_score_before": reference,
        "good_score_after": after,
    }


def bomb_rows(report: dict[str, Any]) -> list[str]:
    """The phase as a few readable lines."""
    growth = report["rss_growth_mib"]
    grown = "not measured (pass --serve-pid)" if growth is None else f"{growth:+.0f} MiB"
    rows = [
        f"bombs: {report['invalid_argument']} of {report['sent']} refused INVALID_ARGUMENT; server RSS "
        f"{grown} after all of them; shared memory {report['shm_bytes_before']} -> "
        f"{report['shm_bytes_after']} bytes; good image score {report['good_score_before']:.4f} before, "
        f"{report['good_score_after']:.4f} after",
    ]
    for name, kind in report["kinds"].items():
        local = kind["in_process"]
        refusal = (
            f", in-process refusal {local['median_s'] * 1e3:.2f} ms, "
            f"{local['traced_growth_per_refusal_bytes']:.0f} B left each"
            if local
            else ""
        )
        rows.append(
            f"  {name:<28} {kind['sent_bytes'] / 1e6:6.2f} MB sent, {kind['statuses']}, answer in "
            f"{kind['latency_median_s'] * 1e3:.1f} ms (max {kind['latency_max_s'] * 1e3:.1f}){refusal}"
        )
    return rows
