"""`adinspect annotate` on the command line: bad input is one `error:` line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from adinspect.cli import main


def test_annotate_without_a_package_is_a_clear_error(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "annotate",
            "--model",
            str(tmp_path / "nope"),
            "--data",
            str(synthetic_root),
            "--out",
            str(tmp_path / "l"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "is not a model package" in err and "Traceback" not in err


def test_train_with_nothing_accepted_is_a_clear_error(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels"
    code = main(
        [
            "annotate",
            "--model",
            str(tmp_path / "m"),
            "--data",
            str(synthetic_root),
            "--out",
            str(labels),
            "--train",
        ]
    )
    assert code == 2 and "nothing accepted yet" in capsys.readouterr().err
    assert sorted(p.name for p in labels.iterdir()) == [".lock", "clicks.json"]


def test_labels_of_another_dataset_are_refused(synthetic_root: Path, tmp_path: Path) -> None:
    from adinspect.annotate.store import LabelStore
    from adinspect.errors import InputError

    LabelStore(tmp_path / "labels", synthetic_root).mark(_item(synthetic_root), "skipped")
    with pytest.raises(InputError, match="pick another --out"):
        LabelStore(tmp_path / "labels", tmp_path).load()


def _item(root: Path):  # type: ignore[no-untyped-def]
    from adinspect.annotate.queue import build_queue

    return build_queue(root)[0]
