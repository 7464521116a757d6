"""The encoder-decoder Transformer of Vaswani et al. (2017), small enough to train on a laptop.

Introduced in Chapter 1 (Transformers), page "The architecture". Read it bottom-up, like nanoGPT's
``model.py``: layer norm -> feed-forward -> encoder layer -> decoder layer -> config -> model.
Every layer is checked against PyTorch's own (``nn.LayerNorm``, ``nn.TransformerEncoderLayer``,
``nn.TransformerDecoderLayer``) with copied weights in ``tests/test_transformer.py``.

Attention lives in :mod:`rlhf_lib.attention`; the toy translation task that trains this model is
in :mod:`rlhf_lib.translation`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from rlhf_lib import checks
from rlhf_lib.attention import (
    MultiHeadAttention,
    causal_mask,
    padding_mask,
    sinusoidal_positional_encoding,
)


class LayerNorm(nn.Module):
    """Layer normalisation, written out: normalise each position's vector, then scale and shift.

    Introduced in Chapter 1, "Layer norm and residual connections".
    ``LN(x) = γ ⊙ (x − μ) / √(σ² + ε) + β`` with μ, σ² the mean and (biased) variance over the
    ``d_model`` features of one position. Parameter names match ``nn.LayerNorm`` so state dicts
    load into either.
    """

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))  # γ: starts as the identity scale
        self.bias = nn.Parameter(torch.zeros(d_model))  # β

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.weight.shape[0]:
            raise ValueError(
                f"LayerNorm({self.weight.shape[0]}) normalises vectors of {self.weight.shape[0]} "
                f"features, got input of shape {tuple(x.shape)}."
            )
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        return self.weight * (x - mean) / torch.sqrt(var + self.eps) + self.bias


class FeedForward(nn.Module):
    """The position-wise feed-forward network ``FFN(x) = max(0, x W₁ + b₁) W₂ + b₂``.

    Introduced in Chapter 1, "Feed-forward". The same two-layer MLP is applied to every position
    separately (no information moves between positions here: that is attention's job).
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each wrapped in a residual connection and a layer norm.

    Introduced in Chapter 1. ``norm_first=False`` is the paper's Post-LN,
    ``x = LN(x + Sublayer(x))``; ``norm_first=True`` is Pre-LN, ``x = x + Sublayer(LN(x))``,
    which later models (GPT-2, LLaMA) use because it trains stably without warm-up tricks.
    Mirrors ``nn.TransformerEncoderLayer`` (ReLU, ``batch_first=True``).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout=0.0, norm_first=False):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2 = LayerNorm(d_model), LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        def attend(h):
            return self.dropout(self.self_attn(h, mask=mask)[0])

        if self.norm_first:
            x = x + attend(self.norm1(x))
            return x + self.dropout(self.ff(self.norm2(x)))
        x = self.norm1(x + attend(x))
        return self.norm2(x + self.dropout(self.ff(x)))

    @torch.no_grad()
    def load_from_torch(self, layer: nn.TransformerEncoderLayer) -> EncoderLayer:
        """Copy the weights of an ``nn.TransformerEncoderLayer`` (used by tests and Chapter 1)."""
        self.self_attn.load_from_torch(layer.self_attn)
        _copy_ff_and_norms(self, layer, n_norms=2)
        return self


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention to the encoder output, then feed-forward.

    Introduced in Chapter 1, "The decoder". The self-attention is causal (each output position
    sees only earlier ones); in the cross-attention the queries come from the decoder and the keys
    and values from the encoder output ("memory"). Each sub-layer has its residual + layer norm,
    Post-LN or Pre-LN as in :class:`EncoderLayer`. Mirrors ``nn.TransformerDecoderLayer``.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout=0.0, norm_first=False):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2, self.norm3 = (LayerNorm(d_model) for _ in range(3))
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        self_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        def self_block(h):
            return self.dropout(self.self_attn(h, mask=self_mask)[0])

        def cross_block(h):
            return self.dropout(self.cross_attn(h, memory, mask=memory_mask)[0])

        def ff_block(h):
            return self.dropout(self.ff(h))

        if self.norm_first:
            x = x + self_block(self.norm1(x))
            x = x + cross_block(self.norm2(x))
            return x + ff_block(self.norm3(x))
        x = self.norm1(x + self_block(x))
        x = self.norm2(x + cross_block(x))
        return self.norm3(x + ff_block(x))

    @torch.no_grad()
    def load_from_torch(self, layer: nn.TransformerDecoderLayer) -> DecoderLayer:
        """Copy the weights of an ``nn.TransformerDecoderLayer``."""
        self.self_attn.load_from_torch(layer.self_attn)
        self.cross_attn.load_from_torch(layer.multihead_attn)
        _copy_ff_and_norms(self, layer, n_norms=3)
        return self


