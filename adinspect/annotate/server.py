"""Running the annotate app with uvicorn: in the foreground (the CLI) or in a thread (tests, bench)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from adinspect.annotate.app import create_app
from adinspect.annotate.service import Annotator

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def allowed_hosts(host: str) -> list[str] | None:
    """Host headers accepted: the loopback names when bound to loopback (no DNS rebinding), else any."""
    return ["127.0.0.1", "localhost", "[::1]", "::1"] if host in LOOPBACK else None


def make_server(annotator: Annotator, host: str, port: int) -> uvicorn.Server:
    app = create_app(annotator, allowed_hosts(host))
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerThread:
    """`with ServerThread(annotator) as url:` serves on a free loopback port until the block ends."""

    def __init__(self, annotator: Annotator, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.server = make_server(annotator, host, port or free_port(host))
        self.url = f"http://{host}:{self.server.config.port}"
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the annotate server did not start on {self.url}")
            time.sleep(0.02)
        return self.url

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.should_exit = True
        self._thread.join(10)
