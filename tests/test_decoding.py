"""Chapter 2: decoding rules and the generation loop, with and without a KV cache."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from rlhf_lib.decoding import (
    apply_temperature,
    decoding_explorer_figure,
    generate,
    next_token,
    top_k_filter,
    top_p_filter,
)


def tiny_gpt2():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=40, n_embd=32, n_layer=2,
                                      n_head=2, bos_token_id=1, eos_token_id=2)).eval()  # fmt: skip


def tiny_llama():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=40)  # fmt: skip
    return LlamaForCausalLM(config).eval()


def test_top_k_keeps_exactly_k():
    logits = torch.randn(3, 20)
    kept = torch.isfinite(top_k_filter(logits, 5))
    assert kept.sum(-1).tolist() == [5, 5, 5]
    # the kept ones are the largest
    assert torch.equal(kept, logits >= logits.topk(5).values[:, -1:])
    assert torch.equal(top_k_filter(logits, None), logits)


def test_top_p_keeps_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    assert torch.isfinite(top_p_filter(logits, 0.5)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(top_p_filter(logits, 0.7)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p_filter(logits, 0.9)).tolist() == [[True, True, True, False]]
    assert torch.isfinite(top_p_filter(logits, 0.01)).sum() == 1  # top-1 always survives
    shuffled = logits[:, [2, 0, 3, 1]]  # order of the vocabulary does not matter
    assert torch.isfinite(top_p_filter(shuffled, 0.7)).tolist() == [[False, True, False, True]]


def test_top_p_kept_mass_at_least_p():
    torch.manual_seed(1)
    logits = torch.randn(10, 100) * 3
    for p in (0.3, 0.8, 0.95):
        kept = torch.isfinite(top_p_filter(logits, p))
        mass = (logits.softmax(-1) * kept).sum(-1)
        assert (mass >= p - 1e-6).all()


def test_temperature_and_bad_values():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    assert apply_temperature(logits, 0.5).softmax(-1)[0, 2] > logits.softmax(-1)[0, 2]
    with pytest.raises(ValueError, match="greedy"):
        apply_temperature(logits, 0.0)
    with pytest.raises(ValueError, match="top_p"):
        top_p_filter(logits, 1.5)
    assert next_token(logits, greedy=True).item() == 2


@pytest.mark.parametrize("make", [tiny_gpt2, tiny_llama])
def test_greedy_matches_hf_generate(make):
    model = make()
    prompt = torch.randint(3, 50, (2, 6))
    ours = generate(model, prompt, 12, greedy=True)
    hf = model.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=0,
                        attention_mask=torch.ones_like(prompt))  # fmt: skip
    assert torch.equal(ours, hf)


@pytest.mark.parametrize("make", [tiny_gpt2, tiny_llama])
def test_kv_cache_gives_the_same_tokens(make):
    model = make()
    prompt = torch.randint(3, 50, (3, 5))
    for kwargs in ({"greedy": True}, {"temperature": 0.9, "top_k": 10, "top_p": 0.9}):
        with_cache = generate(model, prompt, 15, use_cache=True,
                              generator=torch.Generator().manual_seed(0), **kwargs)  # fmt: skip
        without = generate(model, prompt, 15, use_cache=False,
                           generator=torch.Generator().manual_seed(0), **kwargs)  # fmt: skip
        assert torch.equal(with_cache, without)


def test_context_overflow_is_a_clear_error():
    model = tiny_gpt2()
    with pytest.raises(ValueError, match="context is 40 tokens"):
        generate(model, torch.ones(1, 35, dtype=torch.long), 10)


def test_eos_stops_rows():
    model = tiny_gpt2()
    prompt = torch.randint(3, 50, (2, 4))
    first = generate(model, prompt, 1, greedy=True)[:, -1]
    out = generate(model, prompt, 8, greedy=True, eos_token_id=int(first[0]))
    assert (out[0, 4:] == first[0]).all()  # row 0 ended at once and was padded with eos


def test_explorer_figure_has_one_trace_per_setting():
    fig = decoding_explorer_figure("The plot", {"greedy": ["was good."], "top-k 5": ["a", "b"]})
    assert len(fig.data) == 2
    assert [t.visible for t in fig.data] == [True, False]
    assert len(fig.layout.updatemenus[0].buttons) == 2
