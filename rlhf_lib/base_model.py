"""The base model of the miniature RLHF world: a tiny GPT-2 pretrained on generated reviews.

Introduced in chapter 2, "Causal transformers" (page "A base model of our own"). It plays the part
that a web-pretrained LLM plays in real RLHF: it writes fluent reviews but has no preference for
good or bad ones. Later chapters start from it:

    from rlhf_lib.base_model import load_base_model
    model, tokenizer = load_base_model()   # trains it first (about a minute) if not cached

It is a transformers ``GPT2LMHeadModel`` built from a config (not our readable ``rlhf_lib.gpt.GPT``,
which the chapter shows gives the same logits), so ``generate``, TRL and ``AutoModelFor*`` work on
it. Pretraining is one readable loop: next-token cross-entropy with teacher forcing, AdamW, linear
warm-up then cosine decay, gradient clipping and (optional) gradient accumulation.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from rlhf_lib import checks
from rlhf_lib.cache import cached_stage, loading_stage
from rlhf_lib.reviews import (
    generate_reviews,
    load_model_and_tokenizer,
    train_tokenizer,
)
from rlhf_lib.runtime import progress

STAGE = "base_model"
HISTORY = "history.json"


@dataclass
class BaseModelConfig:
    """Everything that decides the base model; its hash names the cached stage."""

    # data
    n_reviews: int = 30_000  # ~0.9M tokens: enough variety that memorising does not pay
    n_val_reviews: int = 1_000  # held out, for the perplexity the chapter reports
    seed: int = 0
    vocab_size: int = 640  # the grammar has ~110 words: with 640 BPE tokens each is one token
    # model: a GPT-2 of ~0.9M parameters, small enough for SFT, reward models and PPO on a CPU
    block_size: int = 64  # every review fits (99% are under 55 tokens)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    # optimisation
    max_steps: int = 300  # ~0.7 epoch at 32 x 64 tokens a step: held-out loss has flattened
    batch_size: int = 32  # sequences per optimiser step (after accumulation)
    grad_accum_steps: int = 1  # split each batch into this many micro-batches (same gradient)
    lr: float = 3e-3  # peak; tiny models tolerate (and need, for a short run) a high rate
    warmup_steps: int = 30  # Adam's second-moment estimates are noise at first: go slowly
    min_lr_ratio: float = 0.1  # cosine decays to lr * this, not to zero
    weight_decay: float = 0.1  # on matrices only (not biases, norms, embeddings' positions)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])  # GPT-3's; 0.95 reacts faster
    grad_clip: float = 1.0  # clip the global gradient norm: one bad batch cannot blow up training
    eval_every: int = 50

    def __post_init__(self):
        checks.ints(self, "n_reviews", "n_val_reviews", "block_size", "n_layer", "n_head", "n_embd",
                    "max_steps", "batch_size", "grad_accum_steps", "eval_every")  # fmt: skip
        checks.ints(self, "seed", "warmup_steps", minimum=0)
        checks.ints(self, "vocab_size", minimum=259)  # 256 bytes + 3 special tokens
        checks.positive(self, "lr")
        checks.positive(self, "grad_clip", optional=True)  # None: no clipping
        checks.non_negative(self, "weight_decay")
        checks.numbers(self, "min_lr_ratio", low=0, high=1)
        checks.number_list(self, "betas", length=2, low=0, high=1, high_open=True)
        checks.multiple_of(self, "n_embd", "n_head", "each head gets n_embd // n_head channels")
        checks.multiple_of(self, "batch_size", "grad_accum_steps",
                           "each micro-batch gets batch_size // grad_accum_steps")  # fmt: skip
        if not self.warmup_steps < self.max_steps:
            raise checks.ConfigError(
                f"BaseModelConfig.warmup_steps={self.warmup_steps} must be in [0, max_steps="
                f"{self.max_steps}): lower warmup_steps or raise max_steps."
            )


def lr_at(step: int, lr: float, max_steps: int, warmup_steps: int, min_lr_ratio: float = 0.1):
    """Learning rate at ``step``: linear warm-up to ``lr``, then cosine decay to
    ``lr * min_lr_ratio`` at ``max_steps``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress_ = (step - warmup_steps) / max(1, max_steps - warmup_steps)  # 0 -> 1
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))  # 1 -> 0
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * cosine)


