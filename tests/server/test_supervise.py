"""The supervisor's rules without a tritonserver: crash loops at start-up, the restart budget and its
refill, stop requests at any moment, and signal handlers that never raise."""

from __future__ import annotations

import io
import os
import signal
import threading

import pytest

from adinspect.server.supervise import RestartPolicy, StopRequest, Supervisor, stop_on_signals
from adinspect.server.triton_log import ServerStartError


class FakeServer:
    """Each start follows the script: "fail" (dies before ready), or the polls it stays up for
    (None: until stopped), then it exits with code 1."""

    grpc_port, http_port = 8001, 8000

    def __init__(self, script: list[str | int | None]) -> None:
        self.script = list(script)
        self.starts = self.stops = 0
        self.polls_left: int | None = None
        self.up = False

    def start(self, should_stop=None) -> None:
        self.starts += 1
        step = self.script.pop(0)
        if step == "fail":
            raise ServerStartError(
                "tritonserver exited with code 1 before becoming ready", ["error: boom"], 1
            )
        self.up, self.polls_left = True, step  # type: ignore[assignment]

    def poll(self) -> int | None:
        if not self.up:
            return 0
        if self.polls_left is None:
            return None
        self.polls_left -= 1
        if self.polls_left < 0:
            self.up = False
            return 1
        return None

    def stop(self) -> int | None:
        self.stops += 1
        self.up = False
        return None


def _run(server: FakeServer, policy: RestartPolicy, clock=None, stop: StopRequest | None = None):
    log = io.StringIO()
    options = {"clock": clock} if clock else {}
    code = Supervisor(server, policy, stop or StopRequest(), log, **options).run()
    return code, log.getvalue()


def test_a_crash_loop_at_start_up_is_restarted_until_it_serves() -> None:
    server = FakeServer(["fail"] * 5 + [0])  # five start-up crashes, then it serves and dies
    code, log = _run(server, RestartPolicy("on-failure", max_restarts=5, backoff_s=0))
    assert server.starts == 6
    assert "restart 5/5" in log and log.count("did not start: error: boom") == 5
    assert "giving up" in log and code == 1  # the death after serving found the budget spent


def test_a_sixth_start_up_crash_gives_up_with_its_exit_code() -> None:
    server = FakeServer(["fail"] * 6)
    code, log = _run(server, RestartPolicy("on-failure", max_restarts=5, backoff_s=0))
    assert (code, server.starts) == (1, 6) and "failed 6 times in a row; giving up" in log


def test_without_restart_the_first_failed_start_is_the_error() -> None:
    with pytest.raises(ServerStartError):
        _run(FakeServer(["fail"]), RestartPolicy("no"))
    assert _run(FakeServer([2]), RestartPolicy("no"))[0] == 1  # it died: its own exit code


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 10.0  # every look at the clock is 10 s later
        return self.now


def test_the_budget_refills_after_a_healthy_period() -> None:
    """max_restarts 1: each death after a long healthy run gets a restart again."""
    policy = RestartPolicy("on-failure", max_restarts=1, backoff_s=0, budget_reset_s=5)
    server = FakeServer([3, 3, 3, 3, "fail"])
    code, log = _run(server, policy, clock=Clock())
    assert log.count("restart 1/1") == 4 and server.starts == 5 and code == 1


def test_the_budget_does_not_refill_before_the_healthy_period() -> None:
    policy = RestartPolicy("on-failure", max_restarts=1, backoff_s=0, budget_reset_s=1000)
    server = FakeServer([3, 3, 3])
    code, log = _run(server, policy, clock=Clock())
    assert server.starts == 2 and log.count("restart 1/1") == 1 and "giving up" in log


def test_a_stop_request_ends_a_back_off_at_once() -> None:
    stop = StopRequest()
    server = FakeServer([0, None])
    threading.Timer(0.3, stop.set).start()
    code, log = _run(server, RestartPolicy("on-failure", backoff_s=60), stop=stop)
    assert code == 0 and server.starts == 1 and "restart 1/5 in 30 s" in log


def test_any_number_of_signals_only_set_the_flag() -> None:
    stop = StopRequest()
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(stop):
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM, signal.SIGTERM):
            os.kill(os.getpid(), sig)  # handled between bytecodes: no exception, no KeyboardInterrupt
        assert stop.wait(1.0)
    assert stop.signals == ["SIGTERM", "SIGINT", "SIGTERM", "SIGTERM"]
    assert signal.getsignal(signal.SIGTERM) is before


def test_policy_values_are_checked() -> None:
    with pytest.raises(ValueError, match="restart must be"):
        RestartPolicy("always")
    assert [RestartPolicy(backoff_s=1).backoff(n) for n in (1, 2, 3, 6, 9)] == [1, 2, 4, 30, 30]
