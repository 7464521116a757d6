"""The objectives of chapter 6, side by side: each advantage estimator and loss on one screen.

Pure functions of tensors, checked against loops, their formulas and TRL's own code in
``tests/test_beyond_ppo.py`` and ``tests/test_objectives.py``. PPO's own pieces (GAE, the clipped
losses, the KL estimators) are in :mod:`rlhf_lib.ppo`, whose chapter introduces them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlhf_lib import checks
from rlhf_lib.ppo import clipped_policy_loss, kl_estimate


def _groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    if not checks.is_int(group_size) or group_size < 2:
        raise ValueError(
            f"group_size must be an int >= 2, got {group_size!r}: rewards come in whole groups of "
            "completions of one prompt, and each one's baseline is the rest of its group."
        )
    if rewards.ndim != 1:
        raise ValueError(
            f"rewards must be a flat tensor [n_prompts * group_size], completions of one prompt "
            f"next to each other; got shape {tuple(rewards.shape)}. Flatten it: rewards.view(-1)."
        )
    if rewards.numel() % group_size:
        raise ValueError(
            f"rewards must be a flat tensor of whole groups of group_size={group_size} "
            f"completions (completions of one prompt next to each other); got shape "
            f"{tuple(rewards.shape)}, which is not a multiple of {group_size}."
        )
    return rewards.view(-1, group_size)


def grpo_advantages(rewards, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """GRPO (Shao et al., 2024): each completion's reward minus its group's mean, divided by the
    group's standard deviation. No value model: the group is the baseline."""
    groups = _groups(rewards, group_size)
    # eps > 0 keeps a group of equal rewards at advantage 0 (not 0/0) and the sign right
    checks.argument("grpo_advantages", "eps", eps)
    return ((groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + eps)).view(-1)


def rloo_advantages(rewards, group_size: int) -> torch.Tensor:
    """RLOO (Kool et al., 2019; Ahmadian et al., 2024): each completion's reward minus the mean
    reward of the *other* completions of its prompt, a baseline that does not depend on the
    completion itself, so the policy gradient stays unbiased."""
    groups = _groups(rewards, group_size)
    others_mean = (groups.sum(1, keepdim=True) - groups) / (group_size - 1)
    return (groups - others_mean).view(-1)


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             beta: float = 0.1) -> torch.Tensor:  # fmt: skip
    """DPO (Rafailov et al., 2023): ``-log σ(β[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) −
    log π_ref(y_l))])``, averaged over pairs. The arguments are summed log-probabilities of each
    completion given its prompt; ``β · log π/π_ref`` plays the part of the reward."""
    # one value per pair in each: a [B, 1] next to a [B] would broadcast to a [B, B] loss
    checks.same_shape("dpo_loss", policy_chosen_logps=policy_chosen_logps,
                      policy_rejected_logps=policy_rejected_logps,
                      ref_chosen_logps=ref_chosen_logps,
                      ref_rejected_logps=ref_rejected_logps)  # fmt: skip
    checks.argument("dpo_loss", "beta", beta)  # β <= 0 would prefer the rejected completions
    chosen = policy_chosen_logps - ref_chosen_logps
    rejected = policy_rejected_logps - ref_rejected_logps
    return -F.logsigmoid(beta * (chosen - rejected)).mean()


# TRL 1.16's RLOOTrainer and GRPOTrainer, as chapter 6 runs them (beyond_ppo._train_online_trl:
# beta=0.05, num_generations=4, num_iterations=4, steps_per_generation=4, TRL's other defaults).
# A trainer calls: rewards -> rloo_advantages / grpo_advantages(rewards, group_size) -> the loss.


def _check_responses(where: str, mask: torch.Tensor, **per_token: torch.Tensor) -> None:
    """Per-token tensors ``[B, T]`` next to the response ``mask``, with at least one token."""
    checks.same_shape(where, mask=mask, **per_token)
    if mask.dim() != 2:
        raise ValueError(
            f"{where}: mask and the log-probs must be [B, T] (one row per completion), got shape "
            f"{tuple(mask.shape)}. For one completion pass x[None]."
        )
    if not mask.bool().any():
        raise ValueError(f"{where}: the mask selects no response token: there is nothing to train.")