def pack(tokenizer, texts: list[str], block_size: int) -> torch.Tensor:
    """Concatenate ``<|bos|> review <|eos|>`` for every text and cut the stream into rows of
    ``block_size`` tokens: ``LongTensor[N, block_size]``. No padding is wasted; a row may start in
    the middle of a review, which is why every review begins with ``<|bos|>``."""
    ids: list[int] = []
    for enc in tokenizer(texts)["input_ids"]:  # each already starts with <|bos|>
        ids.extend(enc)
        ids.append(tokenizer.eos_token_id)
    n = len(ids) // block_size
    if n == 0:
        raise ValueError(f"{len(ids)} tokens do not fill one block of {block_size}; add texts.")
    return torch.tensor(ids[: n * block_size]).view(n, block_size)


def next_token_loss(logits: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting ``idx[:, t+1]`` from position ``t`` (teacher forcing:
    every position is trained at once, each given the true previous tokens)."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), idx[:, 1:].reshape(-1))


def _logits(output) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.logits


@torch.no_grad()
def evaluate_loss(model, blocks: torch.Tensor, batch_size: int = 64) -> float:
    """Mean next-token loss (nats per token) of ``model`` on ``blocks``; ``exp`` of it is the
    perplexity."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        x = blocks[i : i + batch_size].to(device)
        total += next_token_loss(_logits(model(x)), x).item() * x.numel()
        count += x.numel()
    model.train(was_training)
    return total / count


def make_optimizer(model, lr: float, weight_decay: float, betas=(0.9, 0.95)):
    """AdamW with weight decay on matrices only (decaying gains and biases only hurts)."""
    params = {id(p): p for p in model.parameters() if p.requires_grad}.values()  # ties once
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]  # fmt: skip
    # fused: one kernel updates every tensor (on a CPU torch's default loops over them)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), fused=True)


def train_causal_lm(
    model,
    train_blocks: torch.Tensor,
    *,
    max_steps: int,
    batch_size: int,
    lr: float,
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.1,
    weight_decay: float = 0.1,
    betas=(0.9, 0.95),
    grad_clip: float | None = 1.0,
    grad_accum_steps: int = 1,
    val_blocks: torch.Tensor | None = None,
    eval_every: int = 50,
    seed: int = 0,
    desc: str = "pretraining",
) -> dict:
    """Pretrain ``model`` (an HF causal LM or ``rlhf_lib.gpt.GPT``) on ``train_blocks``.

    Returns the history: ``step``, ``loss``, ``lr``, ``grad_norm`` per step and ``val_step``,
    ``val_loss`` every ``eval_every`` steps (and at the end).
    """
    args = checks.arguments("train_causal_lm", max_steps=max_steps, batch_size=batch_size, lr=lr,
                            warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio,
                            weight_decay=weight_decay, betas=betas, grad_clip=grad_clip,
                            grad_accum_steps=grad_accum_steps, eval_every=eval_every,
                            seed=seed)  # fmt: skip
    checks.ints(args, "max_steps", "batch_size", "grad_accum_steps", "eval_every")
    checks.ints(args, "warmup_steps", "seed", minimum=0)
    checks.positive(args, "lr")
    checks.positive(args, "grad_clip", optional=True)
    checks.non_negative(args, "weight_decay")
    checks.numbers(args, "min_lr_ratio", low=0, high=1)
    checks.number_list(args, "betas", length=2, low=0, high=1, high_open=True)
    checks.multiple_of(args, "batch_size", "grad_accum_steps")
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    opt = make_optimizer(model, lr, weight_decay, betas)
    micro = batch_size // grad_accum_steps
    history = {k: [] for k in ("step", "loss", "lr", "grad_norm", "val_step", "val_loss")}
    model.train()
    bar = progress(range(max_steps), desc=desc)
    for step in bar:
        # 1. the learning rate for this step
        step_lr = lr_at(step, lr, max_steps, warmup_steps, min_lr_ratio)
        for group in opt.param_groups:
            group["lr"] = step_lr
        # 2. gradients of one batch, accumulated over micro-batches
        rows = torch.randint(len(train_blocks), (batch_size,), generator=generator)
        loss_sum = 0.0
        for chunk in rows.split(micro):
            x = train_blocks[chunk].to(device)
            loss = next_token_loss(_logits(model(x)), x)
            (loss / grad_accum_steps).backward()  # the mean over the batch, not the sum
            loss_sum += loss.item()
        # 3. clip the global gradient norm, step, reset
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip or float("inf"))
        opt.step()
        opt.zero_grad(set_to_none=True)
        history["step"].append(step)
        history["loss"].append(loss_sum / grad_accum_steps)
        history["lr"].append(step_lr)
        history["grad_norm"].append(norm.item())
        # 4. held-out loss now and then
        if val_blocks is not None and ((step + 1) % eval_every == 0 or step + 1 == max_steps):
            history["val_step"].append(step)
            history["val_loss"].append(evaluate_loss(model, val_blocks))
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", refresh=False)
    bar.close()
    model.eval()
    return history


def corpus(config: BaseModelConfig | None = None) -> tuple[list[str], list[str]]:
    """The training and held-out review texts of the base model."""
    config = config or BaseModelConfig()
    reviews = generate_reviews(config.n_reviews + config.n_val_reviews, seed=config.seed)
    texts = [r.text for r in reviews]
    return texts[: config.n_reviews], texts[config.n_reviews :]


def make_model(config: BaseModelConfig, tokenizer):
    """An untrained ``GPT2LMHeadModel`` shaped by ``config``, special ids from ``tokenizer``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(config.seed)
    hf_config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=config.block_size,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # one short epoch: nothing to regularise
        # GPT-2's tanh-GELU as one fused kernel ("gelu_new", transformers' default for GPT-2,
        # computes the same formula in five separate tensor operations): measured 12% less CPU
        # per training step of this model on 2 cores
        activation_function="gelu_pytorch_tanh",
        # saved in config.json: check_tokenizer_matches then refuses another run's tokenizer
        **{checks.VOCAB_HASH_KEY: checks.vocabulary_hash(tokenizer)},
    )  # fmt: skip
    return GPT2LMHeadModel(hf_config)


