"""GPT-2 and LLaMA, small enough to read top to bottom (chapter 2, "Causal transformers").

Both models are decoder-only transformers: a stack of blocks, each ``x + attention(norm(x))`` then
``x + mlp(norm(x))``, with a causal mask so that position ``t`` only sees positions ``<= t``. They
differ in the parts the chapter compares one by one:

============================  ==============================  ===================================
part                          GPT-2                           LLaMA
============================  ==============================  ===================================
where positions come from     a learned table added at input  RoPE: q and k rotated in each layer
normalisation                 LayerNorm (centre + scale)      RMSNorm (scale only)
feed-forward                  Linear -> GELU -> Linear        SwiGLU: down(silu(gate(x)) * up(x))
key/value heads               one per query head              fewer, shared by groups (GQA)
output layer                  tied to the token embedding     tied or not (config)
============================  ==============================  ===================================

The file reads bottom-up like nanoGPT's ``model.py``: pieces first, then the block, the config and
the model. Attention itself is chapter 1's :func:`rlhf_lib.attention.scaled_dot_product_attention`
(it returns its weights, so attention maps need no hooks). The parameter names follow Hugging Face's
``GPT2LMHeadModel`` and ``LlamaForCausalLM``, so :meth:`GPT.from_hf` and :meth:`LLaMA.from_hf`
load their weights and ``tests/test_gpt_llama.py`` checks that the logits are the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from rlhf_lib import checks
from rlhf_lib.attention import causal_mask, scaled_dot_product_attention


def _check_not_empty(T: int) -> None:
    if T == 0:
        raise ValueError(
            "idx has no tokens (shape [B, 0]): a language model predicts from at least one token; "
            "start a text from the tokenizer's BOS token."
        )


# --------------------------------------------------------------------------------------------
# GPT-2
# --------------------------------------------------------------------------------------------


class GPTAttention(nn.Module):
    """Multi-head self-attention, causal unless ``config.causal`` is False."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.causal = config.causal
        # one matmul makes q, k and v for every head at once (GPT-2's ``c_attn``)
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        # split the channels into heads: (B, T, C) -> (B, nh, T, hs)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        mask = causal_mask(T).to(x.device) if self.causal else None  # (T, T), True = may attend
        y, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, nh, T, hs), (B, nh, T, T)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.c_proj(y), weights


class GPTMLP(nn.Module):
    """Position-wise feed-forward: widen 4x, GELU, project back."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # GPT-2 uses the tanh approximation of GELU ("gelu_new" in transformers)
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class GPTBlock(nn.Module):
    """Pre-norm residual block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.attn = GPTAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.mlp = GPTMLP(config)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, weights = self.attn(self.ln_1(x))
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, weights


@dataclass
class GPTConfig:
    """The shape of a GPT-2 model. Defaults: the chapter's tiny model, not GPT-2 small."""

    vocab_size: int = 1024  # our review tokenizer is small; GPT-2's BPE has 50257 tokens
    block_size: int = 64  # context length: reviews are short, and attention cost grows as T^2
    n_layer: int = 4  # depth buys composition (e.g. "not" + "good") more than width does
    n_head: int = 4  # several heads let one track the previous token while another finds "not"
    n_embd: int = 128  # residual width; must be divisible by n_head
    layer_norm_eps: float = 1e-5  # GPT-2's value
    causal: bool = True  # False only for the chapter's "what if the future leaks" experiment

    def __post_init__(self):
        checks.ints(self, "vocab_size", "block_size", "n_layer", "n_head", "n_embd")
        checks.positive(self, "layer_norm_eps")
        checks.bools(self, "causal")
        checks.multiple_of(self, "n_embd", "n_head", "each head gets n_embd // n_head channels")


