"""One rollout core: how every method samples reviews and reads their log-probabilities.

PPO's training rollouts, our RLOO and GRPO, the held-out evaluation of chapter 6, best-of-n and
the SFT samples of chapter 3 all sample here, so they sample the same way:

- :func:`sampling_settings` writes every sampling choice into one explicit ``GenerationConfig``.
  Each field that changes what is sampled is set, so nothing saved with a model (a
  ``repetition_penalty``, a ``top_k``) can silently change it: transformers fills only the fields
  left unset from the model's own generation config.
- :func:`sample` returns a :class:`Rollout`: prompt and response ids side by side, the masks, the
  texts, and the settings it used. With ``seed`` it runs inside :func:`torch.random.fork_rng`, so
  an evaluation never moves the caller's random stream (a training run measured at checkpoints
  samples what it would have sampled unmeasured). It pads on the left without changing the
  caller's tokenizer. Its loop (:func:`sample_tokens`) is ``generate()``'s own for these settings,
  written out: the same tokens from the same random state (``tests/test_rollout.py``), without
  the per-step bookkeeping generate() does for settings we never use (measured: a rollout of 32
  reviews of 24 tokens took 16% less time).
- :func:`token_logprobs` (and :func:`next_token_logprobs`, the whole distribution) scores a
  rollout's response tokens under any model with the same token ids: the policy, the frozen
  reference, a copy being trained.

Shapes: ``[B, T]`` = (responses, response tokens); ``mask`` is 1 for the tokens of a response up to
and including its first end-of-sequence token, 0 for the padding after it.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import GenerationConfig

from rlhf_lib import checks


def sampling_settings(tokenizer, max_new_tokens: int, temperature: float = 1.0,
                      greedy: bool = False) -> GenerationConfig:  # fmt: skip
    """Ancestral sampling at ``temperature`` (no top-k, no top-p, no penalties), or greedy
    decoding, for at most ``max_new_tokens`` tokens; it stops at the tokenizer's EOS."""
    checks.argument("sampling_settings", "max_new_tokens", max_new_tokens, checks.ints)
    checks.argument("sampling_settings", "temperature", temperature)
    checks.require_pad_token(tokenizer, "sampling_settings")
    return GenerationConfig(
        do_sample=not greedy,
        temperature=temperature if not greedy else 1.0,
        top_k=0 if not greedy else None,  # 0: the whole vocabulary
        top_p=1.0,
        typical_p=1.0,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        num_beams=1,
        min_new_tokens=0,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


@dataclass
class Rollout:
    """Sampled responses to ``prompts``: ``input_ids = [left-padded prompt | response]``."""

    prompts: list[str]
    input_ids: torch.Tensor  # [B, P + T]; response tokens after the first EOS are padding
    attention_mask: torch.Tensor  # [B, P + T]
    context_length: int  # P: the response starts at this column
    completions: list[str]  # each response as text, without special tokens
    settings: GenerationConfig
    # [B, T, vocab]: the sampling policy's log-distribution at each response position, read off
    # the logits the sampling loop drew from (``sample(..., keep_logprobs=True)``), else None
    policy_logprobs: torch.Tensor | None = None

    @property
    def responses(self) -> torch.Tensor:
        """``[B, T]`` response token ids (padding after the first EOS)."""
        return self.input_ids[:, self.context_length :]

    @property
    def mask(self) -> torch.Tensor:
        """``[B, T]`` float: 1 on a response's tokens up to and including its first EOS."""
        return self.attention_mask[:, self.context_length :].float()

    @property
    def texts(self) -> list[str]:
        """Prompt + completion: the full reviews, as the reward model reads them."""
        return [p + c for p, c in zip(self.prompts, self.completions, strict=True)]

    @property
    def ended(self) -> torch.Tensor:
        """``[B]`` bool: the response reached EOS before the length cap."""
        return (self.responses == self.settings.eos_token_id).any(1)

    @property
    def logprobs(self) -> torch.Tensor:
        """``[B, T]`` log-probabilities of the sampled tokens under the policy that sampled them
        (kept by ``sample(..., keep_logprobs=True)``)."""
        if self.policy_logprobs is None:
            raise ValueError(
                "This rollout kept no log-probabilities: sample it with keep_logprobs=True, or "
                "compute them with token_logprobs(policy, rollout)."
            )
        return self.at_sampled_tokens(self.policy_logprobs)

    def at_sampled_tokens(self, per_vocab: torch.Tensor) -> torch.Tensor:
        """``[B, T]``: the entries of a ``[B, T, vocab]`` tensor at each sampled response token."""
        return per_vocab.gather(-1, self.responses.unsqueeze(-1)).squeeze(-1)

    def select(self, index: torch.Tensor) -> Rollout:
        """The rollout of the responses at ``index`` (a minibatch)."""
        rows = index.tolist()
        kept = None if self.policy_logprobs is None else self.policy_logprobs[index]
        return Rollout([self.prompts[i] for i in rows], self.input_ids[index],
                       self.attention_mask[index], self.context_length,
                       [self.completions[i] for i in rows], self.settings, kept)  # fmt: skip

    def trimmed(self) -> tuple[Rollout, int]:
        """This rollout without the columns that are padding in every row, and ``T'``, the number
        of response tokens it keeps: the first ``T'`` columns of any ``[B, T]`` tensor of it.

        A minibatch's rows share some left padding (its longest prompt is often shorter than the
        rollout's) and some right padding (after every one of its responses has ended). Those
        columns change no loss, since every loss masks padding, but each costs a forward and a
        backward pass: trimming them saves about 3% of an update on chapter 6's rollouts."""
        used = self.attention_mask.bool().any(0)
        first = int(used[: self.context_length].float().argmax())  # first column any prompt uses
        n_response = int(self.mask.any(0).nonzero().max()) + 1 if self.mask.any() else 1
        end = self.context_length + n_response
        kept = None if self.policy_logprobs is None else self.policy_logprobs[:, :n_response]
        columns = slice(first, end)
        return Rollout(self.prompts, self.input_ids[:, columns], self.attention_mask[:, columns],
                       self.context_length - first, self.completions, self.settings,
                       kept), n_response  # fmt: skip


def response_mask(responses: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """1 for each response token up to and including the first EOS, 0 after it."""
    is_eos = (responses == eos_token_id).long()
    eos_seen_before = is_eos.cumsum(1) - is_eos  # EOS tokens strictly before each position
    return (eos_seen_before == 0).long()


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    # Left-padded prompts: positions count real tokens only, as generate() counts them.
    return (attention_mask.cumsum(1) - 1).clamp(min=0)


@torch.no_grad()
def forward_with_cache(model, past, **inputs):
    """One forward pass that reads and extends the KV cache ``past`` (``None`` to start one):
    ``(output, cache)``. transformers renamed ``past_key_values`` to ``cache`` during 5.x; Colab
    may have either."""
    if "cache" in inspect.signature(model.forward).parameters:
        out = model(**inputs, cache=past, use_cache=True)
        return out, out.cache
    out = model(**inputs, past_key_values=past, use_cache=True)
    return out, out.past_key_values


# The GenerationConfig fields sample_tokens() implements, and the values it takes them to hold:
# anything else (a top-k, a repetition penalty) it would silently ignore, so it refuses it.
_PLAIN_SAMPLING = {"top_k": (0, None), "top_p": (1.0, None), "typical_p": (1.0, None),
                   "repetition_penalty": (1.0, None), "no_repeat_ngram_size": (0, None),
                   "num_beams": (1, None), "min_new_tokens": (0, None)}  # fmt: skip


def _check_plain_sampling(settings: GenerationConfig, where: str) -> None:
    unsupported = {name: getattr(settings, name, None) for name, allowed in _PLAIN_SAMPLING.items()
                   if getattr(settings, name, None) not in allowed}  # fmt: skip
    if unsupported or not isinstance(settings.eos_token_id, int) or not settings.max_new_tokens:
        raise ValueError(
            f"{where}: settings must ask for ancestral sampling at a temperature, or greedy "
            f"decoding, with one EOS token and max_new_tokens set; got {unsupported or settings}. "
            "Build them with rlhf_lib.rollout.sampling_settings()."
        )


@torch.no_grad()
def sample_tokens(policy, input_ids, attention_mask, settings: GenerationConfig):
    """The sampling loop: ``[B, T]`` response tokens (``settings.pad_token_id`` after a row's
    EOS) and the list of each step's raw logits ``[B, vocab]``.

    One forward pass per token: the whole left-padded prompt first, then only the newest token
    against the KV cache. A step draws from ``softmax(logits / temperature)`` (or takes the
    arg-max, greedy) in every row, ended or not, exactly as generate() does, so the random stream
    moves as generate()'s; it stops after ``max_new_tokens`` or once every row has ended."""
    positions = position_ids_from_mask(attention_mask)
    unfinished = torch.ones(len(input_ids), dtype=torch.bool, device=input_ids.device)
    tokens, step_logits, past = [], [], None
    ids = input_ids
    for _ in range(settings.max_new_tokens):
        out, past = forward_with_cache(policy, past, input_ids=ids, attention_mask=attention_mask,
                                       position_ids=positions, logits_to_keep=1)  # fmt: skip
        logits = out.logits[:, -1].float()
        step_logits.append(logits)
        if settings.do_sample:
            probs = F.softmax(logits / settings.temperature, dim=-1)
            token = torch.multinomial(probs, num_samples=1).squeeze(1)
        else:
            token = logits.argmax(-1)
        token = token.masked_fill(~unfinished, settings.pad_token_id)
        tokens.append(token)
        unfinished &= token != settings.eos_token_id
        if not unfinished.any():
            break
        ids = token[:, None]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(ids), 1)], 1)
        positions = positions[:, -1:] + 1
    return torch.stack(tokens, 1), step_logits


