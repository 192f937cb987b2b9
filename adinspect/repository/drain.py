"""How `adinspect serve` drains a server before it stops it, shared with the Python-backend models.

`serve` names a drain file in the models' environment (`DRAIN_FILE_ENV`). While a model instance
works on a batch it keeps a busy marker beside that file (`DrainGate.batch`), created *before* it
looks for the drain file. So once `serve` has created the drain file, every batch that did not see
it has a marker on disk until it has answered, and every later batch answers UNAVAILABLE with a
retry hint. `serve` waits until no marker is left (`busy_markers`), then kills the server at once:
Triton's own SIGTERM would unload the models while its endpoints still answer, and clients would
get NOT_FOUND ("has no available versions") for seconds instead of UNAVAILABLE.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

DRAIN_FILE_ENV = "ADINSPECT_DRAIN_FILE"
"""Environment variable (set by `adinspect serve` for Triton) naming the file whose existence means
"draining": the first Python step (inspect_<p> or preprocess) then refuses new requests with UNAVAILABLE."""

DRAINING_MESSAGE = "server is draining (shutting down); retry in 1 s (another replica, or this one restarted)"


class DrainGate:
    """A model instance's side of the drain protocol (one per stub process)."""

    def __init__(self, drain_file: str | None = None) -> None:
        self.drain_file = os.environ.get(DRAIN_FILE_ENV, "") if drain_file is None else drain_file
        self.marker = f"{self.drain_file}.busy.{os.getpid()}" if self.drain_file else ""

    @contextlib.contextmanager
    def batch(self) -> Iterator[bool]:
        """Hold the busy marker for the block; yields True when draining (answer UNAVAILABLE)."""
        if not self.drain_file:
            yield False
            return
        Path(self.marker).touch()
        try:
            yield os.path.exists(self.drain_file)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.marker)


def busy_markers(drain_file: Path) -> list[Path]:
    """The batches still being answered (their instances' markers)."""
    return sorted(drain_file.parent.glob(f"{drain_file.name}.busy.*"))
