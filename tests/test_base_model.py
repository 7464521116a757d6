"""Chapter 2: pretraining the base model as a cached stage, and loading it back."""

import math

import pytest
import torch

from rlhf_lib.base_model import (
    BaseModelConfig,
    base_model_path,
    evaluate_loss,
    load_base_history,
    load_base_model,
    lr_at,
    next_token_loss,
    pack,
    train_causal_lm,
)
from rlhf_lib.reviews import generate_reviews, train_tokenizer

TINY = BaseModelConfig(n_reviews=400, n_val_reviews=40, vocab_size=300, n_layer=1, n_head=2,
                       n_embd=32, max_steps=30, batch_size=8, warmup_steps=5,
                       eval_every=10)  # fmt: skip


def test_schedule_warms_up_then_decays():
    lrs = [lr_at(s, 1.0, 100, 10, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))  # never rises again
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_pack_and_loss_of_a_perfect_model():
    tok = train_tokenizer([r.text for r in generate_reviews(100)], vocab_size=300)
    blocks = pack(tok, [r.text for r in generate_reviews(100)], 16)
    assert blocks.shape[1] == 16 and (blocks == tok.bos_token_id).any()
    logits = torch.full((*blocks.shape, 300), -1e4)
    logits[:, :-1].scatter_(-1, blocks[:, 1:, None], 0.0)  # puts all mass on the true next token
    assert next_token_loss(logits, blocks).item() == pytest.approx(0.0, abs=1e-4)


def test_grad_accumulation_gives_the_same_gradient():
    from rlhf_lib.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=16))
    x = torch.randint(0, 50, (8, 8))
    next_token_loss(model(x), x).backward()
    full = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    for chunk in x.split(2):
        (next_token_loss(model(chunk), chunk) / 4).backward()
    for a, p in zip(full, model.parameters(), strict=True):
        assert torch.allclose(a, p.grad, atol=1e-6)


def test_training_lowers_the_loss():
    tok = train_tokenizer([r.text for r in generate_reviews(300)], vocab_size=300)
    blocks = pack(tok, [r.text for r in generate_reviews(300)], 32)
    from rlhf_lib.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=300, block_size=32, n_layer=1, n_head=2, n_embd=32))
    before = evaluate_loss(model, blocks)
    history = train_causal_lm(model, blocks, max_steps=25, batch_size=8, lr=5e-3, warmup_steps=5)
    assert evaluate_loss(model, blocks) < before - 1.0
    assert len(history["loss"]) == 25 and max(history["lr"]) == pytest.approx(5e-3)


def test_stage_saves_and_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_BOOK_CACHE", str(tmp_path))
    model, tok = load_base_model(TINY)
    assert model.config.vocab_size == len(tok) == 300
    assert model.config.eos_token_id == tok.eos_token_id
    history = load_base_history(TINY)
    assert len(history["loss"]) == 30 and history["val_step"][-1] == 29
    assert math.isfinite(history["val_loss"][-1])
    assert tok("The plot").input_ids[0] == tok.bos_token_id  # the reloaded tokenizer adds <|bos|>
    assert base_model_path(TINY).parent == tmp_path.resolve()
    out = model.generate(**tok("The plot", return_tensors="pt"), max_new_tokens=5, do_sample=False)
    assert out.shape[1] > 3


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="divisible by grad_accum_steps"):
        BaseModelConfig(batch_size=10, grad_accum_steps=3)
    with pytest.raises(ValueError, match="warmup_steps"):
        BaseModelConfig(max_steps=10, warmup_steps=10)
