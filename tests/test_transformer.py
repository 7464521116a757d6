"""Chapter 1: our layer norm, encoder and decoder layers against PyTorch's with copied weights."""

import pytest
import torch
import torch.nn as nn

from rlhf_lib.attention import causal_mask, padding_mask
from rlhf_lib.transformer import (
    DecoderLayer,
    EncoderLayer,
    FeedForward,
    LayerNorm,
    Seq2SeqTransformer,
    TransformerConfig,
)

D, H, FF = 32, 4, 64


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_layer_norm_matches_torch():
    ref = nn.LayerNorm(D)
    with torch.no_grad():
        ref.weight.normal_()
        ref.bias.normal_()
    ours = LayerNorm(D)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5, D) * 4 + 2
    assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_feed_forward_is_position_wise():
    ff = FeedForward(D, FF)
    x = torch.randn(2, 6, D)
    assert torch.allclose(ff(x)[:, 2], ff(x[:, 2:3])[:, 0], atol=1e-6)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_matches_torch(norm_first):
    ref = nn.TransformerEncoderLayer(
        D, H, FF, dropout=0.0, batch_first=True, norm_first=norm_first
    ).eval()
    ours = EncoderLayer(D, H, FF, norm_first=norm_first).load_from_torch(ref).eval()
    x = torch.randn(2, 7, D)
    src = torch.tensor([[4] * 7, [4] * 5 + [0] * 2])
    out = ours(x, padding_mask(src, 0))
    expected = ref(x, src_key_padding_mask=src == 0)
    # PyTorch's fast path returns zeros at padded query positions; compare the real ones.
    real = src != 0
    assert torch.allclose(out[real], expected[real], atol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch(norm_first):
    ref = nn.TransformerDecoderLayer(
        D, H, FF, dropout=0.0, batch_first=True, norm_first=norm_first
    ).eval()
    ours = DecoderLayer(D, H, FF, norm_first=norm_first).load_from_torch(ref).eval()
    x, memory = torch.randn(2, 5, D), torch.randn(2, 7, D)
    src = torch.tensor([[4] * 7, [4] * 3 + [0] * 4])
    out = ours(x, memory, causal_mask(5), padding_mask(src, 0))
    expected = ref(
        x, memory, tgt_mask=~causal_mask(5), memory_key_padding_mask=src == 0, tgt_is_causal=True
    )
    assert torch.allclose(out, expected, atol=1e-5)


def _tiny(**kw):
    cfg = TransformerConfig(
        src_vocab_size=11, tgt_vocab_size=9, d_model=D, n_heads=H, d_ff=FF, max_len=12, **kw
    )
    return Seq2SeqTransformer(cfg).eval()


def test_model_shapes_and_attention_maps():
    model = _tiny()
    src = torch.tensor([[5, 6, 7, 8], [5, 6, 0, 0]])
    tgt = torch.tensor([[1, 3, 4], [1, 3, 0]])
    logits = model(src, tgt)
    assert logits.shape == (2, 3, 9)
    maps = model.attention_maps(index=1)
    assert set(maps) == {"encoder self-attention", "decoder self-attention", "cross-attention"}
    assert len(maps["cross-attention"]) == 2 and len(maps["cross-attention"][0]) == H
    assert maps["cross-attention"][0][0].shape == (3, 4)
    assert abs(maps["cross-attention"][1][2][:, 2:]).max() == 0  # padding gets no attention
    dec = maps["decoder self-attention"][0][0]
    assert abs(dec[0, 1:]).max() == 0  # the first position sees only itself


def test_model_output_does_not_depend_on_padding_or_future():
    model = _tiny()
    src = torch.tensor([[5, 6, 7]])
    src_padded = torch.tensor([[5, 6, 7, 0, 0]])
    tgt = torch.tensor([[1, 3, 4, 5]])
    a = model(src, tgt)
    assert torch.allclose(a, model(src_padded, tgt), atol=1e-5)
    tgt_changed = torch.tensor([[1, 3, 8, 8]])
    assert torch.allclose(a[:, :2], model(src, tgt_changed)[:, :2], atol=1e-5)


@pytest.mark.parametrize("kw", [{}, {"norm_first": True, "positional": "learned"}])
def test_greedy_decode(kw):
    model = _tiny(**kw)
    src = torch.tensor([[5, 6, 7], [5, 0, 0]])
    out = model.greedy_decode(src, max_new_tokens=6)
    assert out.shape[0] == 2 and out.shape[1] <= 7 and (out[:, 0] == 1).all()
    # greedy = argmax of the model's own logits on its own prefix
    logits = model(src[:1], out[:1, :-1])
    assert torch.equal(logits.argmax(-1)[0], out[0, 1:]) or (out[0] == 2).any()


def test_config_errors():
    with pytest.raises(ValueError, match="positional"):
        TransformerConfig(positional="rotary")
    with pytest.raises(ValueError, match="divisible"):
        TransformerConfig(d_model=30, n_heads=4)
    model = _tiny()
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones(1, 20, dtype=torch.long), torch.ones(1, 2, dtype=torch.long))
