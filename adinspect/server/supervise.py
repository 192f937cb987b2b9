"""Keeping a tritonserver up (`adinspect serve --restart on-failure`) and stopping it on request.

`StopRequest` is what SIGTERM and SIGINT do: their handler only sets a flag, so any number of them,
at any moment (during start-up, while draining, while killing), leads to the same one clean stop:
the supervisor notices the flag, and whoever owns the server calls `stop()` once.

`Supervisor.run` starts the server (unless it runs already) and watches it. With restart
"on-failure", a server that dies, whether while serving or during start-up (a crash loop), is
cleaned up and started again on the same ports after a back-off of 1, 2, 4 ... s (at most 30), at
most `max_restarts` times in a row; a server that stayed ready for `budget_reset_s` (10 min) before
it died has its whole budget again. A start that cannot succeed (no tritonserver, a repository its
manifest does not vouch for) is not a crash: its error propagates at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TextIO

from adinspect.server.triton_log import ServerStartError


class StopRequested(Exception):
    """Raised by a start that noticed the stop request: nothing is left running."""


class Supervised(Protocol):
    """What supervision needs of a server (adinspect.server.launch.TritonServer)."""

    grpc_port: int
    http_port: int
    starts: int

    def start(self, should_stop: Callable[[], bool] | None = None) -> None: ...

    def stop(self) -> int | None: ...

    def poll(self) -> int | None: ...


class StopRequest:
    """Set by SIGTERM/SIGINT (or by calling `set`); waited on by the supervisor. Never raises."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signals: list[str] = []

    def handle(self, signum: int, frame: object) -> None:
        """The signal handler: record and set, nothing else (no I/O, no exception)."""
        self.signals.append(signal.Signals(signum).name)
        self._event.set()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True (at once) when a stop is requested."""
        return self._event.wait(seconds)


@contextlib.contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[StopRequest]:
    """SIGTERM and SIGINT set `stop` while the block runs (main thread only); the previous handlers
    come back after it, i.e. after the server was stopped inside it."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, stop.handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass(frozen=True)
class RestartPolicy:
    """When the supervisor starts a dead server again (`serve --restart ... --max-restarts ...`)."""

    restart: str = "no"  # "no" or "on-failure"
    max_restarts: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    budget_reset_s: float = 600.0

    def __post_init__(self) -> None:
        if self.restart not in ("no", "on-failure"):
            raise ValueError(f"restart must be 'no' or 'on-failure', got {self.restart!r}")
        if self.max_restarts < 0 or self.backoff_s < 0 or self.budget_reset_s <= 0:
            raise ValueError(
                f"restart policy needs max_restarts, backoff_s >= 0 and budget_reset_s > 0: {self}"
            )

    def backoff(self, restart: int) -> float:
        """Seconds before restart number `restart` (1, 2, ...): doubling from backoff_s, capped."""
        return min(self.max_backoff_s, self.backoff_s * 2.0 ** (restart - 1))


class Supervisor:
    """Start a server and keep it up under a `RestartPolicy` until `stop` is set.

    Args:
        on_ready: called after the first successful start (`serve` prints "Triton ready ...").
        log: where deaths and restarts are reported, one line each.
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        server: Supervised,
        policy: RestartPolicy,
        stop: StopRequest,
        log: TextIO,
        on_ready: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server, self.policy, self.stop, self.log = server, policy, stop, log
        self.on_ready, self.clock = on_ready, clock
        self.restarts = 0  # in a row: back to 0 after a healthy period
        self.ready_since = clock()
        self.served = False

    def run(self) -> int:
        """Block until a stop request (0) or a death that is not restarted (its exit code).

        The server is left as it is (running or dead): its owner calls `stop()`.

        Raises:
            ServerStartError: the first start failed and restart is "no".
        """
        self.served = self.served or bool(self.server.starts)
        code = self._start(first=True) if not self.server.starts else self.server.poll()
        while not self.stop.is_set():
            if code is None:
                code = self._watch()
                if code is None:
                    break
                if self.clock() - self.ready_since >= self.policy.budget_reset_s:
                    self.restarts = 0  # it served long enough: a full budget again
            if self.policy.restart == "no" or code == 0:
                return code
            if self.restarts >= self.policy.max_restarts:
                self._say(
                    f"tritonserver failed {self.restarts + 1} times in a row; giving up (exit code {code})"
                )
                return code
            self.restarts += 1
            wait = self.policy.backoff(self.restarts)
            self._say(
                f"restart {self.restarts}/{self.policy.max_restarts} in {wait:g} s on the same ports "
                f"(grpc {self.server.grpc_port}, http {self.server.http_port})"
            )
            self.server.stop()  # the dead one's stubs and shared memory
            if self.stop.wait(wait):
                break
            code = self._start()
        return 0

    def _watch(self) -> int | None:
        """The server's exit code once it dies, None once a stop is requested."""
        while (code := self.server.poll()) is None:
            if self.stop.wait(0.2):
                return None
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        self._say(f"tritonserver died ({how})")
        return code

    def _start(self, first: bool = False) -> int | None:
        """Start; None when ready (or stopped meanwhile), else the failed start's exit code."""
        try:
            self.server.start(self.stop.is_set)
        except StopRequested:
            return None
        except ServerStartError as exc:
            if first and self.policy.restart == "no":
                raise
            self._say(f"tritonserver did not start: {exc.reason or str(exc).splitlines()[0]}")
            return exc.returncode or 1
        self.ready_since = self.clock()
        if self.served:
            self._say(f"tritonserver ready again (start {self.server.starts})")
        elif self.on_ready is not None:
            self.on_ready()
        self.served = True
        return None

    def _say(self, text: str) -> None:
        print(f"adinspect serve: {text}", file=self.log, flush=True)