def _check_per_sequence(where: str, name: str, value: torch.Tensor, mask: torch.Tensor) -> None:
    """One number per completion, ``[B]`` (a ``[B, 1]`` would broadcast into a ``[B, B]``)."""
    checks.same_shape(where, **{name: value})
    if tuple(value.shape) != (mask.shape[0],):
        raise ValueError(
            f"{where}: {name} must hold one number per completion, shape ({mask.shape[0]},), got "
            f"{tuple(value.shape)}. Flatten it: {name}.view(-1)."
        )


def _responses(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # select, do not multiply: -inf or NaN at a padding position times 0 is still NaN (and so is
    # its gradient through exp), so padding becomes 0 before any arithmetic
    return torch.where(mask.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))


def _sequence_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _responses(x, mask).sum(-1)


def rloo_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                 mask: torch.Tensor, beta: float = 0.05) -> torch.Tensor:  # fmt: skip
    """RLOO's reward of each completion: its score minus ``β`` times its whole KL to the reference,

    ``r_i = score_i − β · Σ_t mask_it · (log π_old(y_it) − log π_ref(y_it))``,

    as TRL 1.16's ``RLOOTrainer`` with its defaults: the KL is folded into the reward once per
    sequence (``beta``, default 0.05), not added to the loss; its estimator is k1, the plain log
    ratio (negative on some tokens), summed over the response tokens; ``logprobs`` are those of
    the policy that *sampled* the completions (TRL's ``old_per_token_logps``, one forward pass
    right after generation), so the penalty is a constant, not differentiated. No reward clipping
    (``reward_clip_range=None``); ``scores`` is the weighted sum of the reward functions
    (``reward_weights``). ``scores``: ``[B]``; the others ``[B, T]``; returns ``[B]``.
    """
    where = "rloo_rewards"
    _check_responses(where, mask, logprobs=logprobs, ref_logprobs=ref_logprobs)
    _check_per_sequence(where, "scores", scores, mask)
    checks.argument(where, "beta", beta, checks.non_negative)
    kl = _sequence_sum(kl_estimate(logprobs, ref_logprobs, "k1"), mask)
    return scores - beta * kl.detach()


def rloo_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor,
                     advantages: torch.Tensor, mask: torch.Tensor,
                     epsilon: float = 0.2) -> tuple[torch.Tensor, dict]:  # fmt: skip
    """RLOO's clipped loss on whole sequences, averaged over the completions of the batch:

    ``ρ_i = exp(Σ_t mask_it · (log π(y_it) − log π_old(y_it)))``,
    ``loss = mean_i −min(ρ_i · A_i, clip(ρ_i, 1−ε, 1+ε) · A_i)``,

    as TRL 1.16's ``RLOOTrainer`` with its defaults: one importance ratio per *sequence*, the ratio
    of the whole completion's probabilities (a sum of log-probs, not GSPO's mean), clipped
    symmetrically (``epsilon=0.2``; ``epsilon_high=None`` means ε too); no KL in the loss (it is
    in the reward, see :func:`rloo_rewards`); the mean over the micro-batch's completions (one
    optimizer step at ``gradient_accumulation_steps=1``). This is PPO's
    :func:`rlhf_lib.ppo.clipped_policy_loss` with a sequence as its one "token". ``advantages``:
    ``[B]`` (``rloo_advantages``, not normalised: ``normalize_advantages=False``); the others
    ``[B, T]``. Stats: ``clipfrac`` (share of sequences clipped), ``ratio``, ``approxkl``.
    """
    where = "rloo_policy_loss"
    _check_responses(where, mask, logprobs=logprobs, old_logprobs=old_logprobs)
    _check_per_sequence(where, "advantages", advantages, mask)
    checks.argument(where, "epsilon", epsilon, checks.numbers, low=0, high=1, low_open=True,
                    high_open=True)  # fmt: skip
    sequence = _sequence_sum(logprobs, mask)[:, None]  # [B, 1]: one "token" per completion
    old_sequence = _sequence_sum(old_logprobs, mask)[:, None]
    ones = torch.ones_like(sequence)
    return clipped_policy_loss(sequence, old_sequence, advantages[:, None], ones, epsilon)


