"""PPO for language models (Chapter 5).

Written to be read next to CleanRL's ``ppo.py`` and TRL's former ``PPOTrainer`` (removed in trl
1.13), and logging under the metric names TRL's PPO used. The module has two halves.

**The numerical core**: pure functions, each checked two ways in ``tests/test_ppo_math.py``:

- :func:`whiten` normalises advantages (optionally over masked tokens only);
- :func:`kl_estimate` estimates the per-token KL between the policy and the reference;
- :func:`token_rewards` turns the reward model's scores and the per-token KL into rewards;
- :func:`compute_gae` computes generalised advantage estimates (Schulman et al., 2016), written as
  one matrix product; :func:`compute_gae_loop` is the textbook backward loop it must equal;
- :func:`clipped_policy_loss` and :func:`clipped_value_loss` are PPO's two losses, and
  :func:`explained_variance` says how well the value model predicted the returns.

**The training loop**: :class:`PPOConfig` (every hyper-parameter, checked) and :class:`PPOTrainer`,
whose :meth:`PPOTrainer.step` is one PPO iteration in numbered steps: 1. roll out
(:mod:`rlhf_lib.rollout`, the sampling every method shares), 2. score, 3. per-token rewards with
the KL penalty, 4. advantages, 5. several epochs of clipped updates (``_update``), 6. metrics.

Shapes: ``[B, T]`` = (batch of responses, response tokens). ``mask`` is 1 for real response tokens
(up to and including the first end-of-sequence token) and 0 for padding.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rlhf_lib import checks
from rlhf_lib.rollout import (
    Rollout,
    next_token_logprobs,
    position_ids_from_mask,
    sample,
    sampling_settings,
    token_logprobs,
)

KL_KINDS = ("k1", "k2", "k3")
VALUE_MODELS = ("separate", "shared")


def _check_same_shape(**tensors: torch.Tensor) -> None:
    checks.same_shape("PPO", **tensors)


def _masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # Select, do not multiply: a NaN or -inf at a padding position times 0 is still NaN.
    return torch.where(mask.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is 1 (all positions if ``mask`` is None).
    Masked positions contribute nothing, even when they hold NaN or ±inf."""
    _check_same_shape(x=x, mask=mask)
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}: pass x.float().")
    if mask is None:
        return x.mean()
    count = mask.to(x.dtype).sum()
    if count == 0:
        raise ValueError("the mask selects no positions: there is nothing to average")
    return _masked(x, mask).sum() / count


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
    return whitened if mask is None else _masked(whitened, mask)


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
    mask = torch.ones_like(values) if mask is None else mask
    r, v = _masked(rewards, mask), _masked(values, mask)  # padding contributes nothing, even NaN
    T = values.shape[-1]
    next_values = torch.cat([v[:, 1:], v.new_zeros(v.shape[0], 1)], 1)
    deltas = _masked(r + gamma * next_values - v, mask)  # (B, T)
    steps = torch.arange(T, dtype=values.dtype, device=values.device)
    offsets = steps[None, :] - steps[:, None]  # offsets[t, s] = s - t
    discount = torch.where(offsets >= 0, (gamma * lam) ** offsets.clamp(min=0), 0.0)  # (T, T)
    advantages = _masked(deltas @ discount.T, mask)  # A[b, t] = Σ_s D[t, s] δ[b, s]
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
    mask = torch.ones_like(values) if mask is None else mask
    r, v = _masked(rewards, mask), _masked(values, mask)  # padding contributes nothing, even NaN
    advantages = torch.zeros_like(values)
    next_value = values.new_zeros(values.shape[0])
    last_advantage = values.new_zeros(values.shape[0])
    for t in reversed(range(values.shape[1])):
        delta = _masked(r[:, t] + gamma * next_value - v[:, t], mask[:, t])
        last_advantage = delta + gamma * lam * last_advantage
        advantages[:, t] = _masked(last_advantage, mask[:, t])
        next_value = v[:, t]
    return advantages, advantages + values


def _check_gae_inputs(rewards, values, gamma, lam, mask) -> None:
    _check_same_shape(rewards=rewards, values=values, mask=mask)
    if values.dim() != 2:
        raise ValueError(f"rewards and values must be [B, T] tensors, got {tuple(values.shape)}")
    for name, value in (("gamma", gamma), ("lam", lam)):
        _check_unit_interval(name, value)


