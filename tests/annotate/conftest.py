"""Fixtures of the labelling tool's tests: a running server over the package with a tiny ADClick
(click_package, in tests/conftest.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the annotate extra (starlette, uvicorn) is not installed")


@pytest.fixture()
def labels_dir(tmp_path: Path) -> Path:
    return tmp_path / "labels"


@pytest.fixture()
def server(click_package: Path, synthetic_root: Path, labels_dir: Path) -> Iterator[str]:
    from adinspect.annotate.server import ServerThread
    from adinspect.annotate.service import Annotator

    with ServerThread(Annotator(click_package, synthetic_root, labels_dir)) as url:
        yield url


def request(
    url: str, body: object = None, *, raw: bytes | None = None, content_type: str = "application/json",
    headers: dict | None = None,
) -> tuple[int, dict | bytes]:  # fmt: skip
    """(status, JSON or bytes) of a GET (no body) or POST; 4xx answers are returned, not raised."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data, {"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, payload, kind = r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        status, payload, kind = exc.code, exc.read(), exc.headers.get("content-type", "")
    return status, json.loads(payload) if kind.startswith("application/json") else payload
