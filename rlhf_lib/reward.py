"""Reward-model losses (Chapter 4, "Training a reward model").

A reward model scores a text with one number. It is trained on preference pairs with the
Bradley–Terry model (Bradley and Terry, 1952): the probability that the chosen text beats the
rejected one is ``sigmoid(r_chosen - r_rejected)``, and the loss is its negative log-likelihood.
This is the loss TRL's ``RewardTrainer`` computes; chapter 4 shows that the two agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlhf_lib import checks


def bradley_terry_loss(
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    margin: torch.Tensor | float | None = None,
    center_rewards_coefficient: float | None = None,
) -> torch.Tensor:
    """Mean of ``-logsigmoid(r_chosen - r_rejected - margin)`` over the pairs.

    ``margin`` (optional, per pair or one number) asks the chosen reward to win by at least that
    much, as in Llama 2's reward models. ``center_rewards_coefficient`` adds
    ``coefficient * mean((r_chosen + r_rejected) ** 2)``, which keeps rewards centred on zero
    (the loss itself only sees differences), as TRL's ``RewardConfig`` option of that name does.
    """
    r_chosen, r_rejected = _rewards(r_chosen), _rewards(r_rejected)
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(
            f"r_chosen and r_rejected must have the same shape (one reward per pair), got "
            f"{tuple(r_chosen.shape)} and {tuple(r_rejected.shape)}."
        )
    if r_chosen.numel() == 0:
        raise ValueError("bradley_terry_loss needs at least one pair; got empty tensors.")
    # a negative coefficient would reward large |r| instead of keeping rewards near 0
    checks.argument("bradley_terry_loss", "center_rewards_coefficient",
                    center_rewards_coefficient, checks.non_negative, optional=True)  # fmt: skip
    difference = r_chosen - r_rejected
    if margin is not None:
        difference = difference - _margin(margin, difference)
    loss = -F.logsigmoid(difference).mean()
    if center_rewards_coefficient is not None:
        loss = loss + center_rewards_coefficient * torch.mean((r_chosen + r_rejected) ** 2)
    return loss


def _rewards(values) -> torch.Tensor:
    rewards = torch.as_tensor(values)
    # integer rewards are numbers too; logsigmoid is only defined for floating point
    return rewards if rewards.is_floating_point() else rewards.float()


def _margin(margin, difference: torch.Tensor) -> torch.Tensor:
    """One number, or one margin per pair of exactly the rewards' shape: a column ``[B, 1]``
    next to ``[B]`` rewards would broadcast to a ``[B, B]`` matrix of every pair with every
    margin, a silently wrong loss."""
    if checks.is_finite_number(margin):
        return torch.tensor(float(margin), dtype=difference.dtype)
    if isinstance(margin, (str, bytes, bool)) or not hasattr(margin, "__len__"):
        raise TypeError(f"margin must be a finite number or per-pair margins, got {margin!r}.")
    margin = torch.as_tensor(margin)  # a tensor, an array or a list
    if margin.shape not in ((), difference.shape):
        raise ValueError(
            f"margin must be one number or one per pair, of the rewards' shape "
            f"{tuple(difference.shape)}; got shape {tuple(margin.shape)}."
            + (" Flatten it: margin.view(-1)." if margin.numel() == difference.numel() else "")
        )
    return margin.to(difference.dtype)