def build_base_model(folder: Path, config: BaseModelConfig) -> None:
    """Train the tokenizer and the model; save both, and the training history, in ``folder``."""
    train_texts, val_texts = corpus(config)
    tokenizer = train_tokenizer(train_texts, config.vocab_size)
    model = make_model(config, tokenizer)
    train_blocks = pack(tokenizer, train_texts, config.block_size)
    val_blocks = pack(tokenizer, val_texts, config.block_size)
    started = time.perf_counter()
    history = train_causal_lm(
        model,
        train_blocks,
        val_blocks=val_blocks,
        **{k: v for k, v in asdict(config).items() if k in _TRAIN_ARGS},
    )
    history["train_seconds"] = time.perf_counter() - started
    history["n_parameters"] = sum(p.numel() for p in model.parameters())
    history["n_train_tokens"] = train_blocks.numel()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (Path(folder) / HISTORY).write_text(json.dumps(history))


_TRAIN_ARGS = {"max_steps", "batch_size", "lr", "warmup_steps", "min_lr_ratio", "weight_decay",
               "betas", "grad_clip", "grad_accum_steps", "eval_every", "seed"}  # fmt: skip


def base_model_path(config: BaseModelConfig | None = None) -> Path:
    """The cached folder of the base model (trained first if needed, ~1 minute on 2 cores)."""
    config = config or BaseModelConfig()
    return cached_stage(STAGE, config, lambda folder: build_base_model(folder, config))


def load_base_model(config: BaseModelConfig | None = None, device=None):
    """``(model, tokenizer)``: the pretrained base model (eval mode) and its tokenizer.

    This is what later chapters call; it trains the model first if the cache does not have it.
    """
    from transformers import AutoModelForCausalLM

    path = base_model_path(config)
    with loading_stage(path):
        return load_model_and_tokenizer(path, AutoModelForCausalLM, device)


def load_base_history(config: BaseModelConfig | None = None) -> dict:
    """The base model's training history (loss, learning rate, held-out loss per step)."""
    path = base_model_path(config)
    with loading_stage(path):
        return json.loads((path / HISTORY).read_text())
