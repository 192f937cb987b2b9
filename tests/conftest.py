"""Shared fixtures: a synthetic dataset, a small fitted model package (session-scoped, built once),
and the Triton repositories and server the repository, server, client and benchmark tests share
(helpers in tests/servers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from servers import clone_package, running, write_identity_repository

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    return Path(os.environ.get("ADINSPECT_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def bottle_root() -> Path:
    root = shared_data_root() / "mvtec_ad" / "bottle"
    if not (root / "train" / "good").is_dir():
        pytest.skip(
            f"real data absent: {root} not found (set ADINSPECT_DATA to the folder holding mvtec_ad/)"
        )
    return root


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from adinspect.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "widget", kind="object", seed=0)


@pytest.fixture(scope="session")
def fitted_package(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cpu-preset package fitted on the synthetic dataset with the real offline backbone."""
    pytest.importorskip("torch")
    from adinspect.config import preset_config
    from adinspect.fitting.fit import fit_product

    out = tmp_path_factory.mktemp("packages") / "widget"
    fit_product(synthetic_root, preset_config("cpu", "widget"), out, progress=False)
    return out


TALL = (320, 128)  # a tall product (H, W): a 2.5:1 strip like KolektorSDD's, fitted at S = 128


@pytest.fixture(scope="session")
def tall_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A non-square synthetic product: woven strips of 320 x 128 pixels (16 good training images)."""
    from adinspect.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("tall") / "strip"
    return make_synthetic_dataset(root, kind="texture", n_train=16, n_test_good=4, n_test_defect=6, size=TALL)


@pytest.fixture(scope="session")
def tall_package(tall_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`adinspect fit --image-size 128` on the tall product: the input follows the images' aspect."""
    pytest.importorskip("torch")
    from adinspect.cli import main

    out = tmp_path_factory.mktemp("tall_package") / "strip"
    assert (
        main(
            [
                "fit",
                "--data",
                str(tall_root),
                "--out",
                str(out),
                "--image-size",
                "128",
                "--no-auto",
                "--quiet",
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="session")
def cloth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, smaller synthetic product (a woven texture) for the unified package."""
    from adinspect.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic_cloth") / "cloth"
    return make_synthetic_dataset(
        root, kind="texture", n_train=12, n_test_good=4, n_test_defect=4, size=96, seed=1
    )


@pytest.fixture(scope="session")
def unified_package(synthetic_root: Path, cloth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One InvAD for the two synthetic products `widget` and `cloth` (`train_unified`, 4 steps at
    64², a few seconds): the tests check that every path reproduces invad.onnx, not its accuracy."""
    pytest.importorskip("torch")
    from adinspect.train.unified import UnifiedSettings, train_unified

    out = tmp_path_factory.mktemp("unified") / "line"
    settings = UnifiedSettings(image_size=64, steps=4, batch_size=4, pad=16)
    train_unified([synthetic_root, cloth_root], out, settings, progress=False)
    return out


def trained_copy(source: Path, model: Path, command: str, data: Path, *options: str) -> Path:
    """A copy of package `source` at `model`, then `adinspect <command> --model model --data data
    --quiet <options>` (train-click, train-seg) through the train CLI, as a user would run it."""
    import argparse
    import shutil

    from adinspect.train import cli

    shutil.copytree(source, model)
    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([command, "--model", str(model), "--data", str(data), "--quiet", *options])
    assert args.func(args) == 0
    return model


@pytest.fixture(scope="session")
def train_package():
    """`trained_copy`, for conftests below this one (they cannot import this module by name)."""
    return trained_copy


@pytest.fixture(scope="session")
def seg_package(fitted_package: Path, synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fitted package plus an ADClick-Seg from `adinspect train-seg` (2 synthetic steps, ~20 s).

    Accuracy is irrelevant here: the serving paths must reproduce whatever seg.onnx computes. The
    map is fused with the training-free one (the larger of the two graphs `train-seg` may write).
    """
    model = tmp_path_factory.mktemp("seg_package") / "widget"
    options = ["--no-finetune", "--pretrain-steps", "2", "--batch-size", "4", "--n-synthetic", "8",
               "--fusion", "geometric"]  # fmt: skip
    return trained_copy(fitted_package, model, "train-seg", synthetic_root, *options)


# the cheapest train-click: the tests check that tools reproduce click.onnx, not its accuracy
CHEAPEST = [
    "--steps",
    "2",
    "--batch-size",
    "2",
    "--n-synthetic",
    "8",
    "--snap",
    "off",
    "--trace",
    "off",
    "--validation-images",
    "2",
]


@pytest.fixture(scope="session")
def click_package(
    fitted_package: Path, tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path, train_package
) -> Path:
    """The synthetic package plus a residual-only click.onnx from `adinspect train-click` with the
    cheapest settings (2 steps of batch 2 on 8 synthetic anomalies, ~10 s): the tests check that the
    tool reproduces whatever click.onnx computes, not its accuracy."""
    model = tmp_path_factory.mktemp("click_package") / "widget"
    return train_package(
        fitted_package, model, "train-click", synthetic_root, "--no-image-features", *CHEAPEST
    )


@pytest.fixture(scope="session")
def feature_click_package(
    fitted_package: Path, tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path, train_package
) -> Path:
    """As `click_package`, with the backbone-feature prior (click.onnx takes `features` too)."""
    model = tmp_path_factory.mktemp("feature_click_package") / "widget"
    return train_package(fitted_package, model, "train-click", synthetic_root, "--image-features", *CHEAPEST)


@pytest.fixture(scope="session")
def image_click_package(
    fitted_package: Path, tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path, train_package
) -> Path:
    """As `click_package`, with ADClick's image branch (click.onnx takes the image too) and half the
    synthetic anomalies under a capture shift."""
    model = tmp_path_factory.mktemp("image_click_package") / "widget"
    options = ["--image-branch", "--no-image-features", "--capture-shift-aug", "0.5", *CHEAPEST]
    return train_package(fitted_package, model, "train-click", synthetic_root, *options)


def poison_package(source: Path, target: Path, product: str = "poisoned") -> Path:
    """A copy of a package whose reference bank is NaN (a broken artifact that still loads).

    The manifest is resealed, as a careless rebuild would do: checksums cannot catch bad numbers,
    only the fail-closed verdict can.
    """
    import shutil

    import numpy as np
    import onnx
    from onnx import numpy_helper

    from adinspect.package import Manifest, sha256_of, write_manifest

    shutil.copytree(source, target)
    model = onnx.load(str(target / "residual.onnx"))
    for tensor in model.graph.initializer:
        if tensor.name == "bank_features":
            nan = np.full(numpy_helper.to_array(tensor).shape, np.nan, numpy_helper.to_array(tensor).dtype)
            tensor.CopyFrom(numpy_helper.from_array(nan, tensor.name))
    onnx.save(model, str(target / "residual.onnx"))
    manifest = Manifest.model_validate_json((target / "package.json").read_text())
    files = {**manifest.files, "residual.onnx": sha256_of(target / "residual.onnx")}
    config = (target / "config.json").read_text().replace(f'"{manifest.product}"', f'"{product}"')
    (target / "config.json").write_text(config)
    files["config.json"] = sha256_of(target / "config.json")
    write_manifest(target, manifest.model_copy(update={"files": files, "product": product}))
    return target


@pytest.fixture(scope="session")
def poisoned_package(fitted_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return poison_package(fitted_package, tmp_path_factory.mktemp("poisoned") / "poisoned")


# ----------------------------------------------------------------------------- served packages


@pytest.fixture(scope="module")
def identity_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_identity_repository(tmp_path_factory.mktemp("identity_repo"))


@pytest.fixture(scope="session")
def served_packages(fitted_package: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two products on one backbone: the fitted `widget` and `gadget` (half its threshold)."""
    root = tmp_path_factory.mktemp("served_packages")
    return [fitted_package, clone_package(fitted_package, root / "gadget", "gadget", threshold_scale=0.5)]


@pytest.fixture(scope="session")
def cpu_repository(served_packages: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from adinspect.repository.build import build_repository

    out = tmp_path_factory.mktemp("repo") / "model_repository"
    build_repository(served_packages, "cpu", out)
    return out


@pytest.fixture(scope="session")
def gpu_repository(served_packages: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gpu flavour's ensembles (built and checked here; served only where a GPU is)."""
    from adinspect.repository.build import build_repository

    out = tmp_path_factory.mktemp("gpu") / "repo"
    build_repository(served_packages, "gpu", out)
    return out


@pytest.fixture(scope="session")
def triton_server(cpu_repository: Path, tmp_path_factory: pytest.TempPathFactory):
    """tritonserver on free 127.0.0.1 ports over the cpu repository, for the whole session."""
    log = tmp_path_factory.mktemp("triton_log") / "tritonserver.log"
    with running(cpu_repository, log, startup_timeout=180) as server:
        yield server
