"""Eq. 3's strict `< σ` against the code's `<= σ` (issue 9, item 8): what each preset matches."""

from __future__ import annotations

import math

from adinspect.config import preset_config
from adinspect.residual.model import disc_offsets


def _strict(sigma: float) -> set[tuple[int, int]]:
    r = math.ceil(sigma)
    return {
        (dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx < sigma * sigma
    }


def test_paper_preset_disc_is_eq3_exactly() -> None:
    sigma = preset_config("paper").method.sigma
    assert set(disc_offsets(sigma)) == _strict(sigma) and len(disc_offsets(sigma)) == 37


def test_cpu_preset_disc_is_eq3_for_a_radius_just_above_two() -> None:
    sigma = preset_config("cpu").method.sigma
    assert len(disc_offsets(sigma)) == 13 and len(_strict(sigma)) == 9
    assert set(disc_offsets(sigma)) == _strict(2.2)


def test_paper_preset_averages_layers_at_the_authors_width() -> None:
    method = preset_config("paper").method
    assert method.combine == "mean" and method.layer_dim == 512
