"""The drain protocol between `serve` and the models: a batch holds its busy marker for as long as it
runs, created before it looks for the drain file, so `serve` sees every batch that did not drain."""

from __future__ import annotations

from pathlib import Path

from adinspect.repository.drain import DrainGate, busy_markers


def test_a_batch_is_busy_until_it_answered_and_drains_once_asked(tmp_path: Path) -> None:
    drain_file = tmp_path / "draining"
    gate = DrainGate(str(drain_file))
    with gate.batch() as draining:
        assert not draining and busy_markers(drain_file) == [Path(gate.marker)]
        drain_file.touch()  # serve starts draining while this batch runs: it waits for it
        assert busy_markers(drain_file)
    assert busy_markers(drain_file) == []
    with gate.batch() as draining:
        assert draining  # later batches answer UNAVAILABLE
    assert busy_markers(drain_file) == []


def test_without_serve_there_is_no_marker(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ADINSPECT_DRAIN_FILE", raising=False)
    with DrainGate().batch() as draining:
        assert not draining
    assert not list(tmp_path.iterdir())
