"""Supervising a started tritonserver: block until it exits or this process is asked to stop, and
restart it on failure (`adinspect serve --restart on-failure`)."""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType
from typing import Protocol, TextIO


class Supervised(Protocol):
    """What supervision needs of a server (adinspect.server.launch.TritonServer)."""

    grpc_port: int
    http_port: int
    starts: int

    def start(self) -> None: ...

    def stop(self) -> int | None: ...

    def wait(self) -> int: ...


def serve_forever(
    server: Supervised, restart: str = "no", max_restarts: int = 5, log: TextIO | None = None
) -> int:
    """Block until the server exits or this process gets SIGINT/SIGTERM, then stop it.

    Installs SIGTERM/SIGINT handlers only while it runs (main thread only) and restores them.

    Args:
        restart: "on-failure" starts tritonserver again (same ports, shared memory cleaned) when it
            exits on its own with a non-zero code or a signal, at most `max_restarts` times in a
            row, waiting 1, 2, 4 ... s between tries; "no" returns its exit code.
        log: where each restart is reported (stderr by default).

    Returns:
        0 after a requested shutdown, else tritonserver's own exit code.
    """
    if restart not in ("no", "on-failure"):
        raise ValueError(f"restart must be 'no' or 'on-failure', got {restart!r}")

    class _Shutdown(Exception):
        pass

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise _Shutdown(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, _raise) for sig in (signal.SIGTERM, signal.SIGINT)}
    restarts = 0
    try:
        while True:
            code = server.wait()
            if restart == "no" or code == 0 or restarts >= max_restarts:
                return code
            restarts += 1
            _restart(server, code, restarts, max_restarts, log or sys.stderr)
    except _Shutdown:
        server.stop()
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _restart(server: Supervised, code: int, number: int, limit: int, log: TextIO) -> None:
    """Clean up after a dead tritonserver (its stubs, shared memory) and start it again."""
    how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    server.stop()
    wait = min(30.0, 2.0 ** (number - 1))
    print(
        f"adinspect serve: tritonserver died ({how}); restart {number}/{limit} in {wait:.0f} s "
        f"on the same ports (grpc {server.grpc_port}, http {server.http_port})",
        file=log,
        flush=True,
    )
    time.sleep(wait)
    server.start()
    print(f"adinspect serve: tritonserver ready again (start {server.starts})", file=log, flush=True)
