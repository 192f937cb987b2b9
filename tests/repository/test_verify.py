"""`adinspect repo verify`: held-out images in-process vs through a real tritonserver."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from servers import clone_package, served

from adinspect.cli import main
from adinspect.repository.verify import MAX_IMAGES, compare, held_out_images


def _calibration(package: Path) -> dict:
    return json.loads((package / "calibration.json").read_text())


def test_fit_records_held_out_images_relative_to_the_data(fitted_package: Path, synthetic_root: Path) -> None:
    from adinspect.package import ModelPackage

    record = _calibration(fitted_package)
    files, digests = record["holdout_files"], record["holdout_sha256"]
    assert len(files) == len(digests) == len(record["holdout_scores"]) >= 4
    assert all(not Path(f).is_absolute() and (synthetic_root / f).is_file() for f in files)
    images = held_out_images(ModelPackage.load(fitted_package), synthetic_root)
    step = -(-len(files) // MAX_IMAGES)  # every good image is listed; verify replays a spread of them
    assert [i.name for i in images] == files[::step] and 4 <= len(images) <= MAX_IMAGES
    assert images[0].data == (synthetic_root / files[0]).read_bytes()


def test_a_changed_held_out_image_is_refused(
    fitted_package: Path, synthetic_root: Path, tmp_path: Path, capsys
):
    data = tmp_path / "data"
    shutil.copytree(synthetic_root, data)
    changed = data / _calibration(fitted_package)["holdout_files"][0]
    changed.write_bytes((data / _calibration(fitted_package)["holdout_files"][1]).read_bytes())
    code = main(
        ["repo", "verify", "--url", "127.0.0.1:1", "--models", str(fitted_package), "--data", str(data)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(changed) in err and "calibrated on" in err


def test_compare_flags_score_verdict_and_threshold_differences() -> None:
    local = (0.80, "pass", 1.0)
    assert compare("p", "a.png", local, (0.805, "pass", 1.0), tolerance=0.01).ok
    far = compare("p", "a.png", local, (0.83, "pass", 1.0), tolerance=0.01)
    assert not far.ok and "3.00% of the threshold" in (far.problem or "")
    flipped = compare("p", "a.png", local, (0.80, "fail", 0.5), tolerance=0.01)
    assert "verdict fail served" in (flipped.problem or "") and "threshold" in (flipped.problem or "")
    assert not compare("p", "a.png", local, (float("nan"), "fail", 1.0), tolerance=0.01).ok
    assert not compare("p", "a.png", local, None, tolerance=0.01, error="UNAVAILABLE").ok


@pytest.mark.triton
def test_verify_passes_for_the_served_package(
    triton_server, fitted_package, synthetic_root, tmp_path, capsys
):
    out = tmp_path / "verify.json"
    argv = ["repo", "verify", "--url", triton_server.grpc_url, "--models", str(fitted_package)]
    code = main([*argv, "--data", str(synthetic_root), "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    report = json.loads(out.read_text())
    rows = report["rows"]
    files = _calibration(fitted_package)["holdout_files"]
    assert [r["image"] for r in rows] == files[:: -(-len(files) // MAX_IMAGES)]
    assert min(r["local_score"] for r in rows) > 0.1 * report["rows"][0]["threshold"]  # mirrored: not ~0
    assert all(r["problem"] is None and r["served_verdict"] == r["local_verdict"] for r in rows)
    assert max(r["relative_diff"] for r in rows) <= report["tolerance"] == 0.01
    assert f"PASS: {len(rows)} of {len(rows)} held-out images agree" in printed
    # without --data the paths recorded at fit time are used (this host fitted it)
    assert main(argv) == 0


@pytest.mark.triton
def test_verify_fails_when_the_served_model_is_not_the_package(
    triton_server, fitted_package, synthetic_root, tmp_path, capsys
):
    """The server's `gadget` is the widget package with half its threshold; verify the package
    at the full threshold against it: every row reports the served threshold as different."""
    honest = clone_package(fitted_package, tmp_path / "gadget", "gadget", threshold_scale=1.0)
    out = tmp_path / "verify.json"
    argv = ["repo", "verify", "--url", triton_server.grpc_url, "--models", str(honest)]
    code = main([*argv, "--data", str(synthetic_root), "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 1
    rows = json.loads(out.read_text())["rows"]
    assert all("served threshold" in r["problem"] for r in rows)
    assert "FAIL:" in printed and "DIFFERS" in printed


@pytest.mark.triton
@pytest.mark.slow
def test_verify_uses_the_seg_threshold_for_a_package_with_adclick_seg(seg_package, synthetic_root, tmp_path):
    """With a trained ADClick-Seg the served score and threshold are the seg model's; verify
    compares those (the in-process inspector switches the same way)."""
    from adinspect.client import InspectionClient
    from adinspect.package import ModelPackage
    from adinspect.repository.settings import RepositorySettings
    from adinspect.repository.verify import verify_product
    from adinspect.runtime.seg import seg_info

    settings = RepositorySettings(python_instances=1, intra_op_threads=1)
    with served([seg_package], tmp_path, settings) as server:
        with InspectionClient(server.grpc_url, deadline_s=60) as client:
            rows = verify_product(client, seg_package, synthetic_root)
    info = seg_info(ModelPackage.load(seg_package))
    assert info is not None and rows and all(r.ok for r in rows), [r.problem for r in rows]
    assert all(r.threshold == pytest.approx(info.threshold) for r in rows)


def test_verify_and_gpu_modules_import_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import adinspect.repository.verify, adinspect.repository.gpu, adinspect.runtime.inspector\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'timm'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
