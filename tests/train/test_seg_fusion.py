"""The fusion choice (`train.seg_fusion`): the map whose threshold lets fewer labelled defects pass;
on a tie, fuse only when it costs at most the margin on the labels."""

from __future__ import annotations

import numpy as np
import pytest

from adinspect.metrics import get_metric
from adinspect.train.seg_fusion import TOLERANCE, choose_fusion

pixel_ap = get_metric("pixel_ap")


def _labelled(n: int = 6, s: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Masks of n images, the first half defective (a 12 px square each), and a seg map that finds
    them with noise that overlaps the two classes."""
    rng = np.random.default_rng(0)
    masks = np.zeros((n, s, s), bool)
    for i in range(n // 2):
        masks[i, 4 + i : 16 + i, 5:17] = True
    return masks * 0.7 + rng.uniform(0, 0.9, masks.shape), masks


def test_fuses_when_it_costs_nothing_and_not_when_it_costs_more_than_the_margin() -> None:
    plain, masks = _labelled()
    better = choose_fusion(plain, np.where(masks, 1.0, plain * 0.5), masks)  # fusion removes the noise
    assert better["kind"] == "geometric" and better["how"] == "auto"
    assert better["pixel_ap"]["geometric"] > better["pixel_ap"]["none"]
    noisy = plain + np.random.default_rng(1).uniform(0, 1, plain.shape)  # fusion adds noise
    worse = choose_fusion(plain, noisy, masks)
    assert worse["pixel_ap"]["none"] - worse["pixel_ap"]["geometric"] > TOLERANCE
    assert worse["kind"] == "none"


def test_fuses_up_to_the_margin_and_not_beyond() -> None:
    plain, masks = _labelled()
    ap = pixel_ap(plain, masks)
    # lower the fused map's AP step by step until it is just within and then just beyond the margin
    fused = plain.copy()
    flat_f, flat_m = fused.reshape(-1), masks.reshape(-1)
    kinds = []
    for i in np.flatnonzero(~flat_m):
        flat_f[i] = 1.2  # one more false positive, above most defect pixels
        loss = round(ap - pixel_ap(fused, masks), 4)
        kinds.append((loss, choose_fusion(plain, fused, masks)["kind"]))
        if loss > TOLERANCE:
            break
    assert all(kind == ("geometric" if loss <= TOLERANCE else "none") for loss, kind in kinds)
    assert kinds[0][1] == "geometric" and kinds[-1][1] == "none"


def test_set_by_the_user_or_nothing_to_judge_by() -> None:
    plain, masks = _labelled()
    assert choose_fusion(plain, plain, masks, "none")["kind"] == "none"
    assert choose_fusion(None, None, None, "geometric") == {
        "how": "geometric",
        "rule": "set by the user",
        "kind": "geometric",
    }
    nothing = choose_fusion(None, None, None)
    assert nothing["kind"] == "none" and nothing["pixel_ap"] is None  # the paper's map, p alone
    assert choose_fusion(plain, plain, np.zeros_like(masks))["kind"] == "none"  # no labelled pixel
    with pytest.raises(ValueError, match="fusion 'mean'"):
        choose_fusion(plain, plain, masks, "mean")


def _blobbed(
    n_defective: int = 4, n_good: int = 20, s: int = 32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labelled defects (a 10 px square each, seg probability 0.8 there) then good images; the plain
    map has a confident blob (0.95) on two good images, which the fused map damps to 0.3 while it
    outlines the defects worse."""
    rng = np.random.default_rng(0)
    n = n_defective + n_good
    masks = np.zeros((n, s, s), bool)
    masks[:n_defective, 8:18, 8:18] = True
    plain = rng.uniform(0, 0.2, masks.shape) + masks * 0.6
    plain[n_defective : n_defective + 2, 20:26, 20:26] = 0.95  # blobs on good parts
    fused = plain.copy()
    fused[n_defective : n_defective + 2, 20:26, 20:26] = 0.3
    holes = masks & ((np.indices((s, s)).sum(0) % 2) == 0)[None]  # half of each defect's pixels
    fused[holes] = 0.05  # outlined worse (lower pixel AP), each defect's maximum still over the goods
    return plain, fused, masks


def test_the_verdict_decides_first_whatever_the_pixel_ap() -> None:
    plain, fused, masks = _blobbed()
    decision = choose_fusion(plain, fused, masks, n_labelled=4, target_frr=0.01)
    # the plain map's threshold sits on the good images' blobs (0.95): every labelled defect passes it
    assert decision["labelled_passed"] == {"none": 4, "geometric": 0}
    assert decision["pixel_ap"]["none"] - decision["pixel_ap"]["geometric"] > TOLERANCE
    assert decision["kind"] == "geometric"
    swapped = choose_fusion(fused, plain, masks, n_labelled=4, target_frr=0.01)  # the other way round
    assert swapped["labelled_passed"] == {"none": 0, "geometric": 4} and swapped["kind"] == "none"


def test_a_tie_on_the_verdict_goes_to_the_pixel_ap_rule() -> None:
    plain, masks = _labelled()
    noisy = plain + np.random.default_rng(1).uniform(0, 1, plain.shape)
    decision = choose_fusion(plain, noisy, masks, n_labelled=3, target_frr=0.25)
    passed = decision["labelled_passed"]
    assert passed["none"] == passed["geometric"] and decision["kind"] == "none"  # noise costs pixel AP
