"""`repo build` (and `repo update`) refuse what would fail every part: a non-finite threshold, or NaN/inf
constants in a served graph, the bank included, wherever its values are kept (inline or external data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from servers import clone_package

from adinspect.repository.build import build_repository
from adinspect.repository.finite import CHUNK_VALUES, NonFiniteError, check_onnx_constants, count_non_finite
from adinspect.repository.packages import RepositoryError


def test_a_nan_bank_is_refused_at_build(poisoned_package: Path, tmp_path: Path) -> None:
    with pytest.raises(
        RepositoryError, match=r"constant 'bank_features' \(\d+ values\) has \d+ NaN or infinite"
    ):
        build_repository([poisoned_package], "cpu", tmp_path / "repo")
    assert not (tmp_path / "repo").exists()  # nothing written


@pytest.mark.parametrize("threshold", [float("nan"), float("inf")])
def test_a_non_finite_threshold_is_refused_at_build(
    fitted_package: Path, tmp_path: Path, threshold: float
) -> None:
    clone = clone_package(fitted_package, tmp_path / "clone", "clone", threshold_scale=threshold)
    with pytest.raises(RepositoryError, match="threshold") as info:  # NaN: the manifest refuses it already
        build_repository([clone], "cpu", tmp_path / "repo")
    assert "not a finite number" in str(info.value) or "valid number at threshold" in str(info.value)


def _graph(path: Path, values: np.ndarray, external: bool) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    bank = numpy_helper.from_array(values, "bank")
    node = helper.make_node("Identity", ["bank"], ["out"])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT16, list(values.shape))
    model = helper.make_model(helper.make_graph([node], "g", [], [out], [bank]))
    onnx.save_model(
        model, str(path), save_as_external_data=external, location=f"{path.name}.data", size_threshold=0
    )
    return path


@pytest.mark.parametrize("external", [False, True], ids=["inline", "external_data"])
def test_every_chunk_of_a_bank_is_checked(tmp_path: Path, external: bool) -> None:
    values = np.ones(CHUNK_VALUES + 10, np.float16)  # one value past the first chunk
    assert count_non_finite(values) == 0
    check_onnx_constants(_graph(tmp_path / "good.onnx", values, external))
    values[-3] = np.inf
    values[5] = np.nan
    with pytest.raises(NonFiniteError, match="'bank' .* has 2 NaN or infinite"):
        check_onnx_constants(_graph(tmp_path / "bad.onnx", values, external))
