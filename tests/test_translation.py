"""Chapter 1: the number-words task, its training loop (a tiny smoke run) and the stage cache."""

import pytest
import torch

from rlhf_lib.transformer import TransformerConfig
from rlhf_lib.translation import (
    SOURCE_VOCAB,
    TARGET_VOCAB,
    TranslationConfig,
    aligned_attention_mass,
    attention_for,
    decode_target,
    encode_batch,
    exact_match,
    load_or_train_translator,
    make_splits,
    number_to_words,
    tokenize_source,
    train_translator,
    translate,
)


@pytest.mark.parametrize(
    "n, text",
    [
        (0, "zero"),
        (13, "thirteen"),
        (40, "forty"),
        (342, "three hundred and forty - two"),
        (2005, "two thousand and five"),
        (100000, "one hundred thousand"),
        (342005, "three hundred and forty - two thousand and five"),
        (999999, "nine hundred and ninety - nine thousand nine hundred and ninety - nine"),
    ],
)
def test_number_to_words(n, text):
    words, alignment = number_to_words(n)
    assert " ".join(words) == text
    assert len(alignment) == len(str(n))
    for digit, source in zip(str(n), alignment, strict=True):
        if source is None:
            assert digit == "0"  # only zeros go unspoken


def test_alignment_points_at_the_right_words():
    words, alignment = number_to_words(342005)
    assert [None if i is None else words[i] for i in alignment] == [
        "three",
        "forty",
        "two",
        None,
        None,
        "five",
    ]
    assert number_to_words(17)[1] == [0, 0]  # "seventeen" writes both digits


def test_tokenize_and_errors():
    assert tokenize_source("Forty-two") == ["forty", "-", "two"]
    with pytest.raises(ValueError, match="unknown word"):
        tokenize_source("forty-twelve-ish")
    with pytest.raises(ValueError, match="empty"):
        tokenize_source("  ")
    with pytest.raises(ValueError, match="int in"):
        number_to_words(1_000_000)


def test_splits_are_disjoint_and_encoding_is_padded():
    train, test = make_splits(2000, 100, seed=0)
    assert len(train) == 2000 and len(test) == 100 and not set(train) & set(test)
    assert min(test) >= 100  # held-out numbers have at least 3 digits
    src, tgt = encode_batch([5, 342005])
    assert src.shape == (2, 9) and (src[0, 1:] == 0).all()
    assert SOURCE_VOCAB[src[0, 0]] == "five"
    assert tgt[1, 0] == 1 and decode_target(tgt[1, 1:]) == "342005"
    assert decode_target([TARGET_VOCAB.index("4"), 2, TARGET_VOCAB.index("7")]) == "4"


def _tiny_config(steps=25):
    model = TransformerConfig(
        src_vocab_size=len(SOURCE_VOCAB),
        tgt_vocab_size=len(TARGET_VOCAB),
        d_model=16,
        n_heads=2,
        d_ff=32,
        n_encoder_layers=1,
        n_decoder_layers=1,
    )
    return TranslationConfig(
        n_train=500, n_test=20, model=model, steps=steps, batch_size=16, warmup_steps=5
    )


def test_training_smoke_run_lowers_the_loss():
    model, history = train_translator(_tiny_config(steps=40))
    losses = history["loss"]
    assert len(losses) == 40 and sum(losses[-5:]) < sum(losses[:5])
    assert 0.0 <= history["test_exact_match"] <= 1.0
    assert isinstance(translate(model, "forty-two"), str)
    assert 0.0 <= exact_match(model, [1, 22, 333]) <= 1.0


def test_attention_helpers_shapes():
    model, _ = train_translator(_tiny_config(steps=2))
    maps, labels, prediction = attention_for(model, "three hundred and five")
    assert set(maps) == set(labels)
    q, k = labels["cross-attention"]
    assert k == ["three", "hundred", "and", "five"] and q[0].startswith("<bos>→")
    assert maps["cross-attention"][0][0].shape == (len(q), len(k))
    mass = aligned_attention_mass(model, [342, 17, 2005])
    assert mass.shape == (1, 2) and ((mass >= 0) & (mass <= 1)).all()


def test_stage_cache_reuses_the_trained_model(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_BOOK_CACHE", str(tmp_path))
    config = _tiny_config(steps=3)
    model, history = load_or_train_translator(config)
    again, history_again = load_or_train_translator(config)
    assert history == history_again
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