@torch.no_grad()
def sample(policy, tokenizer, prompts: list[str], settings: GenerationConfig,
           seed: int | None = None, where: str = "sample",
           keep_logprobs: bool = False) -> Rollout:  # fmt: skip
    """One response per prompt from ``policy`` with ``settings`` (see :func:`sampling_settings`).

    ``seed=None`` draws from the global random stream (a training run's own); an int seeds a
    private stream inside :func:`torch.random.fork_rng` and leaves the caller's untouched. The
    policy is sampled in eval mode (no dropout) and left in the mode it was in.

    With ``keep_logprobs`` the rollout keeps the policy's log-distributions at each response
    position (``Rollout.policy_logprobs``), from the logits the loop computed to sample: a
    trainer then needs no second forward pass of the policy over its own samples.
    """
    prompts = checks.require_texts(prompts, where, "prompts", allow_empty=False)
    checks.require_pad_token(tokenizer, where)
    if not isinstance(settings, GenerationConfig):
        raise TypeError(
            f"{where}: settings must be a transformers GenerationConfig, got "
            f"{type(settings).__name__}. Build one with rlhf_lib.rollout.sampling_settings()."
        )
    _check_plain_sampling(settings, where)
    checks.check_fits_context(policy, tokenizer, prompts, settings.max_new_tokens, where)
    device = next(policy.parameters()).device
    # the loop appends on the right: pad on the left (the caller's tokenizer is unchanged)
    query = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left").to(device)
    context_length = query["input_ids"].shape[1]
    was_training = policy.training
    policy.eval()
    try:
        with torch.random.fork_rng() if seed is not None else contextlib.nullcontext():
            if seed is not None:
                torch.manual_seed(seed)
            responses, step_logits = sample_tokens(policy, query["input_ids"],
                                                   query["attention_mask"], settings)  # fmt: skip
    finally:
        policy.train(was_training)
    mask = response_mask(responses, settings.eos_token_id)  # the loop already padded after EOS
    completions = [tokenizer.decode(r[m.bool()], skip_special_tokens=True)
                   for r, m in zip(responses, mask, strict=True)]  # fmt: skip
    policy_logprobs = None
    if keep_logprobs:  # the raw logits of each step, before sampling divides by the temperature
        logits = torch.stack(step_logits, dim=1)
        policy_logprobs = F.log_softmax(logits / settings.temperature, dim=-1)
    return Rollout(list(prompts), torch.cat([query["input_ids"], responses], 1),
                   torch.cat([query["attention_mask"], mask], 1), context_length, completions,
                   settings, policy_logprobs)  # fmt: skip


