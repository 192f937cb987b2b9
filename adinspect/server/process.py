"""The tritonserver child process's surroundings: free ports, and dying with its launcher."""

from __future__ import annotations

import ctypes
import signal
import socket
import sys
from collections.abc import Callable


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def parent_death_signal() -> Callable[[], None] | None:
    """A pre-exec hook making the child die with SIGTERM when its launcher dies (Linux only).

    libc is loaded here, in the parent: the hook runs between fork and exec, where loading a
    library could deadlock on a lock another thread held at fork time.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
