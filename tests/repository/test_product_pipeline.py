"""The cpu flavour's one-hop model (`steps.ProductPipeline`) without a server: what `inspect_<p>`
runs on the files `repo build` wrote, against the in-process inspector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from servers import parse_config

from adinspect.contracts import INSPECT_OUT, RESIDUAL_OUT
from adinspect.geometry import PreprocessSpec
from adinspect.imageio import read_image
from adinspect.repository.build import build_repository
from adinspect.repository.monitoring import product_id
from adinspect.repository.steps import CANCELLED, ProductPipeline, ProductRequest, Refusal
from adinspect.runtime.inspector import Inspector
from adinspect.runtime.sessions import make_session


def pipeline_of(model_dir: Path) -> ProductPipeline:
    """What models/inspect.py builds in `initialize`, from a built `inspect_<p>` directory."""
    params = {k: v.string_value for k, v in parse_config(model_dir / "config.pbtxt").parameters.items()}
    version = model_dir / "1"
    seg = version / "seg.onnx"
    return ProductPipeline(
        spec=PreprocessSpec.model_validate_json(params["preprocess_spec"]),
        max_pixels=int(params["max_pixels"]),
        max_bytes=int(params["max_decode_bytes"]),
        backbone=make_session(version / "backbone.onnx", 1),
        residual=make_session(version / "model.onnx", 1),
        seg=make_session(seg, 1) if seg.is_file() else None,
    )


def as_bytes(path: Path) -> ProductRequest:
    return ProductRequest(np.array([[path.read_bytes()]], dtype=object), None, None, name=path.name)


@pytest.fixture(scope="module")
def images(synthetic_root: Path) -> list[Path]:
    paths = sorted((synthetic_root / "test").rglob("*.png"))
    good = [p for p in paths if p.parent.name == "good"]
    return good[:2] + [p for p in paths if p.parent.name != "good"][:2]


def check_equal(answer: dict, expected, product: str) -> None:
    assert float(answer[INSPECT_OUT.score][0, 0]) == pytest.approx(expected.result.score, abs=1e-5)
    assert float(answer[INSPECT_OUT.threshold][0, 0]) == pytest.approx(expected.result.threshold, rel=1e-6)
    assert answer[INSPECT_OUT.verdict][0, 0].decode() == expected.result.verdict
    regions = json.loads(answer[INSPECT_OUT.regions][0, 0])
    assert len(regions) == len(expected.result.regions)
    assert int(answer[RESIDUAL_OUT.product_id][0]) == product_id(product)


def test_a_batch_equals_the_in_process_inspector(cpu_repository: Path, served_packages, images) -> None:
    for package in served_packages:
        product = package.name
        pipeline = pipeline_of(cpu_repository / f"inspect_{product}")
        inspector = Inspector(package, threads=1)
        raw = read_image(images[0])
        requests = [
            *[as_bytes(p) for p in images],
            ProductRequest(None, raw[None], np.array([[b"array"]], dtype=object)),
        ]
        answers = pipeline.run(requests)
        for path, answer in zip(images, answers, strict=False):
            assert isinstance(answer, dict)
            check_equal(answer, inspector.inspect(read_image(path)), product)
        last = answers[-1]
        assert isinstance(last, dict)
        expected = inspector.inspect(raw)
        check_equal(last, expected, product)
        np.testing.assert_allclose(last[INSPECT_OUT.anomaly_map][0], expected.anomaly_map, atol=1e-4)


def test_a_bad_request_gets_its_error_and_the_rest_of_the_batch_is_answered(
    cpu_repository: Path, images
) -> None:
    pipeline = pipeline_of(cpu_repository / "inspect_widget")
    broken = ProductRequest(np.array([[b"not an image"]], dtype=object), None, None, name="broken.png")
    both = ProductRequest(np.array([[b"x"]], dtype=object), np.zeros((1, 8, 8, 3), np.uint8), None)
    bad_format = ProductRequest(None, np.zeros((1, 64, 64, 3), np.uint8), np.array([[b"jpeg"]], dtype=object))
    answers = pipeline.run([broken, as_bytes(images[0]), both, bad_format])
    assert isinstance(answers[0], Refusal) and answers[0].message.startswith("broken.png: ")
    assert isinstance(answers[1], dict) and answers[1][INSPECT_OUT.verdict][0, 0] in (b"pass", b"fail")
    assert isinstance(answers[2], Refusal) and "exactly one" in answers[2].message
    assert isinstance(answers[3], Refusal) and "map_format" in answers[3].message
    assert {a.code for a in answers if isinstance(a, Refusal)} == {"INVALID_ARGUMENT"}
    assert isinstance(pipeline.run([broken])[0], Refusal)  # a batch of only bad requests
    pipeline.warm_up()  # what initialize runs: a black image through every step


def test_a_request_whose_deadline_passed_is_not_computed_or_served(cpu_repository: Path, images) -> None:
    pipeline = pipeline_of(cpu_repository / "inspect_widget")
    asked: list[str] = []

    def after_decoding() -> bool:  # the deadline passes while the batch runs its models
        asked.append("asked")
        return len(asked) > 1

    gone = as_bytes(images[0])._replace(cancelled=lambda: True)
    late = as_bytes(images[1])._replace(cancelled=after_decoding)
    answers = pipeline.run([gone, late, as_bytes(images[2])])
    assert answers[0] == CANCELLED and answers[1] == CANCELLED and len(asked) == 2
    assert isinstance(answers[2], dict)
    assert pipeline.run([gone]) == [CANCELLED]


def test_with_adclick_seg_the_seg_model_answers(
    seg_package: Path, synthetic_root: Path, tmp_path: Path, images
) -> None:
    from adinspect.package import ModelPackage
    from adinspect.runtime.seg import seg_info

    repo = build_repository([seg_package], "cpu", tmp_path / "repo").out_dir
    pipeline = pipeline_of(repo / "inspect_widget")
    assert pipeline.seg is not None
    inspector = Inspector(seg_package, threads=1)
    info = seg_info(ModelPackage.load(seg_package))
    assert info is not None
    for path, answer in zip(images, pipeline.run([as_bytes(p) for p in images]), strict=True):
        assert isinstance(answer, dict)
        expected = inspector.inspect(read_image(path))
        check_equal(answer, expected, "widget")
        assert (answer[INSPECT_OUT.defect_type][0, 0].decode() or None) == expected.result.defect_type
        assert expected.result.defect_type in (info.defect_types if info.names_types else (None,))
