"""Chapter 1: our attention against PyTorch's, plus masks, shapes and the errors readers hit."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from rlhf_lib.attention import (
    MultiHeadAttention,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
    sinusoidal_positional_encoding,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_matches_torch_sdpa_without_mask():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    out, weights = scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 3, 5, 4) and weights.shape == (2, 3, 5, 7)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v), atol=1e-6)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 3, 5))


def test_matches_torch_sdpa_with_causal_and_padding_masks():
    q, k, v = torch.randn(2, 6, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 8)
    out, _ = scaled_dot_product_attention(q, k, v, causal_mask(6))
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6)
    tokens = torch.tensor([[5, 6, 7, 0, 0, 0], [5, 6, 7, 8, 9, 1]])
    mask = padding_mask(tokens, pad_id=0)  # [B, 1, Tk]
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-6)
    assert (weights[0, :, 3:] == 0).all()


def test_scaling_is_one_over_sqrt_dk():
    q, k, v = torch.randn(4, 16), torch.randn(4, 16), torch.randn(4, 16)
    _, weights = scaled_dot_product_attention(q, k, v)
    assert torch.allclose(weights, torch.softmax(q @ k.T / math.sqrt(16), dim=-1))


def test_causal_mask_values():
    m = causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    for i in range(4):
        for j in range(4):
            assert m[i, j] == (j <= i)


def test_causal_attention_ignores_future_values():
    q, k, v = torch.randn(5, 8), torch.randn(5, 8), torch.randn(5, 8)
    out1, _ = scaled_dot_product_attention(q, k, v, causal_mask(5))
    v2 = v.clone()
    v2[3:] = 100.0  # changing the future must not change earlier outputs
    out2, _ = scaled_dot_product_attention(q, k, v2, causal_mask(5))
    assert torch.allclose(out1[:3], out2[:3])


def test_fully_masked_row_gives_zeros_not_nan():
    q, k, v = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    mask = torch.tensor([[True, False, False], [False, False, False], [True, True, True]])
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert not torch.isnan(out).any()
    assert (weights[1] == 0).all() and (out[1] == 0).all()
    assert torch.allclose(weights[[0, 2]].sum(-1), torch.ones(2))


def test_clear_errors():
    q = torch.randn(3, 4)
    with pytest.raises(ValueError, match="same last dimension"):
        scaled_dot_product_attention(q, torch.randn(3, 5), torch.randn(3, 4))
    with pytest.raises(ValueError, match="number of positions"):
        scaled_dot_product_attention(q, torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(TypeError, match="torch.bool"):
        scaled_dot_product_attention(q, q, q, mask=torch.ones(3, 3))
    with pytest.raises(ValueError, match="does not broadcast"):
        scaled_dot_product_attention(q, q, q, mask=torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="positive int"):
        causal_mask(0)
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="even"):
        sinusoidal_positional_encoding(4, 7)


def test_sinusoidal_positional_encoding_formula():
    pe = sinusoidal_positional_encoding(50, 16)
    assert pe.shape == (50, 16)
    pos, i = 7, 3
    angle = pos / 10000 ** (2 * i / 16)
    assert math.isclose(pe[pos, 2 * i].item(), math.sin(angle), abs_tol=1e-6)
    assert math.isclose(pe[pos, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6)
    assert torch.allclose(pe[0, 0::2], torch.zeros(8)) and torch.allclose(
        pe[0, 1::2], torch.ones(8)
    )


@pytest.mark.parametrize("masked", [False, True])
def test_multihead_matches_torch(masked):
    d, h = 32, 4
    ref = nn.MultiheadAttention(d, h, batch_first=True).eval()
    ours = MultiHeadAttention(d, h).load_from_torch(ref).eval()
    x, mem = torch.randn(2, 5, d), torch.randn(2, 7, d)
    mask = causal_mask(5) if masked else None
    out, w = ours(x, mask=mask)
    ref_out, ref_w = ref(
        x, x, x, attn_mask=None if mask is None else ~mask, average_attn_weights=False
    )
    assert torch.allclose(out, ref_out, atol=1e-5) and torch.allclose(w, ref_w, atol=1e-6)
    assert ours.last_weights.shape == (2, h, 5, 5)
    # cross-attention with a padding mask on the keys
    src = torch.tensor([[3] * 7, [3] * 4 + [0] * 3])
    out, w = ours(x, mem, mask=padding_mask(src, 0))
    ref_out, ref_w = ref(x, mem, mem, key_padding_mask=src == 0, average_attn_weights=False)
    assert torch.allclose(out, ref_out, atol=1e-5) and torch.allclose(w, ref_w, atol=1e-6)


def test_self_attention_is_permutation_equivariant():
    mha = MultiHeadAttention(16, 2).eval()
    x = torch.randn(1, 6, 16)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    out, _ = mha(x)
    out_perm, _ = mha(x[:, perm])
    assert torch.allclose(out[:, perm], out_perm, atol=1e-6)
