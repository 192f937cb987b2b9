"""Tensor names agree: adinspect.contracts ↔ exported ONNX ↔ config.pbtxt ↔ client constants."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
from servers import parse_config

from adinspect.contracts import (
    BACKBONE,
    INSPECT_IN,
    INSPECT_OUT,
    POSTPROCESS_IN,
    PREPROCESS_OUT,
    RESIDUAL,
    RESIDUAL_OUT,
)
from adinspect.repository.configs import ensemble_steps


def _io(config) -> tuple[list[str], list[str]]:
    return [t.name for t in config.input], [t.name for t in config.output]


def test_exported_onnx_names_are_the_contracts(served_packages: list[Path]) -> None:
    backbone = ort.InferenceSession(str(served_packages[0] / "backbone.onnx"))
    residual = ort.InferenceSession(str(served_packages[0] / "residual.onnx"))
    assert [i.name for i in backbone.get_inputs()] == [BACKBONE.image]
    assert [o.name for o in backbone.get_outputs()] == [BACKBONE.features, BACKBONE.global_map]
    assert [i.name for i in residual.get_inputs()] == [RESIDUAL.features, RESIDUAL.global_map]
    assert [o.name for o in residual.get_outputs()] == [
        RESIDUAL.residual,
        RESIDUAL.anomaly_map,
        RESIDUAL.score,
    ]


def test_served_model_onnx_matches_its_config(gpu_repository: Path, cpu_repository: Path) -> None:
    for model in ("backbone", "residual_widget"):
        session = ort.InferenceSession(str(gpu_repository / model / "1" / "model.onnx"))
        inputs, outputs = _io(parse_config(gpu_repository / model / "config.pbtxt"))
        assert [i.name for i in session.get_inputs()] == inputs
        assert [o.name for o in session.get_outputs()] == outputs
    assert _io(parse_config(gpu_repository / "residual_widget" / "config.pbtxt"))[1] == list(RESIDUAL_OUT)
    # the cpu flavour's one-hop model runs the same baked residual graph
    one_hop = (cpu_repository / "inspect_widget" / "1" / "model.onnx").read_bytes()
    assert one_hop == (gpu_repository / "residual_widget" / "1" / "model.onnx").read_bytes()


def test_config_names_are_the_serving_contracts(gpu_repository: Path, cpu_repository: Path) -> None:
    encoded = [name for name in INSPECT_IN if name != INSPECT_IN.image_raw]  # raw only with --raw-size
    for repo in (gpu_repository, cpu_repository):
        config = parse_config(repo / "inspect_widget" / "config.pbtxt")
        assert _io(config) == (encoded, list(INSPECT_OUT))
    pre = parse_config(gpu_repository / "preprocess" / "config.pbtxt")
    assert _io(pre) == ([INSPECT_IN.image_bytes], list(PREPROCESS_OUT))
    post = parse_config(gpu_repository / "postprocess" / "config.pbtxt")
    assert _io(post) == (list(POSTPROCESS_IN), list(INSPECT_OUT))
    assert PREPROCESS_OUT.image == BACKBONE.image


def test_ensemble_steps_wire_existing_tensors(gpu_repository: Path) -> None:
    """Every step's mapped names exist in that model's config; every read tensor is produced first."""
    ensemble = parse_config(gpu_repository / "inspect_widget" / "config.pbtxt")
    available = {t.name for t in ensemble.input}
    for step, planned in zip(ensemble.ensemble_scheduling.step, ensemble_steps("widget"), strict=True):
        inputs, outputs = _io(parse_config(gpu_repository / step.model_name / "config.pbtxt"))
        assert step.model_name == planned.model
        assert set(step.input_map) <= set(inputs) and set(step.output_map) <= set(outputs)
        assert set(step.input_map.values()) <= available, step.model_name
        available |= set(step.output_map.values())
    assert {t.name for t in ensemble.output} <= available


def test_seg_onnx_names_are_the_contracts(seg_package: Path) -> None:
    from adinspect.contracts import SEG, SEG_OUT
    from adinspect.models.export import SEG as EXPORTED

    assert tuple(EXPORTED) == tuple(SEG)
    session = ort.InferenceSession(str(seg_package / "seg.onnx"))
    assert [i.name for i in session.get_inputs()] == [SEG.residual] == [RESIDUAL.residual]
    assert [o.name for o in session.get_outputs()] == list(SEG)[1:] == list(SEG_OUT)[:4]


def test_client_speaks_the_same_names() -> None:
    import adinspect.client.grpc as client

    assert client.INSPECT_IN is INSPECT_IN and client.INSPECT_OUT is INSPECT_OUT
