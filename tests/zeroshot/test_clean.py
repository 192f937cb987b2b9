"""`fit --clean`: the robust rule, and planted defective images dropped from a contaminated good set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from adinspect.zeroshot.clean import CLEANING_JSON, robust_z


def test_robust_z_ignores_a_minority_of_outliers():
    scores = np.array([1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 9.0, 8.0])
    z, median, mad = robust_z(scores)
    assert median == pytest.approx(1.025) and mad == pytest.approx(0.075)
    assert (z[:6] < 3).all() and (z[6:] > 50).all()


def test_robust_z_with_zero_mad_falls_back_to_std():
    z, _, mad = robust_z(np.array([1.0, 1.0, 1.0, 1.0, 5.0]))
    assert mad == 0.0 and np.isfinite(z).all() and z[-1] > 1.5


@pytest.fixture(scope="module")
def contaminated(synthetic_root, tmp_path_factory) -> tuple[Path, list[str]]:
    """The synthetic product with 6 of its defective test images copied into train/good (40 + 6)."""
    data = tmp_path_factory.mktemp("contaminated") / "widget"
    shutil.copytree(synthetic_root, data)
    defects = sorted(p for p in (data / "test").rglob("*.png") if p.parent.name != "good")[:6]
    planted = []
    for i, src in enumerate(defects):
        dst = data / "train" / "good" / f"planted_{i}.png"
        shutil.copy(src, dst)
        planted.append(str(dst))
    return data, planted


def test_fit_clean_drops_the_planted_images_and_says_so(contaminated, tmp_path, capsys):
    from adinspect.cli import main
    from adinspect.package import ModelPackage

    data, planted = contaminated
    out = tmp_path / "m"
    assert main(["fit", "--data", str(data), "--out", str(out), "--clean", "--no-auto", "--quiet"]) == 0
    package = ModelPackage.load(out)  # cleaning.json is covered by the manifest's checksums
    assert package.has(CLEANING_JSON)
    report = json.loads((out / CLEANING_JSON).read_text())
    dropped = {d["image"] for d in report["dropped"]}
    assert len(dropped & set(planted)) >= 5, (dropped, planted)
    assert len(dropped - set(planted)) <= 2, dropped
    kept = 46 - len(dropped)
    assert package.manifest.n_references == kept  # the bank keeps every good image it was not told to drop
    card = (out / "model_card.md").read_text()
    assert "## Cleaning" in card and "1.4826 * MAD" in card
    assert all(f"`{image}`" in card for image in dropped)  # every dropped image is named


def test_fit_without_clean_writes_no_cleaning_report(fitted_package):
    from adinspect.package import ModelPackage

    assert not ModelPackage.load(fitted_package).has(CLEANING_JSON)
    assert "## Cleaning" not in (fitted_package / "model_card.md").read_text()
