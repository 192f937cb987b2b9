"""What a refused request leaves behind in the serving steps: nothing that holds its pixels (no
exception kept, no context chained), and never more of a client's value than `ECHO_CHARS`."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

from adinspect.benchmarks.bombs import bombs, png_bomb
from adinspect.geometry import PreprocessSpec
from adinspect.repository.steps import (
    ECHO_CHARS,
    ProductPipeline,
    ProductRequest,
    Refusal,
    RequestError,
    decode_request_image,
    parse_map_format,
    request_name,
)

SPEC = PreprocessSpec(image_size=64, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))


def _bytes(data: bytes) -> np.ndarray:
    return np.array([[data]], dtype=object)


def _pipeline() -> ProductPipeline:
    """A pipeline whose models are never reached: every request below is refused before them."""
    return ProductPipeline(spec=SPEC, max_pixels=40_000_000, backbone=None, residual=None)


@pytest.mark.parametrize("bomb", [b for b in bombs() if isinstance(b.data, bytes)], ids=lambda b: b.name)
def test_every_bomb_is_refused_by_the_request_decoder(bomb) -> None:
    with pytest.raises(RequestError, match="pixels accepted|MiB allowed per image") as info:
        decode_request_image(_bytes(bomb.data), None, 40_000_000, name="request cam-1")
    assert info.value.__context__ is None and info.value.__cause__ is None


def test_a_decoded_then_refused_image_is_freed_when_the_batch_ends() -> None:
    """7 rows of a million pixels: under the pixel limit, decoded (21 MB as RGB), then refused
    (H < 8). With the garbage collector off, only reference counting can free it: no cycle may."""
    width, height = 1_000_000, 7
    flat = png_bomb(width, height, depth=8, color=0)
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        answers = _pipeline().run([ProductRequest(_bytes(flat), None, None, name="thin.png")])
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gc.enable()
    assert isinstance(answers[0], Refusal) and "H, W >= 8" in answers[0].message
    assert peak > 3 * width * height, "the image was decoded"
    assert current < 1 << 20, f"{current} bytes still held after the request"


def test_a_long_map_format_is_refused_without_echoing_it() -> None:
    value = b"x" * 100_000
    with pytest.raises(RequestError) as info:
        parse_map_format(_bytes(value))
    message = str(info.value)
    assert "map_format must be one of" in message and "(100000 bytes)" in message
    assert len(message) < 200
    answers = _pipeline().run([ProductRequest(_bytes(b"png"), None, _bytes(value))])
    assert isinstance(answers[0], Refusal) and len(answers[0].message) < 200


def test_a_long_request_id_is_capped_in_every_message() -> None:
    name = request_name("a" * 20_000)
    assert name.startswith("request " + "a" * ECHO_CHARS + "…") and "(20000 characters)" in name
    assert request_name("") == "request (no id)" and request_name("cam-1/7") == "request cam-1/7"
