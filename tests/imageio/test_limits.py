"""Decoding is bounded before it starts: bombs are refused from their header, a file is read only
after its header passed, and `decode_cost` bounds the memory a decode really takes (peak RSS)."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from adinspect.benchmarks.bombs import bombs, png_bomb
from adinspect.imageio import (
    DEFAULT_DECODE_BUDGET,
    ImageReadError,
    decode_cost,
    decode_image,
    read_image,
    read_image_header,
)
from adinspect.imageio.convert import CHUNK_PIXELS, to_rgb8

ENCODED_BOMBS = [b for b in bombs() if isinstance(b.data, bytes)]


@pytest.mark.parametrize("bomb", ENCODED_BOMBS, ids=lambda b: b.name)
def test_every_bomb_is_refused_from_its_header_without_decoding(bomb) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ImageReadError, match="pixels accepted|MiB allowed per image") as info:
            decode_image(bomb.data, name=bomb.name)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value).startswith(f"{bomb.name}: ")
    assert peak < 1 << 20, f"{peak} bytes allocated to refuse {bomb.name}"


def test_a_file_over_the_budget_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(png_bomb() + bytes(30 << 20))  # 30 MB the reader must never load
    tracemalloc.start()
    try:
        with pytest.raises(ImageReadError, match="MiB allowed per image"):
            read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_the_budget_can_be_raised_or_lowered() -> None:
    small = png_bomb(300, 200)
    cost = decode_cost(read_image_header(small), len(small))
    assert decode_image(small, max_bytes=cost).shape == (200, 300, 3)
    with pytest.raises(ImageReadError, match=f"about {cost / 2**20:.0f} MiB, more than the 1 MiB"):
        decode_image(small, max_bytes=1 << 20)
    assert cost < DEFAULT_DECODE_BUDGET


def test_chunked_conversion_equals_the_whole_array_formula() -> None:
    rng = np.random.default_rng(0)
    width = 1024
    raw = rng.integers(0, 65536, (CHUNK_PIXELS // width * 2 + 7, width, 4), dtype=np.uint16)
    color = raw[:, :, 2::-1].astype(np.int64)
    alpha = raw[:, :, 3:4].astype(np.int64)
    expected = (((color * alpha + 32767) // 65535 + 128) // 257).astype(np.uint8)
    assert np.array_equal(to_rgb8(raw), expected)
    gray = raw[:, :, 0]
    assert np.array_equal(to_rgb8(gray), np.repeat(((gray.astype(np.int64) + 128) // 257)[:, :, None], 3, 2))


_MEASURE = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
import image_files as F
from adinspect.imageio import decode_cost, decode_image, read_image_header
side = 2000
data = {make}
header = read_image_header(data)
def status(field):
    line = next(l for l in open("/proc/self/status") if l.startswith(field))
    return int(line.split()[1]) * 1024
open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current RSS
before = status("VmRSS")
decode_image(data, max_bytes=None)
peak = status("VmHWM") - before
print(json.dumps({{"peak": peak, "estimate": decode_cost(header, len(data))}}))
"""

CASES = {
    "png_16bit_rgba": "F.png(side, side, 16, 6)",
    "png_16bit_gray": "F.png(side, side, 16, 0)",
    "png_8bit_gray": "F.png(side, side, 8, 0)",
    "jpeg_rgb": "F.jpeg(size=(side, side))",
    "tiff_rgb_directory_last": "F.tiff(side, side, bytes(side * side * 3), samples=3, photometric=2, "
    "ifd_last=True)",
    "bmp_32bit_bitfields": "F.bmp(side, side, 32, compression=3, info=124)",
}


@pytest.mark.parametrize("make", CASES.values(), ids=list(CASES))
def test_decode_cost_bounds_the_peak_memory_of_a_real_decode(make: str) -> None:
    """In a fresh process (its peak RSS reset first): what a decode adds at most is what
    `decode_cost` said."""
    pytest.importorskip("tifffile")  # image_files needs it
    code = _MEASURE.format(tests=str(Path(__file__).resolve().parents[1]), make=make)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    assert 0 < measured["peak"] <= measured["estimate"], measured
