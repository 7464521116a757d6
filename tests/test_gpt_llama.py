"""Chapter 2: our GPT and LLaMA give the same logits as transformers' GPT-2 and LLaMA."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from rlhf_lib.gpt import (
    GPT,
    GPTConfig,
    LLaMA,
    LLaMAConfig,
    RMSNorm,
    apply_rope,
    count_parameters,
    rope_cos_sin,
)


def tiny_hf_gpt2():
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=97, n_positions=32, n_embd=48, n_layer=2, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    return GPT2LMHeadModel(config).eval()


def tiny_hf_llama(n_kv_heads=2, tie=True):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97, hidden_size=64, intermediate_size=172, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=n_kv_heads, max_position_embeddings=32,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0}, tie_word_embeddings=tie,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # random norm gains, so a wrong RMSNorm cannot hide behind weight=1
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


def test_gpt_matches_hf_gpt2_logits():
    hf = tiny_hf_gpt2()
    ours = GPT.from_hf(hf).eval()
    idx = torch.randint(0, 97, (3, 20))
    with torch.no_grad():
        assert torch.allclose(ours(idx), hf(idx).logits, atol=1e-5)


def test_gpt_attention_weights_match_hf():
    hf = tiny_hf_gpt2()
    hf.set_attn_implementation("eager")  # the fused kernels do not return attention weights
    ours = GPT.from_hf(hf).eval()
    idx = torch.randint(0, 97, (2, 10))
    with torch.no_grad():
        _, ours_att = ours(idx, return_attentions=True)
        hf_att = hf(idx, output_attentions=True).attentions
    for a, b in zip(ours_att, hf_att, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("n_kv_heads,tie", [(4, True), (2, True), (1, False)])
def test_llama_matches_hf_llama_logits(n_kv_heads, tie):
    hf = tiny_hf_llama(n_kv_heads, tie)
    ours = LLaMA.from_hf(hf).eval()
    assert ours.config.n_kv_head == n_kv_heads
    idx = torch.randint(0, 97, (2, 25))
    with torch.no_grad():
        assert torch.allclose(ours(idx), hf(idx).logits, atol=1e-5)


def test_gpt_is_causal_and_the_leaky_one_is_not():
    torch.manual_seed(0)
    idx = torch.randint(0, 50, (1, 12))
    changed = idx.clone()
    changed[0, -1] = (idx[0, -1] + 1) % 50  # change only the last token
    for causal in (True, False):
        model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32,
                              causal=causal)).eval()  # fmt: skip
        with torch.no_grad():
            same_prefix = torch.allclose(model(idx)[0, :-1], model(changed)[0, :-1])
        assert same_prefix == causal  # the past never depends on the future, unless it leaks


def test_llama_is_causal():
    model = LLaMA(LLaMAConfig(vocab_size=50, n_layer=2, n_embd=32, n_head=4, n_kv_head=2,
                              intermediate_size=64)).eval()  # fmt: skip
    idx = torch.randint(0, 50, (1, 12))
    changed = idx.clone()
    changed[0, -1] = (idx[0, -1] + 1) % 50
    with torch.no_grad():
        assert torch.allclose(model(idx)[0, :-1], model(changed)[0, :-1])


def test_rope_scores_depend_on_relative_position_only():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    cos, sin = rope_cos_sin(torch.arange(20), 16)

    def score(m, n):
        qm = apply_rope(q, cos[m : m + 1], sin[m : m + 1])
        kn = apply_rope(k, cos[n : n + 1], sin[n : n + 1])
        return (qm * kn).sum()

    assert torch.allclose(score(5, 2), score(15, 12), atol=1e-5)
    assert torch.allclose(score(3, 3), (q * k).sum(), atol=1e-5)  # same position: no rotation


def test_rmsnorm_unit_rms():
    x = torch.randn(4, 8, 32) * 7
    y = RMSNorm(32)(x)
    assert torch.allclose(y.pow(2).mean(-1), torch.ones(4, 8), atol=1e-3)


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="multiple of n_kv_head"):
        LLaMAConfig(n_head=4, n_kv_head=3)
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=1, n_embd=8))
    with pytest.raises(ValueError, match="block_size=8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_tied_parameters_count_once():
    model = GPT(GPTConfig(vocab_size=100, block_size=8, n_layer=1, n_head=2, n_embd=16))
    assert model.lm_head.weight is model.transformer.wte.weight
    untied = sum(p.numel() for p in model.parameters())  # parameters() already dedups ties
    assert count_parameters(model) == untied