def next_token_logprobs(model, rollout: Rollout, temperature: float = 1.0) -> torch.Tensor:
    """``[B, T, vocab]``: the model's log-distribution over the next token at each response
    position, at ``temperature`` (the sampling temperature: the distribution actually sampled)."""
    n_response = rollout.input_ids.shape[1] - rollout.context_length
    logits = model(
        input_ids=rollout.input_ids,
        attention_mask=rollout.attention_mask,
        position_ids=position_ids_from_mask(rollout.attention_mask),
        # the output layer only where it predicts a response token: the prompt's own next-token
        # predictions are never used
        logits_to_keep=n_response + 1,
    ).logits[:, :-1]  # the last position predicts past the response
    return F.log_softmax(logits / temperature, dim=-1)


def token_logprobs(model, rollout: Rollout, temperature: float = 1.0,
                   with_entropy: bool = False):  # fmt: skip
    """``[B, T]`` log-probabilities of the sampled response tokens under ``model``; with
    ``with_entropy``, also the ``[B, T]`` entropy of each next-token distribution."""
    logprobs_all = next_token_logprobs(model, rollout, temperature)
    logprobs = rollout.at_sampled_tokens(logprobs_all)
    if not with_entropy:
        return logprobs
    return logprobs, -(logprobs_all.exp() * logprobs_all).sum(-1)