def _copy_ff_and_norms(ours: nn.Module, theirs: nn.Module, n_norms: int) -> None:
    ours.ff.linear1.load_state_dict(theirs.linear1.state_dict())
    ours.ff.linear2.load_state_dict(theirs.linear2.state_dict())
    for i in range(1, n_norms + 1):
        getattr(ours, f"norm{i}").load_state_dict(getattr(theirs, f"norm{i}").state_dict())


@dataclass
class TransformerConfig:
    """Hyper-parameters of :class:`Seq2SeqTransformer` (the paper's "base" model in brackets)."""

    src_vocab_size: int = 40  # set from the task's source vocabulary
    tgt_vocab_size: int = 13  # set from the task's target vocabulary
    d_model: int = 64  # width of every token vector (512): enough for a toy task, fast on a CPU
    n_heads: int = 4  # (8) d_k = d_model / n_heads = 16 dimensions per head
    d_ff: int = 128  # (2048) the paper uses 4·d_model; 2·d_model suffices for toy tasks
    n_encoder_layers: int = 2  # (6) two layers already show different attention patterns
    n_decoder_layers: int = 2  # (6)
    dropout: float = 0.0  # (0.1) a toy task with fresh samples does not overfit in a minute
    max_len: int = 32  # longest sequence (source or target) the positional table covers
    positional: str = "sinusoidal"  # or "learned": one trained vector per position (BERT, GPT-2)
    norm_first: bool = False  # Post-LN as in the paper; True gives Pre-LN (GPT-2, LLaMA)
    pad_id: int = 0  # both vocabularies put padding, begin and end of sequence first
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self):
        checks.one_of(self, "positional", ("sinusoidal", "learned"))
        checks.ints(self, "src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "d_ff",
                    "n_encoder_layers", "n_decoder_layers", "max_len")  # fmt: skip
        checks.ints(self, "pad_id", "bos_id", "eos_id", minimum=0)
        checks.numbers(self, "dropout", low=0, high=1, high_open=True)
        checks.bools(self, "norm_first")
        checks.multiple_of(self, "d_model", "n_heads", "each head gets d_model / n_heads dims")
        if self.positional == "sinusoidal" and self.d_model % 2:
            raise checks.ConfigError(
                f"TransformerConfig.d_model={self.d_model} must be even for sinusoidal positions "
                "(sin/cos pairs): use an even d_model or positional='learned'."
            )
        for name in ("pad_id", "bos_id", "eos_id"):  # the special tokens come first
            vocab = "tgt_vocab_size" if name != "pad_id" else "src_vocab_size"
            if getattr(self, name) >= min(getattr(self, vocab), self.tgt_vocab_size):
                raise checks.ConfigError(
                    f"TransformerConfig.{name}={getattr(self, name)} is not a token id of the "
                    f"vocabulary (src_vocab_size={self.src_vocab_size}, tgt_vocab_size="
                    f"{self.tgt_vocab_size}): use a smaller id or a larger vocabulary."
                )


