"""End to end on the synthetic dataset: train-click → label → train-seg → evaluate, via the CLI.

Tiny step counts: this checks the wiring, files, manifest, resume and errors, not accuracy
(accuracy on the real bottle data is measured by the commands in the closing report).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from adinspect.cli import main as adinspect_main
from adinspect.errors import InputError
from adinspect.imageio import read_image
from adinspect.package import ModelPackage
from adinspect.train import cli
from adinspect.train.checkpoint import read_meta
from adinspect.train.click_trainer import batch_for
from adinspect.train.seg_serving import serving_line
from adinspect.train.seg_trainer import SegTrainSettings, train_seg

pytestmark = pytest.mark.slow


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture(scope="module")
def trained(fitted_package: Path, synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tmp_path_factory.mktemp("adclick") / "widget"
    shutil.copytree(fitted_package, model)
    common = ["--model", str(model), "--data", str(synthetic_root), "--quiet"]
    tiny = ["--steps", "2", "--batch-size", "2", "--n-synthetic", "8", "--validation-images", "3"]
    assert _run("train-click", *common, *tiny) == 0
    return model


def test_train_click_writes_a_verified_package(trained: Path) -> None:
    package = ModelPackage.load(trained)
    for name in (
        "language.safetensors",
        "language.json",
        "click_model.safetensors",
        "click.onnx",
        "click_model.json",
    ):
        assert package.has(name), name
    assert "click" not in package.manifest.optional_models  # labelling only, never served
    meta = json.loads((trained / "click_model.json").read_text())
    assert meta["preset"] == "cpu" and meta["parity"]["mask_max_abs_diff"] < 1e-4
    validation = meta["validation"]  # synthetic anomalies on the fit's held-out good images
    assert validation["n_images"] == 3 and validation["holdout_images"] >= 1
    assert len(validation["iou_at_k"]) == 5 and 0 <= validation["ap_5"] <= 1
    assert meta["defect_types"] == json.loads((trained / "language.json").read_text())["defect_types"]


def test_resume_continues_from_the_checkpoint(trained: Path, synthetic_root: Path) -> None:
    common = ["--model", str(trained), "--data", str(synthetic_root), "--quiet"]
    more = ["--steps", "3", "--batch-size", "2", "--n-synthetic", "8", "--validation-images", "0"]
    assert _run("train-click", *common, *more, "--resume") == 0
    assert json.loads((trained / "click_model.json").read_text())["resumed_from"] == 2


def test_resume_refuses_a_batch_other_than_the_checkpoints(
    trained: Path, synthetic_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--model", str(trained), "--data", str(synthetic_root)]
    more = ["--steps", "4", "--n-synthetic", "8", "--validation-images", "0", "--resume"]
    # no --batch-size: the input's batch (8 at the synthetic product's size), not the checkpoint's 2
    assert adinspect_main(["train-click", *common, *more]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "batch_size = 2, this run asks for 8" in err[0] and "drop --resume" in err[0]
    checkpoint = trained / ".train" / "click.ckpt.safetensors"
    assert read_meta(checkpoint)["settings"]["batch_size"] == 2  # the checkpoint is left as it was


def test_label_train_seg_and_evaluate(trained: Path, synthetic_root: Path, tmp_path: Path) -> None:
    common = ["--model", str(trained), "--data", str(synthetic_root), "--quiet"]
    assert _run("label", *common, "--simulate", "2") == 0
    labels = json.loads((trained / "labels" / "labels.json").read_text())
    assert labels["images"] and all(len(r["clicks"]) <= 2 for r in labels["images"])
    assert all((trained / "labels" / r["mask"]).is_file() for r in labels["images"])

    seg = ["--pretrain-steps", "2", "--finetune-steps", "2", "--batch-size", "4", "--n-synthetic", "8"]
    assert _run("train-seg", *common, *seg) == 0
    package = ModelPackage.load(trained)
    report = json.loads((trained / "seg_model.json").read_text())
    serving = report["serving"]  # seg takes over the verdict unless its worst case is larger
    assert serving["how"] == "auto" and serving["n_labelled"] == len(labels["images"])
    assert serving["seg_passed"] == report["calibration"]["pseudo_passed"]
    evidence, cal = package.manifest.threshold_evidence, report["calibration"]
    assert serving["seg_false_reject_upper_95"] == pytest.approx(cal["false_reject_upper_95"])
    assert serving["training_free_false_reject_upper_95"] == pytest.approx(evidence.false_reject_upper_95)
    assert serving["served"] == (serving["seg_worst_case"] <= serving["training_free_worst_case"])
    assert package.has("seg.onnx") and ("seg" in package.manifest.optional_models) == serving["served"]
    card = (trained / "model_card.md").read_text()  # what a person reads: what is served and why
    assert card.count("## ADClick-Seg") == 1 and card.index("## ADClick-Seg") < card.index("## Config")
    assert ("- served: **yes**" in card) == serving["served"] and serving_line(serving) in card
    assert f"seg threshold = **{report['calibration']['threshold']:.6g}**" in card
    assert report["init"] == "click_model.safetensors" and report["n_pseudo_labelled"] == len(
        labels["images"]
    )
    assert report["parity"]["map_max_abs_diff"] < 1e-4
    assert report["synthetic_thin_fraction"] == 0.0  # the click model's share: it painted no strokes
    fusion = report["fusion"]  # chosen on the pseudo-labelled images by the rule of seg_fusion
    passed = fusion["labelled_passed"]  # the verdict first, then the outline
    fused = round(fusion["pixel_ap"]["none"] - fusion["pixel_ap"]["geometric"], 4) <= 0.01
    if passed["none"] != passed["geometric"]:
        fused = passed["geometric"] < passed["none"]
    assert fusion["how"] == "auto" and fusion["kind"] == ("geometric" if fused else "none")
    assert fusion["free_threshold"] == (package.threshold if fused else None)
    calibration = report["calibration"]
    assert 0 <= max(calibration["holdout_scores"]) <= calibration["threshold"]
    assert calibration["pseudo_labelled"] == [r["image"] for r in labels["images"]]
    assert len(calibration["pseudo_scores"]) == len(labels["images"])

    out, panels = tmp_path / "clicks.json", tmp_path / "panels"
    assert (
        _run("evaluate-clicks", *common, "--json", str(out), "--max-clicks", "3", "--panels", str(panels))
        == 0
    )
    metrics = json.loads(out.read_text())
    drawn = sorted(panels.glob("*.png"))
    assert [p.name for p in drawn] == sorted(
        f"{Path(m['image']).parent.name}_{Path(m['image']).stem}.png" for m in metrics["images"]
    )
    panel = read_image(drawn[0])
    size = panel.shape[0]
    assert panel.shape == (size, 4 * size, 3)  # image | truth | mask and clicks | probability
    truth = panel[:, size : 2 * size]
    assert ((truth == (255, 0, 0)).all(-1)).any()
    after = {f"{m}_{k}" for m in ("ap", "pixel_auroc", "aupro") for k in (3, 5)}
    assert {"noc80", "noc85", "noc90", *after} <= set(metrics) and len(metrics["iou_at_k"]) == 3
    assert all(0 <= metrics[k] <= 1 for k in after) and metrics["n_skipped"] == 0
    assert all(0 <= v <= 1 for v in metrics["iou_at_k"]) and 1 <= metrics["noc85"] <= 3
    floor = metrics["before_coverage_floor"]  # what the network alone did, before the floor
    assert floor["predictions"] == sum(len(m["iou"]) for m in metrics["images"])
    assert 0 <= floor["missed_positive_click"] <= floor["predictions"] and 0 <= floor["empty"]

    seg_json = tmp_path / "seg.json"
    assert _run("evaluate-seg", *common, "--json", str(seg_json)) == 0
    result = json.loads(seg_json.read_text())
    assert result["served"] == ("seg" if serving["served"] else "training_free")
    for name in ("adclick_seg", "training_free"):
        assert all(0 <= result[name][k] <= 1 for k in ("pixel_ap", "aupro", "pixel_auroc", "image_auroc"))
    assert result["threshold"]["value"] == calibration["threshold"]
    assert result["threshold"]["pseudo_labelled_images"] == calibration["pseudo_labelled"]
    # verdicts on the evaluated images alone: none of them was pseudo-labelled
    assert not set(result["images"]) & set(calibration["pseudo_labelled"])
    verdicts = result["verdicts"]
    assert verdicts["n_good"] + verdicts["n_defective"] == result["n_images"] == len(result["images"])
    # beside them, the verdicts the package gave before seg: its own score at its own threshold
    before = result["training_free_verdicts"]
    assert before["threshold"] == package.manifest.threshold
    assert (before["n_good"], before["n_defective"]) == (verdicts["n_good"], verdicts["n_defective"])
    assert 0 <= before["good_rejected"] <= before["n_good"]
    assert 0 <= before["defective_passed"] <= before["n_defective"]

    # the whole test split includes the pseudo-labelled images: where seg judges, evaluate says how many
    whole = tmp_path / "metrics.json"
    assert adinspect_main(["evaluate", *common, "--json", str(whole)]) == 0
    assert ("n_pseudo_labelled" in json.loads(whole.read_text())) == serving["served"]
    assert _run("train-seg", *common, *seg, "--resume", "--serve", "seg") == 0  # decisions only
    assert "seg" in ModelPackage.load(trained).manifest.optional_models  # verified: the card's checksum too
    card = (trained / "model_card.md").read_text()
    assert card.count("## ADClick-Seg") == 1 and "- served: **yes**" in card and "set by the user" in card
    assert adinspect_main(["evaluate", *common, "--json", str(whole)]) == 0
    assert json.loads(whole.read_text())["n_pseudo_labelled"] == len(labels["images"])


def test_seg_fusion_none_serves_the_probability_and_an_unknown_fusion_is_refused_first(
    trained: Path, synthetic_root: Path, tmp_path: Path, train_package
) -> None:
    seg = ["--pretrain-steps", "2", "--no-finetune", "--batch-size", "4", "--n-synthetic", "8"]
    model = train_package(trained, tmp_path / "plain", "train-seg", synthetic_root, *seg, "--fusion", "none")
    report = json.loads((model / "seg_model.json").read_text())
    assert report["fusion"] == {"how": "none", "rule": "set by the user", "kind": "none",
                                "map": "seg probability", "free_threshold": None}  # fmt: skip
    assert 0 <= report["calibration"]["threshold"] <= 1  # a probability again
    before = (model / "seg_model.json").read_bytes()
    with pytest.raises(InputError, match="fusion 'mean'"):
        train_seg(model, synthetic_root, SegTrainSettings(fusion="mean"), progress=False)
    assert (model / "seg_model.json").read_bytes() == before


def test_bad_click_file_writes_nothing(trained: Path, synthetic_root: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in trained.iterdir())
    labels_before = (trained / "labels").exists() and sorted(p.name for p in (trained / "labels").iterdir())
    bad = tmp_path / "clicks.json"
    image = next((synthetic_root / "test").glob("*/000.png"))
    entry = {
        "image": str(image),
        "defect_type": "no_such_type",
        "clicks": [{"x": 1, "y": 1, "positive": True}],
    }
    bad.write_text(json.dumps({"images": [entry]}))
    with pytest.raises(InputError, match="unknown defect type"):
        _run("label", "--model", str(trained), "--data", str(synthetic_root), "--clicks", str(bad), "--quiet")
    assert sorted(p.name for p in trained.iterdir()) == before
    labels_after = (trained / "labels").exists() and sorted(p.name for p in (trained / "labels").iterdir())
    assert labels_after == labels_before


def test_simulated_labels_report_their_pixel_ap_against_the_ground_truth(
    trained: Path, synthetic_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`label --simulate` says how well its soft labels rank pixels (what a seg network trained on
    them can learn at best): the figure recomputed here from the labels written and the masks."""
    import numpy as np

    from adinspect.data.datasets import open_dataset
    from adinspect.evaluation.evaluate import load_mask_at
    from adinspect.metrics import pixel_ap
    from adinspect.train.labeling import load_labels

    assert _run("label", "--model", str(trained), "--data", str(synthetic_root), "--simulate", "2") == 0
    said = capsys.readouterr().out
    assert "; mean IoU vs ground truth " in said and ", pixel AP " in said
    printed = float(said.split(", pixel AP ")[1].split(";")[0].split()[0])
    meta, soft = load_labels(trained)
    samples = {str(s.path): s for s in open_dataset(synthetic_root).test}
    shape = tuple(meta["input_shape"])
    truth = []
    for record in meta["images"]:
        sample = samples[record["image"]]
        truth.append(load_mask_at(sample, read_image(sample.path).shape[:2], shape))
    recomputed = pixel_ap(soft.numpy(), np.stack(truth))  # the labels as stored (half precision)
    assert 0 < printed <= 1 and abs(printed - recomputed) < 0.01


