"""Attention, masks and positional encodings.

Introduced in Chapter 1 (Transformers), page "Attention". Everything here follows Vaswani et al.
(2017), "Attention Is All You Need", and is checked against PyTorch's own implementations in
``tests/test_attention.py`` (``F.scaled_dot_product_attention``, ``nn.MultiheadAttention``).

Conventions used throughout the book:

- Shapes are written ``[batch, heads, queries, keys]`` = ``[B, h, Tq, Tk]``.
- A *mask* is a bool tensor where ``True`` means "this query may attend to this key". (PyTorch's
  ``nn.MultiheadAttention`` uses the opposite convention for bool masks: pass it ``~mask``; a mask
  that would stop every query from seeing itself is refused as inverted.)
- A 2-D mask always means ``[Tq, Tk]``. A padding mask is ``[B, 1, Tk]`` (:func:`padding_mask`)
  or, as ``[B, Tk]``, the ``key_padding_mask`` argument, which stays unambiguous when B == Tq.
- Attention functions return their weights next to their output, so figures need no hooks.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from rlhf_lib import checks


def _check_qkv(q, k, v) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() < 2:
            raise ValueError(f"{name} must be a tensor of shape [..., T, d] (at least 2-D).")
    if not (q.is_floating_point() and q.dtype == k.dtype == v.dtype):
        raise TypeError(
            f"q, k and v must be floating-point tensors of one dtype, got q {q.dtype}, k {k.dtype} "
            f"and v {v.dtype}: convert them with .to(q.dtype) (or .float())."
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same last dimension d_k (queries are compared with keys by a "
            f"dot product), got q {tuple(q.shape)} and k {tuple(k.shape)}."
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same number of positions Tk (one value per key), got "
            f"k {tuple(k.shape)} and v {tuple(v.shape)}."
        )
    try:
        torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"q, k and v must have the same leading (batch, head) axes: the queries of example b "
            f"attend to the keys of example b. Got q {tuple(q.shape)}, k {tuple(k.shape)} and "
            f"v {tuple(v.shape)}."
        ) from None


_PYTORCH_STYLE = (
    "In this book True means 'may attend' (causal_mask(T) is True on and below the diagonal); "
    "for a PyTorch-style mask, where True means 'masked out', pass ~mask."
)


def _check_mask(mask: torch.Tensor, scores_shape: torch.Size) -> None:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor of dtype bool, got {type(mask).__name__}.")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must have dtype torch.bool (True = may attend), got {mask.dtype}. "
            "If you have a 0/1 mask, pass `mask.bool()`; if you have an additive mask of 0 and "
            "-inf, pass `mask == 0`."
        )
    *batch, Tq, Tk = scores_shape
    if mask.dim() == 2 and batch and tuple(mask.shape) == (batch[0], Tk) and 1 != batch[0] != Tq:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} looks like a padding mask [B, Tk], but a 2-D mask "
            f"means [Tq, Tk] = [{Tq}, {Tk}]. Pass it as key_padding_mask=mask (True = a real "
            "token), or give it shape [B, 1, Tk] as padding_mask(tokens, pad_id) returns."
        )
    try:
        torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the attention scores "
            f"[..., Tq, Tk] = {tuple(scores_shape)}. Give it shape [Tq, Tk], [B, Tq, Tk] or "
            "[B, 1, Tk] (padding), adding a head axis [B, 1, Tq, Tk] for multi-head inputs; "
            "a [B, Tk] padding mask goes in key_padding_mask=."
        ) from None
    # A mask with its own query axis over square scores must let some query see its own key.
    square = Tq == Tk > 1 and mask.dim() >= 2 and tuple(mask.shape[-2:]) == (Tq, Tk)
    if square and not mask.diagonal(dim1=-2, dim2=-1).any():
        raise ValueError(
            "mask is False on its whole diagonal: no query may attend to itself, which is what "
            f"an inverted mask looks like. {_PYTORCH_STYLE}"
        )


def _key_padding(key_padding_mask: torch.Tensor, scores_shape: torch.Size) -> torch.Tensor:
    """A ``[B, Tk]`` (or ``[Tk]``) padding mask as a mask broadcastable to the scores."""
    *batch, _, Tk = scores_shape
    kpm = key_padding_mask
    if not isinstance(kpm, torch.Tensor) or kpm.dtype != torch.bool:
        raise TypeError(
            "key_padding_mask must be a bool tensor [B, Tk], True where the key is a real token "
            f"(e.g. tokens != pad_id), got {getattr(kpm, 'dtype', type(kpm).__name__)}."
        )
    if kpm.dim() == 1 and kpm.shape[0] == Tk:
        return kpm
    if kpm.dim() == 2 and batch and kpm.shape[0] in (1, batch[0]) and kpm.shape[1] == Tk:
        return kpm.view(kpm.shape[0], *[1] * (len(scores_shape) - 2), Tk)  # (B, 1.., Tk)
    expected = f"[B, Tk] = [{batch[0]}, {Tk}]" if batch else f"[Tk] = [{Tk}]"
    raise ValueError(
        f"key_padding_mask must have shape {expected} (True = a real token), "
        f"got {tuple(kpm.shape)}."
    )


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    key_padding_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V, returning ``(output, weights)``.

    Introduced in Chapter 1, "Attention". Shapes: ``q [..., Tq, d]``, ``k [..., Tk, d]``,
    ``v [..., Tk, dv]``; output ``[..., Tq, dv]``, weights ``[..., Tq, Tk]``. The softmax runs over
    the keys (the last axis), so every row of ``weights`` sums to 1.

    ``mask`` (optional, bool, broadcastable to ``[..., Tq, Tk]``) is True where a query may attend
    to a key. A query whose row is entirely False (a padding position, say) has nothing to attend
    to: it gets all-zero weights and a zero output instead of the NaN a plain softmax over
    ``-inf`` would give. A 2-D mask always means ``[Tq, Tk]``; a padding mask is ``[B, 1, Tk]``
    (:func:`padding_mask`) or goes, as ``[B, Tk]``, in ``key_padding_mask`` (True = a real
    token), which is unambiguous even when B == Tq. An inverted (PyTorch-style) mask, False on
    the whole diagonal, is refused.
    """
    _check_qkv(q, k, v)
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # [..., Tq, Tk]
    if mask is not None:
        _check_mask(mask, scores.shape)
    if key_padding_mask is not None:
        keys = _key_padding(key_padding_mask, scores.shape)
        mask = keys if mask is None else mask & keys
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # over keys j
    if mask is not None:
        # A fully masked row is softmax(-inf, ..., -inf) = NaN; it attends to nothing instead.
        weights = weights.masked_fill(~mask, 0.0)
    return weights @ v, weights


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``BoolTensor[T, T]``, True where key index ≤ query index (no peeking at the future).

    Introduced in Chapter 1 (the decoder's masked self-attention); reused by every causal language
    model in Chapter 2.
    """
    if not checks.is_int(T) or T < 1:
        raise ValueError(f"T must be a positive int (the sequence length), got {T!r}.")
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def padding_mask(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """``BoolTensor[B, 1, T]``, True where ``tokens`` is a real token (a key worth attending to).

    Introduced in Chapter 1. Sequences of different lengths are padded to one length in a batch;
    no query should attend to the padding. The middle axis of size 1 broadcasts over the queries,
    so the result can be passed as the ``mask`` of :func:`scaled_dot_product_attention` for
    ``[B, Tq, Tk]`` scores, or combined with :func:`causal_mask` with ``&``.
    """
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens must be a torch.Tensor [B, T], got {type(tokens).__name__}.")
    if tokens.dim() != 2:
        raise ValueError(f"tokens must have shape [B, T], got {tuple(tokens.shape)}.")
    if not checks.is_int(pad_id):
        raise TypeError(f"pad_id must be the int id of the padding token, got {pad_id!r}.")
    return (tokens != pad_id)[:, None, :]


def sinusoidal_positional_encoding(max_len: int, d_model: int) -> torch.Tensor:
    """The fixed position signal of Vaswani et al. (2017), ``Tensor[max_len, d_model]``.

    Introduced in Chapter 1, "Positional encoding":
    ``PE[pos, 2i] = sin(pos / 10000^(2i/d_model))`` and ``PE[pos, 2i+1] = cos(same angle)``.
    Each pair of dimensions is a clock turning at its own speed, from one turn every 2π
    positions (i = 0) to one every 2π·10000 positions.
    """
    if not checks.is_int(max_len) or max_len < 1:
        raise ValueError(f"max_len must be a positive int, got {max_len!r}.")
    if not checks.is_int(d_model) or d_model < 2 or d_model % 2:
        raise ValueError(f"d_model must be an even int >= 2 (sin/cos pairs), got {d_model!r}.")
    position = torch.arange(max_len, dtype=torch.float32)[:, None]  # [max_len, 1]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float32)  # [d_model/2]
    angle = position / 10000 ** (two_i / d_model)  # [max_len, d_model/2]
    pe = torch.empty(max_len, d_model)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe


class MultiHeadAttention(nn.Module):
    """Multi-head attention: h attentions side by side, each in its own d_k = d_model/h subspace.

    Introduced in Chapter 1, "Multi-head attention". ``MultiHead(Q, K, V) = Concat(head_1, ...,
    head_h) W_O`` with ``head_i = Attention(Q W_Q^i, K W_K^i, V W_V^i)``. The h per-head
    projections ``W_Q^i`` (``d_model × d_k``) are stored side by side as one ``d_model × d_model``
    linear layer, which is the same thing computed in one matrix product.

    ``forward(x_q, x_kv=None, mask=None)`` returns ``(output [B, Tq, d_model], weights [B, h, Tq,
    Tk])`` and keeps the weights of the last call, detached, in ``self.last_weights`` for plots.
    ``x_kv=None`` is self-attention; passing the encoder output is cross-attention. ``mask`` is
    bool, True = may attend, broadcastable to ``[B, Tq, Tk]`` (a head axis is added here);
    ``key_padding_mask`` ``[B, Tk]`` is True at real (not padding) keys.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        for name, value in (("d_model", d_model), ("n_heads", n_heads)):
            if not checks.is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        # nn.Dropout accepts NaN, and `nan > 0` is False: training would run without dropout
        checks.argument("MultiHeadAttention", "dropout", dropout, checks.numbers, low=0, high=1,
                        high_open=True)  # fmt: skip
        if d_model % n_heads:
            raise ValueError(
                f"d_model ({d_model}) must be divisible by n_heads ({n_heads}): each head gets "
                f"d_model / n_heads dimensions. Try n_heads in "
                f"{[h for h in range(1, d_model + 1) if d_model % h == 0 and h <= 16]}."
            )
        self.d_model, self.n_heads, self.d_k = d_model, n_heads, d_model // n_heads
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)  # on the attention weights, as in the paper's code
        self.last_weights: torch.Tensor | None = None

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.d_k).transpose(1, 2)  # (B, h, T, d_k)

    def forward(
        self,
        x_q: torch.Tensor,
        x_kv: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        *,
        key_padding_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x_kv = x_q if x_kv is None else x_kv
        for name, x in (("x_q", x_q), ("x_kv", x_kv)):
            if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.d_model:
                shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(
                    f"{name} must have shape [B, T, d_model={self.d_model}], got {shape}."
                )
            if x.dtype != self.w_q.weight.dtype and not torch.is_autocast_enabled(x.device.type):
                raise TypeError(
                    f"{name} is {x.dtype} but the module's weights are {self.w_q.weight.dtype}: "
                    f"pass {name}.to({self.w_q.weight.dtype}) or convert the module with .to()."
                )
        if x_kv.shape[0] != x_q.shape[0]:
            raise ValueError(
                f"x_q and x_kv must hold the same batch (the queries of example b attend to the "
                f"keys of example b), got {tuple(x_q.shape)} and {tuple(x_kv.shape)}."
            )
        B, Tq, _ = x_q.shape
        q = self._split_heads(self.w_q(x_q))  # (B, h, Tq, d_k)
        k = self._split_heads(self.w_k(x_kv))  # (B, h, Tk, d_k)
        v = self._split_heads(self.w_v(x_kv))  # (B, h, Tk, d_k)
        if isinstance(mask, torch.Tensor) and mask.dim() == 3:
            mask = mask.unsqueeze(-3)  # (B, 1, Tq or 1, Tk): the same mask for every head
        elif isinstance(mask, torch.Tensor) and mask.dim() > 4:
            raise ValueError(
                f"mask must be [Tq, Tk], [B, Tq, Tk] or, with a head axis, [B, 1 or h, Tq, Tk]; "
                f"got {tuple(mask.shape)}."
            )
        out, weights = scaled_dot_product_attention(q, k, v, mask,
                                                    key_padding_mask=key_padding_mask)  # fmt: skip
        if self.dropout.p > 0 and self.training:
            out = self.dropout(weights) @ v
        self.last_weights = weights.detach()
        out = out.transpose(1, 2).reshape(B, Tq, self.d_model)  # (B, Tq, h*d_k): concat heads
        return self.w_o(out), weights

    @torch.no_grad()
    def load_from_torch(self, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of a PyTorch ``nn.MultiheadAttention`` (used by the tests and Ch. 1).

        PyTorch stores W_Q, W_K, W_V stacked in one ``in_proj_weight`` of shape
        ``[3·d_model, d_model]``; we keep three layers, so we split it in three.
        """
        if mha.embed_dim != self.d_model or mha.num_heads != self.n_heads:
            raise ValueError(
                f"shape mismatch: torch module has d_model={mha.embed_dim}, "
                f"heads={mha.num_heads}; this one d_model={self.d_model}, heads={self.n_heads}."
            )
        if mha.in_proj_weight is None:
            raise ValueError(
                "the torch module projects keys and values from other widths (kdim/vdim): only "
                "nn.MultiheadAttention with one in_proj_weight can be copied."
            )
        theirs, ours = mha.in_proj_bias is not None, self.w_q.bias is not None
        if theirs != ours:
            raise ValueError(
                f"the torch module has bias={theirs} and this one bias={ours}: build this one "
                f"with MultiHeadAttention(d_model, n_heads, bias={theirs})."
            )
        biases = mha.in_proj_bias.chunk(3) if theirs else (None,) * 3
        for layer, w, b in zip((self.w_q, self.w_k, self.w_v), mha.in_proj_weight.chunk(3),
                               biases, strict=True):  # fmt: skip
            layer.weight.copy_(w)
            if b is not None:
                layer.bias.copy_(b)
        self.w_o.weight.copy_(mha.out_proj.weight)
        if theirs:
            self.w_o.bias.copy_(mha.out_proj.bias)
        return self