class GPT(nn.Module):
    """A GPT-2 language model: token + learned position embeddings, blocks, LayerNorm, tied head."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embeddings
                wpe=nn.Embedding(config.block_size, config.n_embd),  # one learned vector per slot
                h=nn.ModuleList([GPTBlock(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying: reading a token in and writing it out share one matrix (fewer parameters,
        # and rare tokens' output rows get trained through the input side too)
        self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)  # GPT-2's initialisation
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, return_attentions: bool = False):
        """Logits ``(B, T, vocab)`` for token ids ``idx`` ``(B, T)``; with ``return_attentions``
        also the attention weights of every layer, a list of ``(B, n_head, T, T)``."""
        checks.check_token_ids(idx, self.config.vocab_size, "idx", dims=2)
        B, T = idx.size()
        _check_not_empty(T)
        if T > self.config.block_size:
            raise ValueError(
                f"The input has {T} tokens but the model's context is block_size="
                f"{self.config.block_size}; truncate the input (keep its last tokens)."
            )
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, C)
        attentions = []
        for block in self.transformer.h:
            x, weights = block(x)
            attentions.append(weights)
        logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, vocab)
        return (logits, attentions) if return_attentions else logits

    @classmethod
    def from_hf(cls, hf_model) -> GPT:
        """Our GPT with the weights of a transformers ``GPT2LMHeadModel``.

        GPT-2's checkpoints store linear layers as ``Conv1D`` with weights ``(in, out)``;
        ``nn.Linear`` keeps ``(out, in)``, so those matrices are transposed.
        """
        hf = hf_model.config
        _check_model_type(hf, "gpt2", "GPT")
        if hf.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(
                f"This GPT uses tanh-GELU; the model has {hf.activation_function!r}. "
                "Use a GPT2Config with activation_function='gelu_new'."
            )
        # Our GPT ties its output layer to wte, scales attention by 1/√d in every layer and widens
        # its MLP 4x; a checkpoint that differs would load without an error and compute otherwise.
        implemented = {"tie_word_embeddings": True, "scale_attn_weights": True,
                       "scale_attn_by_inverse_layer_idx": False,
                       "n_inner": 4 * hf.n_embd}  # fmt: skip
        for name, ours in implemented.items():
            got = getattr(hf, name, None)
            if got is not None and got != ours:  # n_inner=None means 4 * n_embd
                raise ValueError(
                    f"The model has {name}={got!r}, but this GPT implements {name}={ours!r} only: "
                    "its weights would load and compute something else. Use a GPT-2 with the "
                    "standard settings (GPT2Config defaults)."
                )
        config = GPTConfig(
            vocab_size=hf.vocab_size,
            block_size=hf.n_positions,
            n_layer=hf.n_layer,
            n_head=hf.n_head,
            n_embd=hf.n_embd,
            layer_norm_eps=hf.layer_norm_epsilon,
        )
        model = cls(config)
        conv1d = (
            "attn.c_attn.weight",
            "attn.c_proj.weight",
            "mlp.c_fc.weight",
            "mlp.c_proj.weight",
        )
        ours = model.state_dict()
        with torch.no_grad():
            for name, tensor in hf_model.state_dict().items():
                if name not in ours:  # e.g. buffers that older checkpoints carried ("attn.bias")
                    continue
                ours[name].copy_(tensor.t() if name.endswith(conv1d) else tensor)
        return model.to(next(hf_model.parameters()).dtype)


# --------------------------------------------------------------------------------------------
# LLaMA
# --------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """Scale each vector to unit root-mean-square, then by a learned gain (no centring, no bias).

    Cheaper than LayerNorm and, in practice, as good: the re-centring turned out not to matter.
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()  # the mean of squares is computed in float32 even for bf16 inputs
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables ``(T, head_dim)`` for rotary position embeddings (Su et al., 2021).

    Channel pair ``i`` of a head rotates by angle ``position * theta^(-2i/head_dim)``: fast angles
    in the first channels, slow ones in the last. The pairs are ``(i, i + head_dim/2)`` (the
    "rotate half" layout that Hugging Face's LLaMA uses), so each frequency appears twice.
    """
    if not checks.is_int(head_dim) or head_dim < 2 or head_dim % 2:
        raise ValueError(f"head_dim must be an even int >= 2 (RoPE turns pairs), got {head_dim!r}.")
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, head_dim/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, head_dim)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``(x1, x2) -> (-x2, x1)`` on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate q or k ``(B, nh, T, hs)`` by their positions. Because rotations compose, the score
    ``q_m . k_n`` depends on ``m - n`` only: relative position, for free, in every layer."""
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


class LLaMAAttention(nn.Module):
    """Causal self-attention with RoPE and grouped-query attention (GQA).

    ``n_kv_head`` key/value heads are shared by groups of ``n_head // n_kv_head`` query heads:
    the KV cache (what generation must keep in memory) shrinks by that factor. ``n_kv_head ==
    n_head`` is ordinary multi-head attention; ``n_kv_head == 1`` is multi-query attention.
    """

    def __init__(self, config: LLaMAConfig):
        super().__init__()
        self.n_head, self.n_kv_head = config.n_head, config.n_kv_head
        self.head_dim = config.head_dim
        C = config.n_embd
        self.q_proj = nn.Linear(C, self.n_head * self.head_dim, bias=False)
        self.k_proj = nn.Linear(C, self.n_kv_head * self.head_dim, bias=False)
        self.v_proj = nn.Linear(C, self.n_kv_head * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_head * self.head_dim, C, bias=False)

    def forward(self, x, cos, sin) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, _ = x.size()
        hs, nh, nkv = self.head_dim, self.n_head, self.n_kv_head
        q = self.q_proj(x).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k_proj(x).view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = self.v_proj(x).view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        # positions enter here, by rotating q and k; v is not rotated
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        group = self.n_head // self.n_kv_head
        k = k.repeat_interleave(group, dim=1)  # (B, nh, T, hs): kv head j serves q heads j*group...
        v = v.repeat_interleave(group, dim=1)
        y, weights = scaled_dot_product_attention(q, k, v, causal_mask(T).to(x.device))
        y = y.transpose(1, 2).contiguous().view(B, T, self.n_head * self.head_dim)
        return self.o_proj(y), weights


class SwiGLU(nn.Module):
    """Gated feed-forward (Shazeer, 2020): ``down(silu(gate(x)) * up(x))``.

    The gate decides, per channel, how much of ``up(x)`` passes. Three matrices instead of two, so
    LLaMA shrinks the hidden width to about 8/3 of ``n_embd`` to keep the parameter count.
    """

    def __init__(self, config: LLaMAConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.n_embd, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.n_embd, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LLaMABlock(nn.Module):
    """Pre-norm residual block with RMSNorm, RoPE attention (GQA) and a SwiGLU feed-forward."""

    def __init__(self, config: LLaMAConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.self_attn = LLaMAAttention(config)
        self.post_attention_layernorm = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x, cos, sin) -> tuple[torch.Tensor, torch.Tensor]:
        a, weights = self.self_attn(self.input_layernorm(x), cos, sin)
        x = x + a
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, weights


@dataclass
class LLaMAConfig:
    """The shape of a LLaMA model. Defaults: a tiny model comparable to the tiny ``GPTConfig``."""

    vocab_size: int = 1024
    block_size: int = 64  # RoPE has no table to outgrow; this only bounds the inputs we accept
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 2  # GQA: 2 key/value heads shared by 4 query heads halves the KV cache
    n_embd: int = 128
    intermediate_size: int = 344  # ~8/3 * n_embd: SwiGLU's three matrices cost what GELU's two do
    rope_theta: float = 10000.0  # base of the rotation frequencies; larger = longer wavelengths
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True  # small models tie (SmolLM2 does); LLaMA-7B does not
    head_dim: int | None = None  # None: n_embd // n_head

    def __post_init__(self):
        checks.ints(self, "vocab_size", "block_size", "n_layer", "n_head", "n_kv_head", "n_embd",
                    "intermediate_size")  # fmt: skip
        checks.positive(self, "rope_theta", "rms_norm_eps")
        checks.bools(self, "tie_word_embeddings")
        if self.head_dim is None:
            checks.multiple_of(self, "n_embd", "n_head", "head_dim = n_embd // n_head")
            self.head_dim = self.n_embd // self.n_head
        checks.ints(self, "head_dim")
        if self.head_dim % 2:
            raise checks.ConfigError(
                f"LLaMAConfig.head_dim={self.head_dim} must be even: RoPE rotates channel pairs."
            )
        if self.n_head % self.n_kv_head:
            raise checks.ConfigError(
                f"LLaMAConfig.n_head={self.n_head} must be a multiple of n_kv_head="
                f"{self.n_kv_head}: each key/value head serves a whole group of query heads."
            )


class LLaMA(nn.Module):
    """A LLaMA language model: token embeddings (no position table), blocks, RMSNorm, head."""

    def __init__(self, config: LLaMAConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.n_embd)
        self.layers = nn.ModuleList([LLaMABlock(config) for _ in range(config.n_layer)])
        self.norm = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def forward(self, idx: torch.Tensor, return_attentions: bool = False):
        """Logits ``(B, T, vocab)``; with ``return_attentions`` also a list of ``(B, nh, T, T)``."""
        checks.check_token_ids(idx, self.config.vocab_size, "idx", dims=2)
        B, T = idx.size()
        _check_not_empty(T)
        if T > self.config.block_size:
            raise ValueError(
                f"The input has {T} tokens but block_size={self.config.block_size}; "
                "truncate it or build the model with a larger block_size."
            )
        cos, sin = rope_cos_sin(torch.arange(T, device=idx.device), self.config.head_dim,
                                self.config.rope_theta)  # fmt: skip
        x = self.embed_tokens(idx)  # (B, T, C): no position added here, RoPE does it in attention
        attentions = []
        for layer in self.layers:
            x, weights = layer(x, cos, sin)
            attentions.append(weights)
        logits = self.lm_head(self.norm(x))
        return (logits, attentions) if return_attentions else logits

    @classmethod
    def from_hf(cls, hf_model) -> LLaMA:
        """Our LLaMA with the weights of a transformers ``LlamaForCausalLM`` (names match after
        dropping the ``model.`` prefix)."""
        hf = hf_model.config
        _check_model_type(hf, "llama", "LLaMA")
        rope = getattr(hf, "rope_parameters", None) or {}
        if rope.get("rope_type", "default") != "default":
            raise ValueError(
                f"This LLaMA implements plain RoPE; the model uses rope_type={rope['rope_type']!r}."
            )
        theta = rope.get("rope_theta", getattr(hf, "rope_theta", 10000.0))
        config = LLaMAConfig(
            vocab_size=hf.vocab_size,
            block_size=hf.max_position_embeddings,
            n_layer=hf.num_hidden_layers,
            n_head=hf.num_attention_heads,
            n_kv_head=hf.num_key_value_heads,
            n_embd=hf.hidden_size,
            intermediate_size=hf.intermediate_size,
            rope_theta=float(theta),
            rms_norm_eps=hf.rms_norm_eps,
            tie_word_embeddings=hf.tie_word_embeddings,
            head_dim=getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads,
        )
        if hf.hidden_act != "silu":
            raise ValueError(f"SwiGLU here uses SiLU; the model has hidden_act={hf.hidden_act!r}.")
        model = cls(config)
        state = {name.removeprefix("model."): t for name, t in hf_model.state_dict().items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [m for m in missing if not (m == "lm_head.weight" and config.tie_word_embeddings)]
        if missing or unexpected:
            raise ValueError(f"Weights do not line up: missing {missing}, unexpected {unexpected}.")
        return model.to(next(hf_model.parameters()).dtype)


def _check_model_type(hf_config, expected: str, ours: str) -> None:
    got = getattr(hf_config, "model_type", None)
    if got != expected:
        other = {"gpt2": "GPT.from_hf", "llama": "LLaMA.from_hf"}.get(got)
        raise ValueError(
            f"{ours}.from_hf loads a {expected!r} model; this one is {got!r}"
            + (f": use {other}." if other else ".")
        )


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (a tied matrix counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def kv_cache_bytes(
    n_layer: int, n_kv_head: int, head_dim: int, seq_len: int, bytes_per_value: int = 2
) -> int:
    """Memory a KV cache needs for one sequence: keys and values for every layer and position."""
    sizes = {"n_layer": n_layer, "n_kv_head": n_kv_head, "head_dim": head_dim, "seq_len": seq_len}
    checks.ints(checks.arguments("kv_cache_bytes", **sizes), *sizes, minimum=0)
    checks.argument("kv_cache_bytes", "bytes_per_value", bytes_per_value, checks.ints)
    return 2 * n_layer * n_kv_head * head_dim * seq_len * bytes_per_value


__all__ = [
    "GPT",
    "GPTConfig",
    "GPTBlock",
    "GPTAttention",
    "GPTMLP",
    "LLaMA",
    "LLaMAConfig",
    "LLaMABlock",
    "LLaMAAttention",
    "RMSNorm",
    "SwiGLU",
    "apply_rope",
    "rope_cos_sin",
    "rotate_half",
    "count_parameters",
    "kv_cache_bytes",
]
