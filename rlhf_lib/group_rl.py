"""Our RLOO and GRPO (chapter 6): PPO's loop with the value model replaced by a group baseline.

:class:`GroupTrainer` is :class:`rlhf_lib.ppo.PPOTrainer` with one thing changed, the advantage:

- a rollout holds ``batch_size / group_size`` prompts, each sampled ``group_size`` times, the
  completions of one prompt side by side;
- each completion's advantage comes from its group (:func:`rlhf_lib.objectives.rloo_advantages`
  or :func:`rlhf_lib.objectives.grpo_advantages`) and is the same on all its tokens, so no value
  model is trained or run;
- the KL to the reference sits where TRL 1.16 puts it: RLOO folds it into the reward
  (:func:`rlhf_lib.objectives.rloo_rewards`), GRPO adds it to the loss
  (:func:`rlhf_lib.objectives.grpo_policy_loss`), and each uses TRL's loss
  (``tests/test_objectives.py`` checks both against TRL's own code).

Sampling (:mod:`rlhf_lib.rollout`), scoring, the missing-EOS penalty, minibatches, the optimiser,
the gradient clipping and the NaN guard are PPO's, so a comparison of PPO, our RLOO and our GRPO
changes only what the chapter says it changes. PPO's ``gamma``, ``lam``, ``vf_coef``,
``cliprange_value``, ``kl_estimator``, ``entropy_coef`` and ``critic_layers`` play no part here,
and the other value-model fields (``value_model``, ``value_epochs``, ``critic_warmup_epochs``)
must stay at their defaults. The minibatches are reshuffled on every pass over a rollout, as our
PPO does; TRL's trainers split each rollout once and reuse those minibatches for every pass.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

import torch

from rlhf_lib import checks
from rlhf_lib.objectives import (
    grpo_advantages,
    grpo_num_tokens,
    grpo_policy_loss,
    rloo_advantages,
    rloo_policy_loss,
    rloo_rewards,
)
from rlhf_lib.ppo import PPOConfig, PPOTrainer, _mean, kl_estimate
from rlhf_lib.rollout import Rollout, token_logprobs

ESTIMATORS = ("rloo", "grpo")


@dataclass
class GroupConfig(PPOConfig):
    """A :class:`~rlhf_lib.ppo.PPOConfig` plus the estimator and the group size."""

    estimator: str = "rloo"
    group_size: int = 4  # completions per prompt: each one's baseline is the rest of its group

    def __post_init__(self):
        super().__post_init__()
        checks.one_of(self, "estimator", ESTIMATORS)
        checks.ints(self, "group_size")
        if self.group_size < 2:
            raise checks.ConfigError(
                f"GroupConfig.group_size={self.group_size}: the baseline is the other completions "
                "of the same prompt, so use group_size >= 2."
            )
        checks.multiple_of(self, "batch_size", "group_size",
                           "a rollout holds whole groups of completions of one prompt")  # fmt: skip
        critic = (self.value_model, self.value_epochs, self.critic_warmup_epochs)
        if critic != ("separate", None, 0):
            raise checks.ConfigError(
                f"GroupConfig trains no value model ({self.estimator}'s baseline is the group), "
                "so value_model, value_epochs and critic_warmup_epochs must stay at their "
                "defaults."
            )


class GroupTrainer(PPOTrainer):
    """RLOO or GRPO against a reward function (``config.estimator``); no value model."""

    needs_value_model = False

    def __init__(self, config: GroupConfig, policy, ref_policy, tokenizer, prompts, reward_fn,
                 gold_fn=None):  # fmt: skip
        if not isinstance(config, GroupConfig):
            raise TypeError(f"config must be a GroupConfig, got {type(config).__name__}.")
        super().__init__(config, policy, ref_policy, None, tokenizer, prompts, reward_fn, gold_fn)

    def step(self) -> dict:
        """One iteration: roll out groups, score, group advantages, clipped updates, metrics."""
        cfg = self.config
        started = time.perf_counter()

        # 1. Roll out: group_size completions of each prompt, side by side.
        prompts = self._next_prompts(cfg.batch_size // cfg.group_size)
        rollout = self.generate([p for p in prompts for _ in range(cfg.group_size)],
                                keep_logprobs=True)  # fmt: skip
        mask = rollout.mask
        logprobs = rollout.logprobs  # from sampling: no second forward pass of the policy
        with torch.no_grad():
            ref_logprobs = token_logprobs(self.ref_policy, rollout, cfg.temperature)

        # 2. Score the full texts (and the gold preference, to log).
        scores, gold = self._score(rollout)

        # 3. Advantages from the group: RLOO's reward carries the KL penalty, GRPO's does not.
        if cfg.estimator == "rloo":
            rewards = rloo_rewards(scores, logprobs, ref_logprobs, mask, self.kl_coef)
            advantages = rloo_advantages(rewards, cfg.group_size)
        else:
            advantages = grpo_advantages(scores, cfg.group_size)
            # logged only: the score less the KL term GRPO puts in its loss (k3 at the rollout)
            k3 = kl_estimate(logprobs, ref_logprobs, "k3") * mask
            rewards = scores - self.kl_coef * k3.sum(1)

        # 4. Several epochs of clipped updates over minibatches of the rollout.
        stats = self._update_group(rollout, logprobs, ref_logprobs, advantages)

        # 5. Metrics, under the names PPO logs (the KL as PPO measures it, k1 summed per review).
        kl = kl_estimate(logprobs, ref_logprobs, "k1") * mask
        mean_kl = kl.sum(1).mean().item()
        metrics = {
            "step": len(self.history) + 1,
            "episode": (len(self.history) + 1) * len(rollout.prompts),
            "objective/kl": mean_kl,
            "objective/rlhf_reward": rewards.mean().item(),
            "objective/scores": scores.mean().item(),
            "objective/kl_coef": self.kl_coef,
            "policy/approxkl_avg": _mean(stats["approxkl"]),
            "policy/clipfrac_avg": _mean(stats["clipfrac"]),
            "loss/policy_avg": _mean(stats["loss"]),
            "val/ratio": _mean(stats["ratio"]),
            "val/num_eos_tokens": int(rollout.ended.sum()),
            "response/length": mask.sum(1).mean().item(),
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        return self._record(metrics, gold, mean_kl, len(rollout.prompts), started)

    def _update_group(self, rollout: Rollout, old_logprobs, ref_logprobs,
                      advantages) -> dict[str, list[float]]:  # fmt: skip
        cfg = self.config
        # GRPO (TRL's loss_type="dapo"): a minibatch's sum over the rollout's tokens per step
        num_tokens = grpo_num_tokens(rollout.mask, cfg.batch_size // cfg.mini_batch_size)
        self.policy.train()
        stats = defaultdict(list)
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(len(rollout.prompts), generator=self.generator)
            for mb in order.split(cfg.mini_batch_size):
                part, n = rollout.select(mb).trimmed()  # n: the response tokens it keeps
                mask = part.mask
                logprobs = token_logprobs(self.policy, part, cfg.temperature)
                if cfg.estimator == "rloo":
                    loss, loss_stats = rloo_policy_loss(
                        logprobs, old_logprobs[mb, :n], advantages[mb], mask, cfg.cliprange
                    )
                else:
                    loss, loss_stats = grpo_policy_loss(
                        logprobs, old_logprobs[mb, :n], ref_logprobs[mb, :n], advantages[mb], mask,
                        self.kl_coef, cfg.cliprange, num_tokens,
                    )  # fmt: skip
                self._optimise(loss, f"({cfg.estimator} loss)")
                stats["loss"].append(loss.item())
                for name, value in loss_stats.items():
                    stats[name].append(value)
        return stats
