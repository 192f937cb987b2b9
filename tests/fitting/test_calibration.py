"""The threshold from every good image's out-of-fold score, for a target false-reject rate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adinspect.cli import main
from adinspect.fitting.calibration import calibrate, rate_statement
from adinspect.package import ModelPackage


def test_calibrate_sets_the_threshold_for_the_target_and_states_its_uncertainty() -> None:
    scores = np.arange(1.0, 201.0)
    names = [f"good_{i}.png" for i in range(200)]
    cal = calibrate(scores, names, 0.01, "leave-one-out")
    assert cal.threshold == 198.0  # floor(2) + 1 = the 3rd largest
    assert cal.false_rejects == 2 and cal.false_reject_rate == 0.01
    assert cal.rule.startswith("the 3rd largest of 200 good training images' out-of-fold scores")
    assert 0.01 < cal.false_reject_upper_95 < 0.04
    assert "200 good images cannot show 1.0%" in cal.statement
    small = calibrate(scores[:54], names[:54], 0.01, "leave-one-out")
    assert small.threshold == 54.0 and small.false_rejects == 0
    assert small.false_reject_upper_95 == pytest.approx(1 - 0.05 ** (1 / 54))
    assert "54 good images cannot show 1.0% (that needs at least 299" in small.statement
    wide = calibrate(scores, names, 0.1, "10-fold")
    assert wide.threshold == 180.0 and "cannot show" not in wide.statement  # 200 >= 29 could
    clean = rate_statement(0, 400, 0.01, "good images", "false-reject rate")  # no reject among 400
    assert clean.endswith("at most 0.7%, within the target 1.0%.")
    assert wide.evidence()["n_good"] == 200 and wide.evidence()["folds"] == "10-fold"


def test_out_of_fold_scores_are_honest_where_in_bank_scores_are_not(fitted_package, synthetic_root) -> None:
    """Every good image is in the bank: scored against it, each finds itself (~0); scored out of
    fold, as recorded, each scores like a new good part (test good images score alike)."""
    from adinspect.data.datasets import open_dataset
    from adinspect.runtime.inspector import Inspector

    cal = json.loads((fitted_package / "calibration.json").read_text())
    oof = np.array(cal["holdout_scores"])
    inspector = Inspector(fitted_package)
    in_bank = np.array(
        [inspector.inspect_file(synthetic_root / f).result.score for f in cal["holdout_files"][:6]]
    )
    assert cal["bank_index"] == list(range(len(oof))) and cal["folds"] == "leave-one-out"
    assert in_bank.max() < 0.05 * oof.min()  # a training image against a bank holding itself: ~0
    test_good = [s for s in open_dataset(synthetic_root).test if s.label == 0]
    fresh = np.array([inspector.inspect_file(s.path).result.score for s in test_good])
    assert 0.5 < np.median(oof) / np.median(fresh) < 2.0  # out of fold ~ unseen good parts


@pytest.mark.parametrize("value", ["0", "0.5", "-0.01", "0.7", "nan", "one percent"])
def test_fit_refuses_a_target_outside_zero_to_a_half(tmp_path, capsys, synthetic_root, value) -> None:
    out = tmp_path / "m"
    code = main(["fit", "--data", str(synthetic_root), "--out", str(out), "--target-frr", value])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --target-frr") and len(err.strip().splitlines()) == 1
    assert "strictly between 0 and 0.5" in err and not out.exists()


def test_package_records_the_target_and_evaluate_sets_it_beside_the_measured_rates(
    fitted_package, synthetic_root, tmp_path
) -> None:
    package = ModelPackage.load(fitted_package)
    evidence = package.manifest.threshold_evidence
    assert evidence is not None and evidence.target_frr == 0.01 and evidence.n_good == 40
    out = tmp_path / "metrics.json"
    args = ["evaluate", "--model", str(fitted_package), "--data", str(synthetic_root), "--json", str(out)]
    assert main([*args, "--quiet"]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["target_false_reject_rate"] == 0.01
    assert metrics["stated_false_reject_upper_95"] == evidence.false_reject_upper_95
    assert "false_reject_rate" in metrics and "miss_rate" in metrics
    assert "labelled_defects" not in metrics  # nothing labelled yet
