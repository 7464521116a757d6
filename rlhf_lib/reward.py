"""Reward-model losses (Chapter 4, "Training a reward model").

A reward model scores a text with one number. It is trained on preference pairs with the
Bradley–Terry model (Bradley and Terry, 1952): the probability that the chosen text beats the
rejected one is ``sigmoid(r_chosen - r_rejected)``, and the loss is its negative log-likelihood.
This is the loss TRL's ``RewardTrainer`` computes; chapter 4 shows that the two agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
    r_chosen, r_rejected = torch.as_tensor(r_chosen), torch.as_tensor(r_rejected)
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(
            f"r_chosen and r_rejected must have the same shape (one reward per pair), got "
            f"{tuple(r_chosen.shape)} and {tuple(r_rejected.shape)}."
        )
    if r_chosen.numel() == 0:
        raise ValueError("bradley_terry_loss needs at least one pair; got empty tensors.")
    difference = r_chosen - r_rejected
    if margin is not None:
        difference = difference - torch.as_tensor(margin, dtype=difference.dtype)
    loss = -F.logsigmoid(difference).mean()
    if center_rewards_coefficient is not None:
        loss = loss + center_rewards_coefficient * torch.mean((r_chosen + r_rejected) ** 2)
    return loss
