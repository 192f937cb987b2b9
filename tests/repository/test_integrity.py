"""The repository manifest: `serve` refuses tampered, missing or added files (no server needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adinspect.repository.build import build_repository
from adinspect.repository.integrity import MARKER, RepositoryIntegrityError, verify_repository
from adinspect.repository.packages import RepositoryError


@pytest.fixture()
def repo(fitted_package: Path, tmp_path: Path) -> Path:
    out = tmp_path / "repo"
    build_repository([fitted_package], "cpu", out)
    return out


def test_a_fresh_build_verifies_and_lists_every_file(repo: Path) -> None:
    manifest = verify_repository(repo)
    listed = set(manifest.files)
    on_disk = {p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file() and p.name != MARKER}
    assert listed == on_disk
    assert "inspect_widget/1/adinspect/repository/steps.py" in listed  # the library the model imports


def test_a_flipped_byte_is_named(repo: Path) -> None:
    target = repo / "inspect_widget" / "1" / "model.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(RepositoryIntegrityError, match=r"inspect_widget/1/model.onnx differs"):
        verify_repository(repo)


def test_missing_and_added_files_are_named(repo: Path) -> None:
    (repo / "inspect_widget" / "1" / "monitoring.json").unlink()
    with pytest.raises(RepositoryIntegrityError, match=r"inspect_widget/1/monitoring.json is missing"):
        verify_repository(repo)


def test_an_added_model_file_is_refused(repo: Path) -> None:
    (repo / "inspect_widget" / "1" / "adinspect" / "evil.py").write_text("import os\n")
    with pytest.raises(RepositoryIntegrityError, match=r"evil.py was added after"):
        verify_repository(repo)


def test_a_repository_without_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    with pytest.raises(RepositoryIntegrityError, match="no adinspect_repository.json"):
        verify_repository(tmp_path)


def test_a_crafted_marker_cannot_delete_a_sibling(fitted_package: Path, tmp_path: Path) -> None:
    sibling = tmp_path / "precious"
    sibling.mkdir()
    (sibling / "data.txt").write_text("keep me")
    out = tmp_path / "repo"
    out.mkdir()
    marker = {
        "adinspect_version": "x",
        "flavor": "cpu",
        "models": ["../precious"],
        "products": {},
        "settings": {},
    }
    (out / MARKER).write_text(json.dumps(marker))
    with pytest.raises(RepositoryError, match="model name '../precious'"):
        build_repository([fitted_package], "cpu", out)
    assert (sibling / "data.txt").read_text() == "keep me"


def test_the_check_runs_as_a_module_for_servers_started_another_way(repo: Path) -> None:
    """What the Kubernetes init container runs: exit 0 on a fresh build, 1 naming the file after."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "adinspect.repository.integrity", str(repo)]
    ok = subprocess.run(command, capture_output=True, text=True, cwd=repo.parent, check=False)
    assert ok.returncode == 0 and "files match" in ok.stdout
    (repo / "inspect_widget" / "1" / "model.py").write_text("# edited\n")
    bad = subprocess.run(command, capture_output=True, text=True, cwd=repo.parent, check=False)
    assert bad.returncode == 1 and "inspect_widget/1/model.py differs" in bad.stderr
