"""How every policy of chapters 5 and 6 is measured: one function, on held-out prompts.

- :func:`evaluation_prompts`: review openings no stage trained on;
- :func:`evaluate_policy`: one sampled review per prompt, scored by the reward model and the hidden
  gold preference, with the KL to the reference computed exactly at every sampled state;
- :class:`Checkpoints`: :func:`evaluate_policy` after chosen training steps, its time kept apart
  from the training time;
- :func:`score_policy` and :func:`gold_win_rate`: per-review scores, for comparing two policies
  review by review.

Sampling is :func:`rlhf_lib.rollout.sample` on its own random stream, so measuring a run at a
checkpoint never changes what the run samples next.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from rlhf_lib import checks
from rlhf_lib.annotators import gold_score
from rlhf_lib.reward_model import load_reward_model, score_texts
from rlhf_lib.rollout import next_token_logprobs, sample, sampling_settings
from rlhf_lib.sft import review_prompts, sample_completions


def evaluation_prompts(n: int = 200, seed: int = 4) -> list[str]:
    """Held-out openings for comparing policies after training."""
    return review_prompts(n, seed=seed)


@torch.no_grad()
def evaluate_policy(policy, reference, tokenizer, prompts, reward_model, rm_tokenizer,
                    max_new_tokens: int = 24, seed: int = 0) -> dict:  # fmt: skip
    """Sample one review per prompt and measure it three ways.

    Returns the mean proxy reward (reward model), the mean gold score, the texts, and the KL
    divergence from the reference, ``KL(π ‖ π_ref)`` per review in nats, estimated as the mean
    over samples of ``Σ_t KL(π(·|s_t) ‖ π_ref(·|s_t))``: the exact KL of each next-token
    distribution along the sampled review. That is unbiased, like ``Σ_t log π(y_t) − log
    π_ref(y_t)``, but never negative and much less noisy (the sum over the vocabulary replaces
    the one sampled token). Sampling uses its own random stream (``seed``), so measuring a run
    at a checkpoint does not change what the run samples next.
    """
    checks.argument("evaluate_policy", "max_new_tokens", max_new_tokens, checks.ints)
    checks.require_pad_token(tokenizer, "evaluate_policy")
    # sampled in eval mode (no dropout): the distribution whose KL is measured is the one kept
    rollout = sample(policy, tokenizer, prompts, sampling_settings(tokenizer, max_new_tokens),
                     seed=seed, where="evaluate_policy", keep_logprobs=True)  # fmt: skip
    logp = rollout.policy_logprobs
    logp_ref = next_token_logprobs(reference, rollout)
    kl_per_token = (logp.exp() * (logp - logp_ref)).sum(-1)  # (B, T), exact at each state
    kl = (kl_per_token * rollout.mask).sum(1)
    texts = rollout.texts
    gold = np.asarray(gold_score(texts), dtype=float)
    return {
        "proxy": float(np.mean(score_texts(reward_model, rm_tokenizer, texts))),
        "gold": float(gold.mean()),
        # the standard error of the mean gold score: what separates two policies from noise
        "gold_se": float(gold.std(ddof=1) / np.sqrt(len(gold))) if len(gold) > 1 else 0.0,
        "kl": float(kl.mean()),
        "texts": texts,
    }


class Checkpoints:
    """Evaluates the policy after chosen numbers of training steps, and keeps the time it spent
    apart, so the training time a method reports excludes its own measurement.

    ``config`` is a run's config (:class:`rlhf_lib.rlhf_run.RLHFRunConfig` or
    :class:`rlhf_lib.beyond_ppo.MethodRunConfig`): its ``reward_model``, ``n_eval_prompts``,
    ``eval_max_new_tokens``, ``n_checkpoints`` and ``seed``."""

    def __init__(self, config, reference, tokenizer, total_steps: int,
                 samples_per_step: float):  # fmt: skip
        self.config, self.reference, self.tokenizer = config, reference, tokenizer
        self.reward_model, self.rm_tokenizer = load_reward_model(config.reward_model)
        self.prompts = evaluation_prompts(config.n_eval_prompts)
        # before training: a context overflow would otherwise end a long run at its first checkpoint
        checks.check_fits_context(reference, tokenizer, self.prompts, config.eval_max_new_tokens,
                                  f"{type(config).__name__}.eval_max_new_tokens")  # fmt: skip
        self.samples_per_step = samples_per_step
        n = config.n_checkpoints
        self.steps = sorted({round(total_steps * (i + 1) / n) for i in range(n)})
        self.rows: list[dict] = []
        self.texts: list[str] = []
        self.wall_seconds = self.cpu_seconds = 0.0

    def after_step(self, trainer) -> None:
        """Measure ``trainer.policy`` if its finished steps are a checkpoint (a hook for
        :meth:`rlhf_lib.ppo.PPOTrainer.train`)."""
        step = len(trainer.history)
        if step in self.steps:
            self.measure(trainer.policy, step)

    def measure(self, policy, step: int) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        config = self.config
        result = evaluate_policy(policy, self.reference, self.tokenizer, self.prompts,
                                 self.reward_model, self.rm_tokenizer,
                                 config.eval_max_new_tokens, seed=config.seed)  # fmt: skip
        self.texts = result.pop("texts")
        self.rows.append({"step": step, "samples": round(step * self.samples_per_step), **result})
        self.wall_seconds += time.perf_counter() - wall
        self.cpu_seconds += time.process_time() - cpu


def sft_checkpoint(checkpoints: Checkpoints) -> dict:
    """The common starting point: the SFT policy (the frozen reference) measured as every
    checkpoint is, against itself (KL 0)."""
    reference, config = checkpoints.reference, checkpoints.config
    result = evaluate_policy(reference, reference, checkpoints.tokenizer, checkpoints.prompts,
                             checkpoints.reward_model, checkpoints.rm_tokenizer,
                             config.eval_max_new_tokens, seed=config.seed)  # fmt: skip
    return {"step": 0, "samples": 0, **{k: v for k, v in result.items() if k != "texts"}}


def score_policy(policy, tokenizer, prompts, reward_model, rm_tokenizer, seed=0, max_new_tokens=40):
    """Sample one review per prompt; return the texts with their reward-model and gold scores."""
    completions = sample_completions(
        policy, tokenizer, prompts, max_new_tokens=max_new_tokens, seed=seed
    )
    texts = [p + c for p, c in zip(prompts, completions, strict=True)]
    return {
        "text": texts,
        "rm": score_texts(reward_model, rm_tokenizer, texts),
        "gold": np.asarray(gold_score(texts)),
    }


def gold_win_rate(gold_a, gold_b) -> float:
    """How often the gold preference prefers a over b on the same prompt (ties count half)."""
    gold_a, gold_b = np.asarray(gold_a), np.asarray(gold_b)
    return float(np.mean((gold_a > gold_b) + 0.5 * (gold_a == gold_b)))
