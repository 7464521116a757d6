"""SFT on demonstrations (chapter 3): the data, a tiny TRL run, sampling and the cached stage."""

import pytest

from rlhf_lib.base_model import BaseModelConfig, make_model
from rlhf_lib.cache import cached_stage
from rlhf_lib.reviews import generate_reviews, train_tokenizer
from rlhf_lib.sft import (
    SFTStageConfig,
    build_sft_model,
    demonstrations,
    is_well_formed,
    review_prompts,
    sample_completions,
)

TINY = BaseModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=128, vocab_size=300)
TINY_SFT = SFTStageConfig(n_demonstrations=32, max_steps=2, batch_size=8, max_length=128)


@pytest.fixture()
def tiny_base():
    tokenizer = train_tokenizer([r.text for r in generate_reviews(300, seed=0)], TINY.vocab_size)
    return make_model(TINY, tokenizer), tokenizer


def test_demonstrations_are_positive_well_formed_reviews():
    config = SFTStageConfig(n_demonstrations=50)
    records = demonstrations(config)
    assert len(records) == 50
    for rec in records:
        assert rec["completion"].startswith(" ")
        assert is_well_formed(rec["prompt"] + rec["completion"])
    texts = {r.text for r in generate_reviews(400, seed=config.seed)}
    assert {r["prompt"] + r["completion"] for r in records} <= texts


def test_impossible_sentiment_threshold_says_what_to_do():
    with pytest.raises(ValueError, match="lower min_sentiment"):
        demonstrations(SFTStageConfig(n_demonstrations=5, min_sentiment=1.5))


def test_sft_stage_trains_saves_and_samples(tiny_base, tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_BOOK_CACHE", str(tmp_path))
    path = cached_stage("sft_test", TINY_SFT, lambda f: build_sft_model(f, TINY_SFT, tiny_base))
    assert (path / "history.json").is_file() and (path / "model.safetensors").is_file()
    model, tokenizer = tiny_base
    prompts = review_prompts(3)
    outs = sample_completions(model, tokenizer, prompts, max_new_tokens=8, seed=0)
    assert len(outs) == 3 and all(isinstance(o, str) for o in outs)
    assert outs == sample_completions(model, tokenizer, prompts, max_new_tokens=8, seed=0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        sample_completions(model, tokenizer, prompts, temperature=0)