class Seq2SeqTransformer(nn.Module):
    """A tiny encoder-decoder Transformer: ``logits = model(src, tgt_in)``.

    Introduced in Chapter 1, "The architecture" and trained in "Training a translator".
    ``src [B, S]`` and ``tgt_in [B, T]`` are token ids (``tgt_in`` starts with ``bos_id``);
    the logits ``[B, T, tgt_vocab]`` at position t predict target token t + 1.
    After any forward pass, :meth:`attention_maps` returns every attention weight of it.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = c = config
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_model)
        self.tgt_embed = nn.Embedding(c.tgt_vocab_size, c.d_model)
        if c.positional == "sinusoidal":
            # A buffer, not a parameter: saved with the model but never trained.
            self.register_buffer("pos", sinusoidal_positional_encoding(c.max_len, c.d_model))
        else:
            self.pos = nn.Parameter(torch.randn(c.max_len, c.d_model) * 0.02)
        layer_args = (c.d_model, c.n_heads, c.d_ff, c.dropout, c.norm_first)
        self.encoder = nn.ModuleList(EncoderLayer(*layer_args) for _ in range(c.n_encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(*layer_args) for _ in range(c.n_decoder_layers))
        # Pre-LN leaves the residual stream un-normalised, so it needs one last norm per stack.
        self.encoder_norm = LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.decoder_norm = LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.dropout = nn.Dropout(c.dropout)
        self.lm_head = nn.Linear(c.d_model, c.tgt_vocab_size)  # the final linear; softmax in loss

    def _embed(self, tokens: torch.Tensor, table: nn.Embedding, name: str) -> torch.Tensor:
        checks.check_token_ids(tokens, table.num_embeddings, name, dims=2)
        T = tokens.shape[1]
        if T > self.config.max_len:
            raise ValueError(
                f"sequence of length {T} is longer than config.max_len={self.config.max_len}; "
                "build the model with a larger max_len."
            )
        # The paper scales embeddings by √d_model so they are not drowned by the position signal.
        return self.dropout(table(tokens) * math.sqrt(self.config.d_model) + self.pos[:T])

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder: ``src [B, S]`` -> ``(memory [B, S, d_model], src_mask [B, 1, S])``."""
        src_mask = padding_mask(src, self.config.pad_id)  # (B, 1, S): no query looks at padding
        x = self._embed(src, self.src_embed, "src")
        for layer in self.encoder:
            x = layer(x, src_mask)
        return self.encoder_norm(x), src_mask

    def decode(
        self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor
    ) -> torch.Tensor:
        """Decoder + final linear: ``tgt_in [B, T]`` -> logits ``[B, T, tgt_vocab]``."""
        # Causal mask alone suffices: padding sits at the end, after every real query's position.
        self_mask = causal_mask(tgt_in.shape[1], device=tgt_in.device)  # (T, T)
        x = self._embed(tgt_in, self.tgt_embed, "tgt_in")
        for layer in self.decoder:
            x = layer(x, memory, self_mask, src_mask)
        return self.lm_head(self.decoder_norm(x))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        batches = {len(t) for t in (src, tgt_in) if isinstance(t, torch.Tensor) and t.dim() == 2}
        if len(batches) > 1:
            raise ValueError(
                f"src and tgt_in must hold the same number of sequences (row b of tgt_in is the "
                f"translation of row b of src), got src {tuple(src.shape)} and tgt_in "
                f"{tuple(tgt_in.shape)}."
            )
        memory, src_mask = self.encode(src)
        return self.decode(tgt_in, memory, src_mask)

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, max_new_tokens: int | None = None) -> torch.Tensor:
        """Generate one token at a time, always taking the most likely: ``[B, 1 + n]`` ids.

        Introduced in Chapter 1. The output starts with ``bos_id``; a sequence that has emitted
        ``eos_id`` is padded with ``pad_id`` afterwards. The encoder runs once; the decoder runs
        again on the whole prefix at every step (no key/value cache: simple and fast enough here).
        ``max_new_tokens=None`` fills the context (``max_len - 1`` tokens); ``0`` generates
        nothing and returns ``bos_id`` alone.
        """
        c = self.config
        if max_new_tokens is None:
            max_new_tokens = c.max_len - 1
        if not checks.is_int(max_new_tokens) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}.")
        if max_new_tokens > c.max_len - 1:
            raise ValueError(
                f"max_new_tokens={max_new_tokens} does not fit: the output starts with bos_id and "
                f"the model reads at most config.max_len={c.max_len} positions, so at most "
                f"{c.max_len - 1} tokens can be generated. Ask for fewer, or max_new_tokens=None."
            )
        memory, src_mask = self.encode(src)
        out = torch.full((src.shape[0], 1), c.bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        for _ in range(max_new_tokens):
            next_token = self.decode(out, memory, src_mask)[:, -1].argmax(-1)  # (B,)
            next_token = next_token.masked_fill(done, c.pad_id)
            out = torch.cat([out, next_token[:, None]], dim=1)
            done |= next_token == c.eos_id
            if done.all():
                break
        return out

    def attention_maps(self, index: int = 0) -> dict[str, list[list]]:
        """The attention weights of the last forward pass, for batch element ``index``.

        Returns ``{kind: [layer][head] -> numpy [Tq, Tk]}`` with kinds ``"encoder self-attention"``,
        ``"decoder self-attention"`` and ``"cross-attention"``: the format
        :func:`rlhf_lib.explorer.attention_figure` draws.
        """
        last = self.encoder[0].self_attn.last_weights
        if last is None:
            raise RuntimeError("run the model (forward or greedy_decode) before asking for maps.")
        batch = last.shape[0]
        if not checks.is_int(index) or not -batch <= index < batch:
            raise IndexError(
                f"index={index!r} is not an example of the last forward pass, which had a batch of "
                f"{batch}: use 0..{batch - 1}."
            )

        def per_layer(modules):
            return [[w.cpu().numpy() for w in m.last_weights[index]] for m in modules]

        return {
            "encoder self-attention": per_layer(layer.self_attn for layer in self.encoder),
            "decoder self-attention": per_layer(layer.self_attn for layer in self.decoder),
            "cross-attention": per_layer(layer.cross_attn for layer in self.decoder),
        }

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
