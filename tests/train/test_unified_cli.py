"""`adinspect train-unified` and the commands around a unified package, at the command line: bad
input is one `error:` line naming the folder, file or field (exit 2); what needs one product's
bank refuses the package; evaluate, predict and bench take the product."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from adinspect.cli import main
from adinspect.imageio import write_png


def _fails(capsys, argv: list[str], *fragments: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def _folder(root: Path, n: int = 6, shape: tuple[int, ...] = (48, 48, 3)) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        write_png(root / f"{i}.png", rng.integers(0, 256, shape, dtype=np.uint8))
    return root


TINY = ["--steps", "2", "--batch-size", "2", "--image-size", "64", "--quiet"]


def test_bad_product_folders_and_settings_are_one_error_line(tmp_path: Path, capsys) -> None:
    good = _folder(tmp_path / "good")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "line"
    base = ["train-unified", "--out", str(out), *TINY, "--data", str(good)]
    _fails(capsys, [*base, str(tmp_path / "empty")], str(tmp_path / "empty"), "no images")
    _fails(capsys, [*base, str(_folder(tmp_path / "Bad-Name"))], "Bad-Name", "rename the folder")
    _fails(capsys, [*base, "--pad", "8"], "pad 8", "multiple of stride 16")
    _fails(capsys, [*base, "--holdout-fraction", "0.9"], "holdout_fraction")
    broken = _folder(tmp_path / "broken")
    (broken / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    _fails(capsys, [*base, str(broken)], "3.png")
    _fails(
        capsys,
        ["train-unified", "--out", str(tmp_path / "Line"), *TINY, "--data", str(good)],
        "names the model",
    )
    assert not out.exists()


def test_train_unified_writes_a_package_whatever_the_image_sizes(tmp_path: Path, capsys) -> None:
    gray, wide = _folder(tmp_path / "gray", shape=(40, 40)), _folder(tmp_path / "wide", shape=(30, 90, 3))
    out = tmp_path / "line"
    assert main(["train-unified", "--data", str(gray), str(wide), "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "InvAD trained on 2 products" in printed and "gray: 2 trained on, 4 held out" in printed
    assert sorted(json.loads((out / "package.json").read_text())["unified"]["products"]) == ["gray", "wide"]
    assert not (tmp_path / "line.work").exists()


@pytest.mark.parametrize(
    "command", ["train-click", "train-seg", "label", "choose-snap", "evaluate-clicks", "evaluate-seg"]
)
def test_commands_that_need_a_bank_refuse_a_unified_package(
    command: str, unified_package: Path, synthetic_root: Path, tmp_path: Path, capsys
) -> None:
    extra = {"label": ["--simulate", "3"], "evaluate-clicks": ["--json", str(tmp_path / "c.json")],
             "evaluate-seg": ["--json", str(tmp_path / "s.json")]}.get(command, [])  # fmt: skip
    argv = [command, "--model", str(unified_package), "--data", str(synthetic_root), "--quiet", *extra]
    _fails(capsys, argv, str(unified_package), "no reference bank", "adinspect fit")


def test_evaluate_predict_and_bench_take_the_product(
    unified_package: Path, cloth_root: Path, synthetic_root: Path, tmp_path: Path, capsys
) -> None:
    report = tmp_path / "cloth.json"
    evaluate = ["evaluate", "--model", str(unified_package), "--quiet"]
    assert main([*evaluate, "--data", str(cloth_root), "--json", str(report)]) == 0
    metrics = json.loads(report.read_text())
    assert metrics["product"] == "cloth" and metrics["n_images"] == 8 and 0 <= metrics["image_auroc"] <= 1
    # another product's data is inspected with the named product's threshold (or refused unnamed)
    other = tmp_path / "bottle"
    shutil.copytree(cloth_root, other)
    _fails(
        capsys, ["evaluate", "--model", str(unified_package), "--data", str(other), "--quiet"], "--product"
    )
    assert main(["evaluate", "--model", str(unified_package), "--data", str(other), "--quiet",
                 "--product", "widget"]) == 0  # fmt: skip
    capsys.readouterr()
    images = sorted((synthetic_root / "test" / "good").glob("*.png"))[:2]
    predict = ["predict", "--model", str(unified_package), *map(str, images), "--out", str(tmp_path / "p")]
    _fails(capsys, predict, "inspects products ['widget', 'cloth'], got no product")
    assert main([*predict, "--product", "widget", "--no-overlays"]) == 0
    rows = json.loads((tmp_path / "p" / "results.json").read_text())["results"]
    assert [r["product"] for r in rows] == ["widget", "widget"]
    bench = tmp_path / "bench.json"
    assert main(["bench", "--model", str(unified_package), "--data", str(cloth_root), "--json", str(bench),
                 "--images", "2", "--warmup", "1", "--threads", "1"]) == 0  # fmt: skip
    timing = json.loads(bench.read_text())
    assert timing["product"] == "cloth" and set(timing["runners"]) == {"onnxruntime", "torch_eager"}
