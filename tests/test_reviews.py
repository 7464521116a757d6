"""Chapter 2: the review generator of the miniature world and its tokenizer."""

import numpy as np
import pytest

from rlhf_lib.reviews import (
    check_tokenizer_matches,
    generate_reviews,
    train_tokenizer,
    vader_compound,
)


def test_deterministic_and_prefix_stable():
    a, b = generate_reviews(50, seed=3), generate_reviews(50, seed=3)
    assert [r.text for r in a] == [r.text for r in b]
    assert [r.text for r in generate_reviews(10, seed=3)] == [r.text for r in a[:10]]
    assert [r.text for r in generate_reviews(50, seed=4)] != [r.text for r in a]


def test_metadata_is_consistent():
    for r in generate_reviews(300, seed=0):
        assert -1 <= r.sentiment <= 1
        assert r.label == ("positive" if r.sentiment > 0 else "negative")
        assert r.text.startswith(r.prompt) and len(r.prompt) < len(r.text)
        assert r.text.endswith(".")


def test_varied_and_balanced():
    reviews = generate_reviews(2000, seed=0)
    assert len({r.text for r in reviews}) > 0.95 * len(reviews)
    positive = np.mean([r.sentiment > 0 for r in reviews])
    assert 0.4 < positive < 0.6
    texts = " ".join(r.text for r in reviews)
    for phrase in (" not ", ", but ", " very ", " somewhat "):
        assert phrase in texts  # negation, contrast, intensifiers, hedges all occur


def test_vader_agrees_with_intended_sentiment():
    reviews = generate_reviews(1000, seed=1)
    intended = np.array([r.sentiment for r in reviews])
    vader = np.array(vader_compound([r.text for r in reviews]))
    assert np.corrcoef(intended, vader)[0, 1] > 0.8
    assert np.mean((intended > 0) == (vader > 0)) > 0.85


def test_tokenizer_round_trip_and_specials():
    texts = [r.text for r in generate_reviews(500, seed=0)]
    tok = train_tokenizer(texts, vocab_size=300)
    assert len(tok) == 300
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    ids = tok(texts[0]).input_ids
    assert ids[0] == tok.bos_token_id  # encoding prepends <|bos|>
    assert tok.decode(ids, skip_special_tokens=True) == texts[0]
    with pytest.raises(ValueError, match="at least 259"):
        train_tokenizer(texts, vocab_size=100)


def test_tokenizer_model_mismatch_is_caught():
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = train_tokenizer([r.text for r in generate_reviews(200, seed=0)], vocab_size=300)
    small = GPT2LMHeadModel(GPT2Config(vocab_size=280, n_embd=8, n_layer=1, n_head=1))
    with pytest.raises(ValueError, match="do not belong together"):
        check_tokenizer_matches(small, tok)
    wrong_ids = GPT2LMHeadModel(GPT2Config(vocab_size=300, n_embd=8, n_layer=1, n_head=1,
                                           bos_token_id=5, eos_token_id=2))  # fmt: skip
    with pytest.raises(ValueError, match="bos_token_id"):
        check_tokenizer_matches(wrong_ids, tok)