def _check_unit_interval(name: str, value) -> None:
    """``value`` is a number in [0, 1] (a 0-d tensor too); NaN, strings and None are not."""
    try:
        inside = not isinstance(value, (str, bytes, bool)) and 0.0 <= value <= 1.0
    except TypeError:  # a string compared with a number, None, a list
        inside = False
    if not inside:
        raise ValueError(f"{name} must lie in [0, 1] (a number), got {value!r}")


def _check_per_token(where: str, name: str, value: torch.Tensor, like: torch.Tensor) -> None:
    """``value`` is per token ``[B, T]`` like ``like``, or one number per sequence ``[B, 1]``; a
    flat ``[B]`` would broadcast along T (silently wrong when B == T)."""
    checks.same_shape(where, **{name: value})
    B = like.shape[0]
    if like.dim() == 2 and tuple(value.shape) in (tuple(like.shape), (B, 1)):
        return
    hint = f" For one value per sequence pass {name}[:, None]." if value.shape == (B,) else ""
    raise ValueError(
        f"{where}: {name} must have the shape of logprobs {tuple(like.shape)} (one value per "
        f"token) or ({B}, 1) (one per sequence), got {tuple(value.shape)}.{hint}"
    )


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, dict]:
    """PPO's clipped surrogate loss, ``-min(ρ·A, clip(ρ, 1−ε, 1+ε)·A)`` averaged over tokens.

    ``ρ = exp(logprobs − old_logprobs)`` is the probability ratio of each sampled token under the
    policy being updated and the policy that sampled it. Once ρ leaves ``[1−ε, 1+ε]`` in the
    direction the advantage favours, the loss is flat in ρ: no gradient pushes further, which is
    the "proximal" in PPO. Also returns ``approxkl``, ``clipfrac`` and the mean ``ratio``.
    """
    checks.same_shape("clipped_policy_loss", logprobs=logprobs, old_logprobs=old_logprobs,
                      mask=mask)  # fmt: skip
    _check_per_token("clipped_policy_loss", "advantages", advantages, logprobs)
    checks.argument("clipped_policy_loss", "cliprange", cliprange, checks.numbers, low=0, high=1,
                    low_open=True, high_open=True)  # fmt: skip
    log_ratio = _masked(logprobs - old_logprobs, mask)  # padding: ratio 1 and no NaN gradient
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - cliprange, 1 + cliprange)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "approxkl": 0.5 * masked_mean(log_ratio**2, mask).item(),
            "clipfrac": masked_mean((clipped > unclipped).float(), mask).item(),
            "ratio": masked_mean(ratio, mask).item(),
        }
    return loss, stats


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float,
) -> tuple[torch.Tensor, float]:
    """Half the squared error to the returns, with the new values clipped to within
    ``cliprange_value`` of the old ones (the pessimistic maximum of the two, as in PPO2/TRL).
    Also returns the fraction of tokens where the clipped error was the larger."""
    checks.same_shape("clipped_value_loss", values=values, old_values=old_values, mask=mask)
    _check_per_token("clipped_value_loss", "returns", returns, values)
    checks.argument("clipped_value_loss", "cliprange_value", cliprange_value)
    values_clipped = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    errors = (values - returns) ** 2
    errors_clipped = (values_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(errors, errors_clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((errors_clipped > errors).float(), mask).item()
    return loss, clipfrac


def token_rewards(
    scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards of RLHF-PPO: ``-β·KL`` on every response token, and the reward model's
    score added on the last real one. Returns ``(rewards, non_score_reward)``, both ``[B, T]``;
    the second is the KL part alone (TRL's ``objective/non_score_reward``)."""
    checks.same_shape("token_rewards", kl=kl, mask=mask)
    if kl.dim() != 2 or scores.shape != (kl.shape[0],):
        raise ValueError(
            f"token_rewards: scores must hold one score per response {(kl.shape[0],)} and kl one "
            f"value per token [B, T]; got scores {tuple(scores.shape)}, kl {tuple(kl.shape)}."
        )
    checks.argument("token_rewards", "kl_coef", kl_coef, checks.non_negative)
    lengths = mask.sum(1).long()
    if (lengths == 0).any():
        raise ValueError("token_rewards: every response needs at least one real token in mask.")
    non_score_reward = -kl_coef * _masked(kl, mask)
    rewards = non_score_reward.clone()
    rewards[torch.arange(len(scores)), lengths - 1] += scores
    return rewards, non_score_reward


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """``1 − Var[returns − values] / Var[returns]`` over the real tokens: 1 when the value model
    predicts the returns exactly, 0 when it does no better than their mean, negative when worse
    (CleanRL logs it as ``explained_variance``). NaN when the returns do not vary."""
    checks.same_shape("explained_variance", values=values, returns=returns, mask=mask)
    spread = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    if spread == 0:
        return float("nan")
    error = returns - values
    error_spread = masked_mean((error - masked_mean(error, mask)) ** 2, mask)
    return float(1 - error_spread / spread)


# ---------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------


@dataclass
class PPOConfig:
    """Every hyper-parameter of a PPO-RLHF run, grouped by purpose as TRL's ``PPOConfig`` was."""

    # rollouts
    # PPO iterations (rollout + updates). Measured with the default β: the logged gold score
    # stops rising in the second half, and one rollout's mean jitters around that level.
    total_steps: int = 30
    batch_size: int = 32  # prompts per rollout: more gives steadier advantages, costs time
    mini_batch_size: int = 8  # the rollout is split into minibatches for the updates
    ppo_epochs: int = 4  # passes over each rollout: reuse samples while the ratio stays near 1
    max_new_tokens: int = 24  # response length cap; a review cut off here scores the EOS penalty
    temperature: float = 1.0  # sampling temperature, also applied to the log-probabilities
    # reward
    kl_coef: float = 0.05  # β: the price of one nat of KL to the reference, per token
    # which estimator enters the reward: k1 (what TRL's removed PPO trainer used), k2, k3
    kl_estimator: str = "k1"
    target_kl: float | None = None  # if set, adapt β towards this KL (Ziegler et al., 2019)
    kl_horizon: int = 10_000  # the adaptive controller's horizon, in samples
    missing_eos_penalty: float | None = 1.0  # subtracted from the score of a review never ended
    # advantages
    gamma: float = 1.0  # no discount within a response: the reward comes at its end anyway
    lam: float = 0.95  # GAE's bias-variance trade-off
    # optimisation
    learning_rate: float = 1e-4  # measured: 3e-4 overshot (KL spiked past 30 nats, approxkl 0.3)
    cliprange: float = 0.2  # ε of the clipped surrogate objective
    cliprange_value: float = 0.2  # the same clipping for the value function
    vf_coef: float = 0.1  # weight of the value loss in the joint loss
    # the value model: "separate" (a network of its own, as InstructGPT and TRL's PPO), or
    # "shared" (a linear head on the policy's last hidden state: one forward pass for both)
    value_model: str = "separate"
    # a separate critic with only its first blocks (None: all; unused with "shared"). 1: chosen
    # from the six value models benchmarks/value_models.py measures over 3 seeds (gold gain per
    # CPU-second; the Performance page shows the figures and whether it is still the best)
    critic_layers: int | None = 1
    value_epochs: int | None = None  # train the values in the first value_epochs passes only
    critic_warmup_epochs: int = 0  # value-only passes over the first rollout (separate critic)
    entropy_coef: float = 0.0  # an entropy bonus; the KL penalty already keeps entropy up
    max_grad_norm: float = 1.0  # clip the global gradient norm: one bad minibatch cannot derail
    # AdamW's decoupled weight decay. 0, as TRL: torch's default (0.01) would also shrink the
    # LayerNorm gains, the biases and the value head towards 0, which no one asked for.
    weight_decay: float = 0.0
    # AdamW's ε, added to the root of the second moment: 1e-5, as CleanRL's PPO (measured over 10
    # seeds: at torch's and TRL's default, 1e-8, our PPO gained 0.034 ± 0.033 less gold). TRL's
    # trainers get it too, so chapter 6 compares implementations at one optimiser setting
    adam_eps: float = 1e-5
    seed: int = 0

    def __post_init__(self):
        checks.ints(self, "total_steps", "batch_size", "mini_batch_size", "ppo_epochs",
                    "max_new_tokens", "kl_horizon")  # fmt: skip
        checks.ints(self, "seed", "critic_warmup_epochs", minimum=0)
        checks.one_of(self, "value_model", VALUE_MODELS)
        for name in ("critic_layers", "value_epochs"):
            if getattr(self, name) is not None:
                checks.ints(self, name)
        if self.value_model == "shared" and self.critic_warmup_epochs:
            raise checks.ConfigError(
                "PPOConfig.critic_warmup_epochs fits a separate critic before the first update; "
                "with value_model='shared' the values come from the policy's own trunk, which a "
                "warm-up would move. Use one or the other."
            )
        checks.positive(self, "temperature", "learning_rate", "cliprange_value", "max_grad_norm",
                        "adam_eps")  # fmt: skip
        checks.positive(self, "target_kl", optional=True)  # None: a fixed β
        checks.non_negative(self, "kl_coef", "vf_coef", "entropy_coef", "weight_decay")
        checks.non_negative(self, "missing_eos_penalty", optional=True)
        checks.numbers(self, "cliprange", low=0, high=1, low_open=True, high_open=True)
        checks.numbers(self, "gamma", "lam", low=0, high=1)
        checks.one_of(self, "kl_estimator", KL_KINDS)
        checks.multiple_of(self, "batch_size", "mini_batch_size",
                           "each rollout is split into equal minibatches")  # fmt: skip
        if self.target_kl is not None:  # the adaptive controller multiplies β after each step
            if self.kl_coef == 0:
                raise checks.ConfigError(
                    "PPOConfig.kl_coef must be > 0 when target_kl is set: the adaptive controller "
                    "multiplies β, so a β of 0 stays 0 and the KL target is never enforced. Start "
                    "from a small β, e.g. kl_coef=0.05."
                )
            if self.kl_horizon < self.batch_size:
                raise checks.ConfigError(
                    f"PPOConfig.kl_horizon={self.kl_horizon} must be at least batch_size="
                    f"{self.batch_size} when target_kl is set: one update changes β by up to "
                    "20% · batch_size / kl_horizon, and a larger step could make β negative."
                )


class AdaptiveKLController:
    """β follows the measured KL towards ``target`` (Ziegler et al., 2019): a proportional
    controller whose error is clipped to ±20% so one noisy batch cannot swing β."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        arguments = checks.arguments("AdaptiveKLController", init_kl_coef=init_kl_coef,
                                     target=target, horizon=horizon)  # fmt: skip
        # β > 0: the controller multiplies it, so 0 would stay 0 and never enforce the target
        checks.positive(arguments, "init_kl_coef", "target")
        checks.ints(arguments, "horizon")
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_samples: int) -> None:
        if not checks.is_int(n_samples) or not 1 <= n_samples <= self.horizon:
            raise ValueError(
                f"n_samples must be an int in [1, horizon={self.horizon}], got {n_samples!r}: a "
                "step larger than the horizon could make β negative. Raise the horizon."
            )
        error = min(max(current_kl / self.target - 1, -0.2), 0.2)
        self.value *= 1 + error * n_samples / self.horizon


def _disable_dropout(model: torch.nn.Module) -> None:
    # PPO compares log-probs of the same tokens across passes: dropout noise would bias the ratio.
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def _storages(model: torch.nn.Module) -> set[int]:
    return {p.untyped_storage().data_ptr() for p in model.parameters() if p.numel()}


def _refuse_shared_parameters(trained, ref_policy, name: str) -> None:
    # The reference is frozen (requires_grad_(False)) and must stay the policy PPO started from;
    # shared tensors would freeze the trained model too, or move the reference with it (KL = 0).
    if _storages(trained) & _storages(ref_policy):
        raise ValueError(
            f"ref_policy shares parameters with the {name} (it is the same model, or built on "
            "the same tensors): the KL penalty would stay 0 and freezing the reference would "
            "freeze what PPO trains. Pass a frozen copy: ref_policy = copy.deepcopy(policy)."
        )


class PPOTrainer:
    """PPO against a reward function, with a per-token KL penalty to a frozen reference policy.

    - ``policy``: a causal LM (``AutoModelForCausalLM``), trained; ``ref_policy``: a frozen copy;
    - ``value_model``: an ``AutoModelForSequenceClassification`` with ``num_labels=1`` whose head
      is applied to every token. It is a separate network (as in InstructGPT and TRL's PPO),
      initialised from the reward model, which already knows what a good review looks like. With
      ``PPOConfig.value_model="shared"`` pass ``None``: a linear head on the policy's own last
      hidden state gives the values, one forward pass for both, at the price of value-loss
      gradients in the policy's trunk (``benchmarks/value_models.py`` measures both);
    - ``reward_fn(texts) -> Tensor[B]``: the proxy reward (the reward model) of full texts;
    - ``gold_fn(texts) -> list[float]`` (optional): the hidden gold preference, logged as
      ``gold/score`` and never used for training.

    ``history`` holds one dict of metrics per finished step, under TRL's PPO names; it survives
    an exception, so an aborted run keeps what it measured. A NaN or infinite reward, loss or
    gradient stops the run with a ``FloatingPointError`` before that optimiser step (earlier
    minibatches of the same step stay applied), so the policy never holds NaN.

    The trainer checks its inputs first: prompts must be a list of strings, the tokenizer must
    belong to all three models (sizes, special ids and, for models the library built, the
    vocabulary itself) and have a pad token, and the reference must not share tensors with the
    policy or the value model. It pads prompts on the left whatever the tokenizer's
    ``padding_side`` (without changing the tokenizer), so no response starts after a pad.
    """

    needs_value_model = True  # RLOO and GRPO (rlhf_lib.group_rl) take their baseline from a group

    def __init__(
        self,
        config: PPOConfig,
        policy,
        ref_policy,
        value_model,
        tokenizer,
        prompts: list[str],
        reward_fn: Callable,
        gold_fn: Callable | None = None,
    ):
        if not isinstance(config, PPOConfig):
            raise TypeError(f"config must be a PPOConfig, got {type(config).__name__}.")
        prompts = checks.require_texts(prompts, "PPOTrainer", "prompts")
        if not prompts:
            raise ValueError("PPOTrainer needs at least one prompt")
        if not callable(reward_fn):
            raise TypeError("reward_fn must be a function: reward_fn(texts) -> one score per text.")
        if gold_fn is not None and not callable(gold_fn):
            raise TypeError(
                f"gold_fn must be a function, gold_fn(texts) -> one score per text, or None; got "
                f"{type(gold_fn).__name__}."
            )
        shared = getattr(config, "value_model", "separate") == "shared"
        if value_model is None and self.needs_value_model and not shared:
            raise TypeError(f"{type(self).__name__} needs a value_model (num_labels=1).")
        if value_model is not None and shared:
            raise ValueError(
                "PPOConfig.value_model='shared' puts a value head on the policy's trunk: pass "
                "value_model=None."
            )
        if value_model is not None and getattr(value_model.config, "num_labels", None) != 1:
            raise ValueError("value_model must have num_labels=1 (one value per token)")
        checks.require_pad_token(tokenizer, "PPOTrainer")
        if tokenizer.eos_token_id is None:
            raise ValueError(
                "PPOTrainer needs tokenizer.eos_token_id: a response ends at its first EOS. Use "
                "the tokenizer saved with the policy."
            )
        models = {"policy": policy, "ref_policy": ref_policy, "value_model": value_model}
        models = {name: model for name, model in models.items() if model is not None}
        for name, model in models.items():
            try:  # all three read the ids this tokenizer makes
                checks.check_tokenizer_matches(model, tokenizer)
            except ValueError as err:
                raise ValueError(f"PPOTrainer's {name}: {err}") from None
        _refuse_shared_parameters(policy, ref_policy, "policy")
        if value_model is not None:
            _refuse_shared_parameters(value_model, ref_policy, "value_model")
        self.config, self.tokenizer = config, tokenizer
        self.policy, self.ref_policy, self.value_model = policy, ref_policy, value_model
        self.reward_fn, self.gold_fn, self.prompts = reward_fn, gold_fn, prompts
        self.device = next(policy.parameters()).device
        for model in models.values():
            _disable_dropout(model)
        ref_policy.eval().requires_grad_(False)
        self.kl_controller = (
            AdaptiveKLController(config.kl_coef, config.target_kl, config.kl_horizon)
            if config.target_kl is not None
            else None
        )
        # "shared": a linear head on the policy's last hidden state, starting at 0
        self.value_head = None
        if shared and self.needs_value_model:
            width = policy.get_output_embeddings().in_features
            self.value_head = torch.nn.Linear(width, 1).to(self.device)
            torch.nn.init.zeros_(self.value_head.weight)
            torch.nn.init.zeros_(self.value_head.bias)
        params = [p for model in (policy, value_model, self.value_head) if model is not None
                  for p in model.parameters()]  # fmt: skip
        # fused: one kernel updates every tensor (measured ~5-10% of a small model's update step
        # on a CPU; the per-tensor loop is torch's default there)
        self.optimizer = torch.optim.AdamW(params, lr=config.learning_rate, eps=config.adam_eps,
                                           weight_decay=config.weight_decay,
                                           fused=True)  # fmt: skip
        self.settings = sampling_settings(tokenizer, config.max_new_tokens, config.temperature)
        self.generator = torch.Generator().manual_seed(config.seed)  # prompts and minibatches
        torch.manual_seed(config.seed)  # sampling in generate(): same seed, same run
        self.history: list[dict] = []
        checks.check_fits_context(policy, tokenizer, self.prompts, config.max_new_tokens,
                                  "PPOTrainer")  # fmt: skip

    @property
    def kl_coef(self) -> float:
        return self.kl_controller.value if self.kl_controller else self.config.kl_coef

    # -- the parts of one PPO iteration ----------------------------------------------------------

    def _next_prompts(self, n: int | None = None) -> list[str]:
        """``n`` training prompts (``batch_size`` by default), drawn with replacement."""
        n = self.config.batch_size if n is None else n
        order = torch.randint(len(self.prompts), (n,), generator=self.generator)
        return [self.prompts[i] for i in order.tolist()]

    def generate(self, prompts: list[str], greedy: bool = False,
                 keep_logprobs: bool = False) -> Rollout:  # fmt: skip
        """Sample (or, with ``greedy``, decode) one response per prompt: a :class:`Rollout`
        (with the policy's log-distributions if ``keep_logprobs``)."""
        settings = (
            self.settings
            if not greedy
            else sampling_settings(self.tokenizer, self.config.max_new_tokens, greedy=True)
        )
        return sample(self.policy, self.tokenizer, prompts, settings, where="PPOTrainer.generate",
                      keep_logprobs=keep_logprobs)  # fmt: skip

    def _forward(self, rollout: Rollout, with_values: bool = True):
        """The policy's next-token log-distributions ``[B, T, vocab]`` at each response position
        and the values ``[B, T]`` of the states before each token (``None`` without
        ``with_values``): one forward pass when the value head shares the policy's trunk."""
        temperature = self.config.temperature
        if self.value_head is None:
            logprobs_all = next_token_logprobs(self.policy, rollout, temperature)
            return logprobs_all, self._values(rollout) if with_values else None
        output = self.policy(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask,
                             position_ids=position_ids_from_mask(rollout.attention_mask),
                             output_hidden_states=with_values)  # fmt: skip
        response = slice(rollout.context_length - 1, -1)
        logprobs_all = torch.log_softmax(output.logits[:, response] / temperature, dim=-1)
        if not with_values:
            return logprobs_all, None
        return logprobs_all, self.value_head(output.hidden_states[-1][:, response]).squeeze(-1)

    def _values(self, rollout: Rollout) -> torch.Tensor:
        """``[B, T]``: the separate value model's estimate of the state before each token."""
        backbone = getattr(self.value_model, self.value_model.base_model_prefix)
        hidden = backbone(
            input_ids=rollout.input_ids,
            attention_mask=rollout.attention_mask,
            position_ids=position_ids_from_mask(rollout.attention_mask),
        ).last_hidden_state  # (B, L, hidden)
        values = self.value_model.score(hidden).squeeze(-1)  # (B, L): the head on every token
        return values[:, rollout.context_length - 1 : -1]

    @torch.no_grad()
    def _score(self, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The reward model's score of each text, less the penalty for a review never ended, and
        the gold score (``None`` without ``gold_fn``). Both are computed before any update, so a
        ``gold_fn`` that fails does so before it changes the policy."""
        texts = rollout.texts
        scores = self._scores(self.reward_fn, "reward_fn", texts, torch.float32).to(self.device)
        gold = None
        if self.gold_fn is not None:
            gold = self._scores(self.gold_fn, "gold_fn", texts, torch.float64)  # on the CPU
        if self.config.missing_eos_penalty is not None:
            scores = torch.where(rollout.ended, scores, scores - self.config.missing_eos_penalty)
        return scores, gold

    def _update(self, rollout: Rollout, old_logprobs, old_values, advantages,
                returns) -> dict[str, list[float]]:  # fmt: skip
        """``ppo_epochs`` passes of clipped updates over shuffled minibatches of the rollout (the
        values in the first ``value_epochs`` of them); returns each minibatch's statistics."""
        cfg = self.config
        with_entropy_grad = cfg.entropy_coef > 0  # else the entropy is only logged
        value_epochs = cfg.ppo_epochs if cfg.value_epochs is None else cfg.value_epochs
        self.policy.train()
        stats = defaultdict(list)
        for epoch in range(cfg.ppo_epochs):
            train_values = epoch < value_epochs
            order = torch.randperm(len(rollout.prompts), generator=self.generator)
            for mb in order.split(cfg.mini_batch_size):
                part, n = rollout.select(mb).trimmed()  # n: the response tokens it keeps
                mask = part.mask
                logprobs_all, values = self._forward(part, with_values=train_values)
                logprobs = part.at_sampled_tokens(logprobs_all)
                with torch.set_grad_enabled(with_entropy_grad):
                    entropy = masked_mean(-(logprobs_all.exp() * logprobs_all).sum(-1), mask)
                loss, pg_stats = clipped_policy_loss(
                    logprobs, old_logprobs[mb, :n], advantages[mb, :n], mask, cfg.cliprange
                )
                stats["pg_loss"].append(loss.item())
                if train_values:
                    vf_loss, vf_clipfrac = clipped_value_loss(
                        values, old_values[mb, :n], returns[mb, :n], mask, cfg.cliprange_value
                    )
                    loss = loss + cfg.vf_coef * vf_loss
                    stats["vf_loss"].append(vf_loss.item())
                    stats["vf_clipfrac"].append(vf_clipfrac)
                if with_entropy_grad:
                    loss = loss - cfg.entropy_coef * entropy
                self._optimise(loss, f"(policy loss {stats['pg_loss'][-1]:.4g}, entropy "
                                     f"{entropy.item():.4g})")  # fmt: skip
                stats["entropy"].append(entropy.item())
                for name, value in pg_stats.items():
                    stats[name].append(value)
        return stats

    def _warm_up_critic(self, rollout: Rollout, returns) -> None:
        """``critic_warmup_epochs`` value-only passes over the first rollout, so the first
        policy update already has advantages from a critic fitted to this policy's returns."""
        cfg = self.config
        for _ in range(cfg.critic_warmup_epochs):
            order = torch.randperm(len(rollout.prompts), generator=self.generator)
            for mb in order.split(cfg.mini_batch_size):
                part, n = rollout.select(mb).trimmed()
                # unclipped: the clip keeps each update near the values that sampled the rollout,
                # but here the critic should travel as far as the returns need
                error = self._values(part) - returns[mb, :n]
                vf_loss = 0.5 * masked_mean(error**2, part.mask)
                self._optimise(vf_loss, f"(critic warm-up, value loss {vf_loss.item():.4g})")

    def _record(self, metrics: dict, gold, mean_kl: float, n_samples: int, started: float) -> dict:
        """Finish a step's metrics (gold score, step time), adapt β if a KL target is set, and
        keep them in ``history``."""
        if gold is not None:
            metrics["gold/score"] = float(gold.mean())
        if self.kl_controller is not None:
            self.kl_controller.update(mean_kl, n_samples)
        metrics["time/step_seconds"] = time.perf_counter() - started
        self.history.append(metrics)
        return metrics

    def _optimise(self, loss: torch.Tensor, parts: str) -> None:
        """One optimiser step on ``loss`` with the gradient norm clipped; a non-finite loss or
        gradient stops the run before the step."""
        if not torch.isfinite(loss):
            raise self._stopped(f"the loss is {loss.item()} {parts}")
        self.optimizer.zero_grad()
        loss.backward()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        if not torch.isfinite(grad_norm):
            self.optimizer.zero_grad()
            raise self._stopped(f"the gradient norm is {grad_norm.item()}")
        self.optimizer.step()

    # -- one PPO iteration ---------------------------------------------------------------------

    def step(self) -> dict:
        """One PPO iteration: roll out, score, per-token rewards, advantages, updates, metrics."""
        cfg = self.config
        started = time.perf_counter()

        # 1. Roll out: a response per prompt; log-probs under policy and reference, values.
        separate_critic = self.value_head is None
        rollout = self.generate(self._next_prompts(), keep_logprobs=separate_critic)
        mask = rollout.mask
        with torch.no_grad():
            if separate_critic:  # sampling already computed the policy's log-probs
                logprobs_all, values = rollout.policy_logprobs, self._values(rollout)
            else:  # one pass of the shared trunk gives both
                logprobs_all, values = self._forward(rollout)
            logprobs = rollout.at_sampled_tokens(logprobs_all)
            entropy = -(logprobs_all.exp() * logprobs_all).sum(-1)
            ref_logprobs = token_logprobs(self.ref_policy, rollout, cfg.temperature)

        # 2. Score the full texts with the reward model (and the gold preference, to log).
        scores, gold = self._score(rollout)

        # 3. Per-token rewards: -β·KL on every token, the score added on the last one.
        kl = kl_estimate(logprobs, ref_logprobs, cfg.kl_estimator) * mask
        rewards, non_score_reward = token_rewards(scores, kl, mask, self.kl_coef)

        # 4. Advantages by GAE, whitened over the real tokens.
        advantages, returns = compute_gae(rewards, values, cfg.gamma, cfg.lam, mask)
        if cfg.critic_warmup_epochs and not self.history:  # fit the critic first, then re-estimate
            self._warm_up_critic(rollout, returns)
            with torch.no_grad():
                values = self._values(rollout)
            advantages, returns = compute_gae(rewards, values, cfg.gamma, cfg.lam, mask)
        advantages = whiten(advantages, mask=mask)

        # 5. Several epochs of clipped updates over minibatches of the rollout.
        stats = self._update(rollout, logprobs, values, advantages, returns)

        # 6. Metrics, under the names TRL's PPO logged.
        mean_kl = kl.sum(1).mean().item()
        metrics = {
            "step": len(self.history) + 1,
            "episode": (len(self.history) + 1) * len(rollout.prompts),
            "objective/kl": mean_kl,
            "objective/entropy": (entropy * mask).sum(1).mean().item(),
            "objective/non_score_reward": non_score_reward.sum(1).mean().item(),
            "objective/rlhf_reward": (scores + non_score_reward.sum(1)).mean().item(),
            "objective/scores": scores.mean().item(),
            "objective/kl_coef": self.kl_coef,
            "policy/approxkl_avg": _mean(stats["approxkl"]),
            "policy/clipfrac_avg": _mean(stats["clipfrac"]),
            "policy/entropy_avg": _mean(stats["entropy"]),
            "loss/policy_avg": _mean(stats["pg_loss"]),
            "loss/value_avg": _mean(stats["vf_loss"]),
            "val/clipfrac_avg": _mean(stats["vf_clipfrac"]),
            # how much of the returns' spread the rollout's values predicted (1: all of it)
            "val/explained_variance": explained_variance(values, returns, mask),
            "val/ratio": _mean(stats["ratio"]),
            "val/ratio_var": float(torch.tensor(stats["ratio"]).var())
            if len(stats["ratio"]) > 1
            else 0.0,
            "val/num_eos_tokens": int(rollout.ended.sum()),
            "response/length": mask.sum(1).mean().item(),
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        return self._record(metrics, gold, mean_kl, len(rollout.prompts), started)

    @torch.no_grad()
    def _scores(self, function, name: str, texts: list[str], dtype) -> torch.Tensor:
        """``function(texts)`` as a tensor of one finite score per text, or a clear error."""
        raw = function(texts)
        try:
            scores = torch.as_tensor(raw, dtype=dtype)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"{name} must return numbers (a tensor, array or list of floats), one per text; "
                f"got {type(raw).__name__} {raw!r:.80}."
            ) from None
        if scores.shape != (len(texts),):
            raise ValueError(
                f"{name} must return one score per text ({len(texts)}), got shape "
                f"{tuple(scores.shape)}"
            )
        if not torch.isfinite(scores).all():
            bad = [t for t, s in zip(texts, scores.tolist(), strict=True) if not math.isfinite(s)]
            raise self._stopped(f"{name} returned NaN or inf (e.g. for {bad[0]!r})")
        return scores

    def _stopped(self, what: str) -> FloatingPointError:
        return FloatingPointError(
            f"At PPO step {len(self.history) + 1} {what}. The run stopped before updating the "
            f"policy with it; the {len(self.history)} finished steps are kept in "
            "trainer.history. Lower learning_rate or check the reward function."
        )

    def train(self, progress: bool = True, after_step: Callable | None = None) -> list[dict]:
        """Run ``config.total_steps`` iterations; returns (and keeps) the history.
        ``after_step(trainer)``, if given, runs after each step (to measure checkpoints)."""
        from rlhf_lib.runtime import progress as progress_bar

        name = getattr(self.config, "estimator", "ppo").upper()  # PPO, or our RLOO / GRPO
        bar = progress_bar(range(self.config.total_steps), desc=name, disable=not progress)
        for _ in bar:
            metrics = self.step()
            if after_step is not None:
                after_step(self)
            bar.set_postfix(
                reward=f"{metrics['objective/scores']:.2f}", kl=f"{metrics['objective/kl']:.2f}"
            )
        bar.close()
        return self.history


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
