"""PPO for language models (Chapter 5): the numerical core.

Written to be read next to CleanRL's ``ppo.py`` and TRL's former ``PPOTrainer``. This part holds
the pure functions every PPO step uses, each checked two ways in ``tests/test_ppo_math.py``:

- :func:`whiten` normalises advantages (optionally over masked tokens only);
- :func:`kl_estimate` estimates the per-token KL between the policy and the reference;
- :func:`compute_gae` computes generalised advantage estimates (Schulman et al., 2016), written as
  one matrix product; :func:`compute_gae_loop` is the textbook backward loop it must equal.

Shapes: ``[B, T]`` = (batch of responses, response tokens). ``mask`` is 1 for real response tokens
and 0 for padding.
"""

from __future__ import annotations

import torch

KL_KINDS = ("k1", "k2", "k3")


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items() if t is not None}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"these tensors must have the same [B, T] shape: {shapes}")


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is 1 (all positions if ``mask`` is None)."""
    if mask is None:
        return x.mean()
    _check_same_shape(x=x, mask=mask)
    mask = mask.to(x.dtype)
    count = mask.sum()
    if count == 0:
        raise ValueError("the mask selects no positions: there is nothing to average")
    return (x * mask).sum() / count


def whiten(
    x: torch.Tensor, shift_mean: bool = True, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Normalise ``x`` to unit variance (and zero mean if ``shift_mean``), over masked positions.

    PPO whitens advantages so that the size of a policy step does not depend on the scale of the
    reward. With ``shift_mean=False`` the mean is kept (TRL does this for rewards). Masked
    positions are set to 0 in the result.
    """
    mean = masked_mean(x, mask)
    variance = masked_mean((x - mean) ** 2, mask)
    whitened = (x - mean) * torch.rsqrt(variance + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened if mask is None else whitened * mask.to(x.dtype)


def kl_estimate(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k1"
) -> torch.Tensor:
    """Per-token estimate of KL(policy ‖ reference) from log-probs of the *sampled* tokens.

    With ``r = logq - logp`` (reference over policy), for tokens sampled from the policy:

    - ``k1 = -r = logp - logq``: unbiased, but a single value can be negative;
    - ``k2 = r² / 2``: always ≥ 0, biased, low variance;
    - ``k3 = exp(r) - 1 - r``: always ≥ 0 and unbiased (Schulman's "approximating KL" note).
    """
    if kind not in KL_KINDS:
        raise ValueError(f"kind must be one of {KL_KINDS}, got {kind!r}")
    _check_same_shape(logprobs=logprobs, ref_logprobs=ref_logprobs)
    log_ratio = ref_logprobs - logprobs  # r = log q(x) - log p(x)
    if kind == "k1":
        return -log_ratio
    if kind == "k2":
        return log_ratio**2 / 2
    return torch.expm1(log_ratio) - log_ratio


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    gamma: float,
    lam: float,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation, vectorised: returns ``(advantages, returns)``.

    ``δ_t = r_t + γ·V_{t+1} − V_t`` (``V`` after the last real token is 0: the episode ends) and
    ``A_t = Σ_{k≥0} (γλ)^k · δ_{t+k}``. The sum is one product with the upper-triangular matrix
    ``D[t, s] = (γλ)^(s−t)`` for ``s ≥ t``: readable, and fast for the short responses of RLHF.
    ``returns = advantages + values`` are the value function's targets. Masked positions have
    ``δ = 0`` and advantage 0.
    """
    _check_gae_inputs(rewards, values, gamma, lam, mask)
    mask = torch.ones_like(values) if mask is None else mask.to(values.dtype)
    T = values.shape[-1]
    next_values = torch.cat([values[:, 1:] * mask[:, 1:], values.new_zeros(values.shape[0], 1)], 1)
    deltas = (rewards + gamma * next_values - values) * mask  # (B, T)
    steps = torch.arange(T, dtype=values.dtype, device=values.device)
    offsets = steps[None, :] - steps[:, None]  # offsets[t, s] = s - t
    discount = torch.where(offsets >= 0, (gamma * lam) ** offsets.clamp(min=0), 0.0)  # (T, T)
    advantages = (deltas @ discount.T) * mask  # A[b, t] = Σ_s D[t, s] δ[b, s]
    return advantages, advantages + values


def compute_gae_loop(
    rewards: torch.Tensor,
    values: torch.Tensor,
    gamma: float,
    lam: float,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same advantages as :func:`compute_gae`, by the textbook backward recursion
    ``A_t = δ_t + γλ·A_{t+1}`` (as in CleanRL and TRL). Kept as the reference the tests compare to.
    """
    _check_gae_inputs(rewards, values, gamma, lam, mask)
    mask = torch.ones_like(values) if mask is None else mask.to(values.dtype)
    advantages = torch.zeros_like(values)
    next_value = values.new_zeros(values.shape[0])
    last_advantage = values.new_zeros(values.shape[0])
    for t in reversed(range(values.shape[1])):
        delta = (rewards[:, t] + gamma * next_value - values[:, t]) * mask[:, t]
        last_advantage = delta + gamma * lam * last_advantage
        advantages[:, t] = last_advantage * mask[:, t]
        next_value = values[:, t] * mask[:, t]
    return advantages, advantages + values


def _check_gae_inputs(rewards, values, gamma, lam, mask) -> None:
    _check_same_shape(rewards=rewards, values=values, mask=mask)
    if values.dim() != 2:
        raise ValueError(f"rewards and values must be [B, T] tensors, got {tuple(values.shape)}")
    for name, value in (("gamma", gamma), ("lam", lam)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {value}")
