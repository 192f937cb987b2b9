"""Numbers a repository must not serve: a non-finite threshold, or non-finite constants (the reference
bank) inside a package's residual graph. The served verdict fails closed on them, part after part;
`repo build` and `repo update` refuse them before anything is written.

A bank can be gigabytes, kept in `residual.onnx.data` beside the graph: external tensors are read
through a memory map, a chunk at a time, so the check never holds a bank in memory.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from adinspect.errors import InputError

CHUNK_VALUES = 1 << 22  # values checked at a time (16 MB of float32)

# ONNX TensorProto data types with a floating-point value
_FLOAT_TYPES = {1: np.float32, 10: np.float16, 11: np.float64}
_EXTERNAL = 1  # TensorProto.EXTERNAL


class NonFiniteError(InputError):
    """A package holds a NaN or infinite threshold or constant; the message says which and what to do."""


def check_threshold(name: str, value: float, source: Path) -> None:
    """Refuse a NaN or infinite threshold."""
    if not math.isfinite(value):
        raise NonFiniteError(f"{source}: {name} is {value}, not a finite number; re-fit the package")


def count_non_finite(values: np.ndarray) -> int:
    """How many NaN/inf values an array (or memory map) holds, read `CHUNK_VALUES` at a time."""
    flat = values.reshape(-1)
    return sum(
        int(np.count_nonzero(~np.isfinite(flat[i : i + CHUNK_VALUES])))
        for i in range(0, flat.size, CHUNK_VALUES)
    )


def check_onnx_constants(path: Path) -> None:
    """Refuse an ONNX graph whose float initializers (inline or in external data) are not all finite.

    Raises:
        NonFiniteError: naming the graph, the tensor and how many values are not finite.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        dtype = _FLOAT_TYPES.get(tensor.data_type)
        if dtype is None:
            continue
        if tensor.data_location == _EXTERNAL:
            values = _external(path.parent, tensor, dtype)
        else:
            values = numpy_helper.to_array(tensor)
        bad = count_non_finite(values)
        if bad:
            raise NonFiniteError(
                f"{path}: constant {tensor.name!r} ({values.size} values) has {bad} NaN or infinite; "
                "the package would fail every part: re-fit it"
            )


def _external(folder: Path, tensor: object, dtype: type) -> np.ndarray:
    """A memory map of an external tensor (location, offset, length as ONNX records them)."""
    info = {entry.key: entry.value for entry in tensor.external_data}  # type: ignore[attr-defined]
    count = int(np.prod(list(tensor.dims), dtype=np.int64))  # type: ignore[attr-defined]
    if count == 0:
        return np.zeros(0, dtype)
    return np.memmap(
        folder / info["location"], dtype=dtype, mode="r", offset=int(info.get("offset", 0)), shape=(count,)
    )