def test_label_needs_exactly_one_click_source(trained: Path, synthetic_root: Path) -> None:
    with pytest.raises(InputError, match="exactly one"):
        _run("label", "--model", str(trained), "--data", str(synthetic_root))


def test_messy_ground_truth_is_skipped_not_fatal(
    trained: Path, synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty and a missing mask: evaluate-clicks and label --simulate warn once, count, go on."""
    import numpy as np

    from adinspect.imageio import read_mask, write_mask

    data = tmp_path / "widget"
    shutil.copytree(synthetic_root, data)
    masks = sorted((data / "ground_truth").glob("*/*_mask.png"))
    write_mask(masks[0], np.zeros(read_mask(masks[0]).shape, bool))
    masks[1].unlink()
    model = tmp_path / "model"
    shutil.copytree(trained, model)
    common = ["--model", str(model), "--data", str(data), "--quiet"]

    out = tmp_path / "clicks.json"
    assert _run("evaluate-clicks", *common, "--json", str(out), "--max-clicks", "2") == 0
    metrics = json.loads(out.read_text())
    assert metrics["n_skipped"] == 2 and {s["reason"] for s in metrics["skipped"]} == {
        "empty ground-truth mask",
        "no ground-truth mask",
    }
    assert metrics["n_images"] == len(list((synthetic_root / "ground_truth").glob("*/*.png"))) - 2
    assert _run("label", *common, "--simulate", "1", "--subset", "all") == 0
    labels = json.loads((model / "labels" / "labels.json").read_text())
    assert len(labels["skipped"]) == 2 and len(labels["images"]) == metrics["n_images"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2  # one line per command


def test_init_starts_from_another_packages_weights(
    trained: Path, fitted_package: Path, synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import torch
    from safetensors.torch import load_file

    model = tmp_path / "widget"
    shutil.copytree(fitted_package, model)
    common = ["--model", str(model), "--data", str(synthetic_root), "--quiet"]
    with pytest.raises(InputError, match="no trained click_model.safetensors"):
        _run("train-click", *common, "--steps", "1", "--init", str(fitted_package))
    # lr 0: the weights stay exactly those of the other package (the residual scale is this product's)
    tiny = ["--steps", "1", "--n-synthetic", "8", "--lr", "0"]  # the batch by the input's size
    tiny += ["--validation-images", "0"]
    assert _run("train-click", *common, *tiny, "--init", str(trained)) == 0
    meta = json.loads((model / "click_model.json").read_text())
    assert meta["init"] == f"{trained}/click_model.safetensors"
    assert meta["settings"]["batch_size"] == batch_for(tuple(meta["trained_at"]))
    assert f"ADClick trained: 1 steps of {meta['settings']['batch_size']}," in capsys.readouterr().out
    mine, theirs = (
        load_file(str(model / "click_model.safetensors")),
        load_file(str(trained / "click_model.safetensors")),
    )
    # (the EMA blend of identical weights may round in the last bit)
    assert all(torch.allclose(mine[k], theirs[k], atol=1e-6) for k in theirs if k != "encoder.residual_scale")

    seg = ["--pretrain-steps", "1", "--batch-size", "4", "--n-synthetic", "8", "--no-finetune"]
    assert _run("train-seg", *common, *seg, "--init", str(trained)) == 0
    assert json.loads((model / "seg_model.json").read_text())["init"].startswith(f"{trained}/")


def test_init_checks_the_network_sizes(trained: Path, fitted_package: Path) -> None:
    from adinspect.train.residual_data import load_context
    from adinspect.train.warm_start import warm_start_weights

    arch = json.loads((trained / "click_model.json").read_text())["arch"]
    ctx = load_context(fitted_package)
    state, source = warm_start_weights(ctx, trained, ("click_model.safetensors",), arch)
    assert source.endswith("click_model.safetensors") and state
    with pytest.raises(InputError, match="network sizes"):
        warm_start_weights(ctx, trained, ("click_model.safetensors",), {**arch, "dims": [8, 16, 32]})
    image_branch = {**arch, "image_stem": 32, "refine_full": True}  # a residual-only model into it
    with pytest.raises(InputError, match="network sizes"):
        warm_start_weights(ctx, trained, ("click_model.safetensors",), image_branch)
    assert warm_start_weights(ctx, trained, ("click_model.safetensors",), image_branch, False)[0]
