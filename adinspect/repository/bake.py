"""ONNX graph edits that bake a product's constants into its served models (threshold, product id,
defect-type names), so the shared `postprocess` step knows no product."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from adinspect.contracts import RESIDUAL_OUT, SEG_OUT
from adinspect.repository.monitoring import product_id
from adinspect.repository.packages import RepositoryError
from adinspect.runtime.seg import SegInfo


def _onnx_modules():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as exc:
        raise RepositoryError("building a repository needs the `onnx` package: pip install onnx") from exc
    return onnx, helper, numpy_helper


def _add_batch_constant(model, like: str, name: str, value: float, elem_type: int | None = None) -> None:
    """Add output `name` (B,): `value` repeated over the batch of output `like` (B,), float32
    unless `elem_type` (an onnx.TensorProto type) says otherwise."""
    onnx, helper, numpy_helper = _onnx_modules()
    dtype = np.float32 if elem_type is None else onnx.helper.tensor_dtype_to_np_dtype(elem_type)
    shape_name = f"{name}_batch_shape"
    constant = numpy_helper.from_array(np.array([value], dtype=dtype), name="value")
    model.graph.node.extend(
        [
            helper.make_node("Shape", [like], [shape_name], name=f"{name}_shape"),
            helper.make_node("ConstantOfShape", [shape_name], [name], value=constant, name=name),
        ]
    )
    _append_output(model.graph, like, name, elem_type)


def _append_output(graph, like: str, name: str, elem_type: int | None) -> None:
    output = copy.deepcopy({o.name: o for o in graph.output}[like])
    output.name = name
    if elem_type is not None:
        output.type.tensor_type.elem_type = elem_type
    graph.output.append(output)


def _check_outputs(path: Path, model, expected: Sequence[str], added: Sequence[str]) -> None:
    names = [o.name for o in model.graph.output]
    if not set(expected) <= set(names) or set(added) & set(names):
        raise RepositoryError(
            f"{path}: expected outputs {list(expected)} without {list(added)}, got {names}; "
            "re-create it with this adinspect version"
        )


def bake_threshold(residual_onnx: Path, threshold: float, product: str) -> bytes:
    """The residual model with extra outputs `threshold` (B,) float32, the product's threshold,
    and `product_id` (B,) int32, which the shared `postprocess` counts metrics under.

    Done with ONNX graph edits (Shape → ConstantOfShape) so the product's constants — bank and
    threshold — live in one model and `postprocess` stays shared across products.
    """
    onnx, _, _ = _onnx_modules()
    # a large bank stays in its external data file (copied beside model.onnx), never in memory
    model = onnx.load(str(residual_onnx), load_external_data=False)
    baked = [RESIDUAL_OUT.threshold, RESIDUAL_OUT.product_id]
    _check_outputs(residual_onnx, model, list(RESIDUAL_OUT)[:3], baked)
    _add_batch_constant(model, RESIDUAL_OUT.score, RESIDUAL_OUT.threshold, threshold)
    _add_batch_constant(
        model, RESIDUAL_OUT.score, RESIDUAL_OUT.product_id, product_id(product), onnx.TensorProto.INT32
    )
    if not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        onnx.checker.check_model(model)  # with external data the checker needs the file beside it
    return model.SerializeToString()


def bake_seg(info: SegInfo) -> bytes:
    """seg.onnx with extra outputs `threshold` (B,) float32, the seg model's calibrated threshold,
    and `defect_name` (B,) string, the name of the `defect_type` index (a Gather over the
    package's defect-type names, all empty when the package names no type), so `postprocess`
    stays shared and knows no product."""
    onnx, helper, numpy_helper = _onnx_modules()
    model = onnx.load(str(info.onnx))
    expected = [SEG_OUT.anomaly_map, SEG_OUT.score, SEG_OUT.defect_type, SEG_OUT.type_scores]
    _check_outputs(info.onnx, model, expected, [SEG_OUT.threshold, SEG_OUT.defect_name])
    _add_batch_constant(model, SEG_OUT.score, SEG_OUT.threshold, info.threshold)
    names = [(info.type_name(i) or "").encode() for i in range(len(info.defect_types))]
    table = numpy_helper.from_array(np.array(names, dtype=object), "names")
    model.graph.initializer.append(table)
    model.graph.node.append(
        helper.make_node(
            "Gather", ["names", SEG_OUT.defect_type], [SEG_OUT.defect_name], axis=0, name="names"
        )
    )
    _append_output(model.graph, SEG_OUT.defect_type, SEG_OUT.defect_name, onnx.TensorProto.STRING)
    onnx.checker.check_model(model)
    return model.SerializeToString()
