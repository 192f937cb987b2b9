"""The malformed-image corpus: what it holds, and that the request decoder refuses all of it."""

from __future__ import annotations

import numpy as np
import pytest

from adinspect.benchmarks.malformed import malformed_corpus, valid_variants
from adinspect.repository.steps import DEFAULT_MAX_PIXELS, RequestError, decode_request_image


def _decode(data):
    if isinstance(data, np.ndarray):
        return decode_request_image(None, data[None], DEFAULT_MAX_PIXELS)
    return decode_request_image(np.array([[data]], dtype=object), None, DEFAULT_MAX_PIXELS)


def test_corpus_is_large_and_named() -> None:
    corpus = malformed_corpus()
    assert len(corpus) >= 50
    assert len({item.name for item in corpus}) == len(corpus)
    kinds = {item.name.split("_")[0] for item in corpus}
    assert {"png", "png16", "jpeg", "bmp", "tiff", "raw", "empty"} <= kinds


@pytest.mark.parametrize("item", malformed_corpus(), ids=lambda item: item.name)
def test_every_malformed_image_is_refused(item) -> None:
    with pytest.raises(RequestError):
        _decode(item.data)


@pytest.mark.parametrize("item", valid_variants(), ids=lambda item: item.name)
def test_valid_controls_decode(item) -> None:
    image = _decode(item.data)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 8