def grpo_num_tokens(generation_mask: torch.Tensor, steps_per_generation: int,
                    gradient_accumulation_steps: int = 1) -> float:  # fmt: skip
    """The number GRPO's loss of one micro-batch is divided by: the response tokens of the whole
    *generation batch*, per optimizer step,

    ``max(Σ generation_mask, 1) · gradient_accumulation_steps / steps_per_generation``,

    as TRL 1.16's ``GRPOTrainer`` with ``loss_type="dapo"`` (its default) on one process: its
    ``num_items_in_batch`` is counted once per generation, before the batch is shuffled and split
    into ``steps_per_generation`` micro-batches. So a micro-batch of long completions weighs more
    than one of short ones, and each token of the generation batch weighs the same.
    """
    checks.same_shape("grpo_num_tokens", generation_mask=generation_mask)
    checks.argument("grpo_num_tokens", "steps_per_generation", steps_per_generation, checks.ints)
    checks.argument("grpo_num_tokens", "gradient_accumulation_steps", gradient_accumulation_steps,
                    checks.ints)  # fmt: skip
    tokens = max(float(generation_mask.sum()), 1.0)
    return tokens * gradient_accumulation_steps / steps_per_generation


def grpo_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor,
                     ref_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                     beta: float = 0.05, epsilon: float = 0.2,
                     num_tokens: float | None = None) -> tuple[torch.Tensor, dict]:  # fmt: skip
    """GRPO's clipped loss per token plus a KL penalty per token, summed and divided by a count:

    ``ρ_it = exp(log π(y_it) − log π_old(y_it))``,  ``k3_it = exp(q) − 1 − q`` with
    ``q = log π_ref(y_it) − log π(y_it)``,
    ``loss = Σ_it mask_it · (−min(ρ_it A_i, clip(ρ_it, 1−ε, 1+ε) A_i) + β ρ_it k3_it) / N``,

    as TRL 1.16's ``GRPOTrainer`` with its defaults: ratios per token
    (``importance_sampling_level="token"``), clipped symmetrically (``epsilon=0.2``,
    ``epsilon_high=None``, ``delta=None``); the KL in the loss, not the reward, k3 of the *current*
    policy (``beta``; GRPOConfig's own default is 0.0, chapter 6 sets 0.05), times the
    differentiable ratio ρ (``use_bias_correction_kl=True``: the unbiased reverse-KL gradient);
    ``loss_type="dapo"``: the sum over the micro-batch's tokens divided by ``N = num_tokens``, see
    :func:`grpo_num_tokens` (``None``: this micro-batch's own token count, TRL's ``"bnpo"``).
    ``advantages``: ``[B]`` (``grpo_advantages``: ``scale_rewards="group"``); the others
    ``[B, T]``. Stats: ``clipfrac`` (share of tokens clipped), ``ratio``, ``approxkl`` and ``kl``,
    the mean of ``ρ·k3`` over tokens, which TRL logs as ``kl``.
    """
    where = "grpo_policy_loss"
    _check_responses(where, mask, logprobs=logprobs, old_logprobs=old_logprobs,
                     ref_logprobs=ref_logprobs)  # fmt: skip
    _check_per_sequence(where, "advantages", advantages, mask)
    checks.argument(where, "beta", beta, checks.non_negative)
    if isinstance(num_tokens, torch.Tensor):
        num_tokens = num_tokens.item()
    checks.argument(where, "num_tokens", num_tokens, optional=True)
    checks.argument(where, "epsilon", epsilon, checks.numbers, low=0, high=1, low_open=True,
                    high_open=True)  # fmt: skip
    tokens = mask.to(logprobs.dtype).sum()
    # PPO's loss averages over this micro-batch's tokens; dapo sums and divides by num_tokens
    mean_loss, stats = clipped_policy_loss(logprobs, old_logprobs, advantages[:, None], mask,
                                           epsilon)  # fmt: skip
    logprobs, old_logprobs = _responses(logprobs, mask), _responses(old_logprobs, mask)
    ratio = (logprobs - old_logprobs).exp()
    kl = ratio * kl_estimate(logprobs, _responses(ref_logprobs, mask), "k3")  # 0 at padding
    kl_sum = _sequence_sum(kl, mask).sum()
    loss = (mean_loss * tokens + beta * kl_sum) / (tokens if num_tokens is None else num_tokens)
    stats["kl"] = (kl_sum / tokens).item()
    return loss, stats
