"""Our RLOO and GRPO objectives (rlhf_lib.objectives) against their formulas written as loops and
against TRL 1.16's own trainers: ``RLOOTrainer`` / ``GRPOTrainer`` methods called on identical
tensors with a stand-in ``self`` (no model, no generation), configured as chapter 6 configures
them (``beyond_ppo._train_online_trl``) so that TRL's defaults are the ones checked."""

import math
import types
from collections import defaultdict

import pytest
import torch

from rlhf_lib.objectives import (
    grpo_advantages,
    grpo_num_tokens,
    grpo_policy_loss,
    rloo_advantages,
    rloo_policy_loss,
    rloo_rewards,
)
from rlhf_lib.ppo import kl_estimate, masked_mean

# TRL's configs pass a TrainingArguments name that transformers 5 renames: not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:`gradient_checkpointing`:FutureWarning")

GROUP, T, BETA = 4, 6, 0.05
PAD, PAD_LOGP = 0, -7.0  # TRL multiplies padding by 0: give it a finite value that would show


def _batch(n_prompts=2, seed=0):
    """A generation batch: completions of one prompt next to each other, ragged lengths."""
    g = torch.Generator().manual_seed(seed)
    B = n_prompts * GROUP
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
    logp = -torch.rand(B, T, generator=g) * 3
    old = logp + 0.3 * torch.randn(B, T, generator=g)  # the policy has moved since sampling
    ref = logp + 0.5 * torch.randn(B, T, generator=g)
    scores = torch.randn(B, generator=g)
    pad = lambda x: torch.where(mask.bool(), x, torch.full_like(x, PAD_LOGP))  # noqa: E731
    return types.SimpleNamespace(B=B, lengths=lengths, mask=mask, logp=pad(logp), old=pad(old),
                                 ref=pad(ref), scores=scores)  # fmt: skip


# --- the formulas, written as loops ---------------------------------------------------------


def test_rloo_rewards_match_a_loop():
    b = _batch()
    expected = []
    for i in range(b.B):
        kl = sum(b.old[i, t] - b.ref[i, t] for t in range(b.lengths[i]))
        expected.append(b.scores[i] - BETA * kl)
    got = rloo_rewards(b.scores, b.old, b.ref, b.mask, BETA)
    assert torch.allclose(got, torch.stack(expected), atol=1e-6)


def test_rloo_policy_loss_matches_a_loop():
    b = _batch()
    adv = rloo_advantages(b.scores, GROUP)
    terms, clipped = [], 0
    for i in range(b.B):
        ratio = math.exp(sum(b.logp[i, t] - b.old[i, t] for t in range(b.lengths[i])))
        terms.append(-min(ratio * adv[i], min(max(ratio, 0.8), 1.2) * adv[i]))
        clipped += (ratio > 1.2 and adv[i] > 0) or (ratio < 0.8 and adv[i] < 0)
    loss, stats = rloo_policy_loss(b.logp, b.old, adv, b.mask)
    assert 0 < clipped < b.B  # the data exercise both branches
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-5)
    assert stats["clipfrac"] == pytest.approx(clipped / b.B)


def test_grpo_policy_loss_matches_a_loop():
    b = _batch()
    adv = grpo_advantages(b.scores, GROUP)
    total, kl_total, clipped, n = 0.0, 0.0, 0, int(b.mask.sum())
    for i in range(b.B):
        for t in range(b.lengths[i]):
            ratio = math.exp(b.logp[i, t] - b.old[i, t])
            q = float(b.ref[i, t] - b.logp[i, t])
            kl = ratio * (math.exp(q) - 1 - q)
            total += -min(ratio * adv[i], min(max(ratio, 0.8), 1.2) * adv[i]) + BETA * kl
            kl_total += kl
            clipped += (ratio > 1.2 and adv[i] > 0) or (ratio < 0.8 and adv[i] < 0)
    assert 0 < clipped < n
    for num_tokens in (None, 7.5):
        loss, stats = grpo_policy_loss(b.logp, b.old, b.ref, adv, b.mask, BETA,
                                       num_tokens=num_tokens)  # fmt: skip
        assert loss.item() == pytest.approx(float(total) / (num_tokens or n), rel=1e-5)
    assert stats["kl"] == pytest.approx(kl_total / n, rel=1e-5)
    assert stats["clipfrac"] == pytest.approx(clipped / n)
    # steps_per_generation=4 micro-batches share the generation batch's token count
    assert grpo_num_tokens(b.mask, 4) == pytest.approx(n / 4)
    assert grpo_num_tokens(torch.zeros(2, 3), 4) == pytest.approx(1 / 4)  # TRL's clamp(min=1)


def test_on_policy_the_losses_are_minus_the_mean_advantage_and_kl_zero_against_itself():
    b = _batch()
    adv = rloo_advantages(b.scores, GROUP)
    loss, stats = rloo_policy_loss(b.logp, b.logp, adv, b.mask)
    assert loss.item() == pytest.approx(-adv.mean().item(), abs=1e-6) and stats["clipfrac"] == 0
    loss, stats = grpo_policy_loss(b.logp, b.logp, b.logp, adv, b.mask, BETA)
    expected = -(adv[:, None] * b.mask).sum() / b.mask.sum()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6) and stats["kl"] == 0
    assert torch.equal(rloo_rewards(b.scores, b.logp, b.logp, b.mask, BETA), b.scores)


def test_padding_holding_minus_inf_changes_nothing_and_gives_finite_gradients():
    b = _batch()
    adv = grpo_advantages(b.scores, GROUP)
    inf = lambda x: torch.where(b.mask.bool(), x, torch.tensor(-math.inf))  # noqa: E731
    cases = ((rloo_policy_loss, (b.old, adv)), (grpo_policy_loss, (b.old, b.ref, adv)))
    for loss_fn, args in cases:
        finite = b.logp.clone().requires_grad_()
        infinite = inf(b.logp).requires_grad_()
        expected = loss_fn(finite, *args, b.mask)[0]
        got = loss_fn(infinite, *[inf(a) if a.dim() == 2 else a for a in args], b.mask)[0]
        expected.backward(), got.backward()
        assert torch.allclose(got, expected) and torch.isfinite(infinite.grad).all()
        assert torch.allclose(infinite.grad, finite.grad)
        assert (finite.grad[~b.mask.bool()] == 0).all()


# --- against TRL's own code -----------------------------------------------------------------


def _trl_args(config_class, tmp_path):
    """The config chapter 6 builds (beyond_ppo._train_online_trl), everything else TRL's default."""
    return config_class(output_dir=str(tmp_path), per_device_train_batch_size=GROUP,
                        num_generations=GROUP, num_iterations=4, steps_per_generation=4,
                        temperature=1.0, beta=BETA, reward_weights=[1.0, 0.0],
                        disable_dropout=True, report_to="none", use_cpu=True)  # fmt: skip


def _stand_in(args, logps: dict, **extra):
    """A ``self`` for TRL's trainer methods: the attributes their ``__init__`` copies from
    ``args``, a one-process accelerator, and a log-prob getter returning prepared tensors."""
    model = types.SimpleNamespace(training=True, is_gradient_checkpointing=False)
    ref_model = object()
    accelerator = types.SimpleNamespace(
        device=torch.device("cpu"), process_index=0, num_processes=1, is_main_process=True,
        reduce=lambda x, reduction: x, gather=lambda x: x, gather_for_metrics=lambda x: x,
    )  # fmt: skip

    def per_token_logps(model_, *a, **k):
        return logps["ref" if model_ is ref_model else "policy"], logps.get("entropy"), None

    fields = {name: getattr(args, name, None) for name in (
        "beta", "num_generations", "num_iterations", "pad_to_multiple_of", "use_vllm",
        "normalize_advantages", "mask_truncated_completions", "reward_clip_range", "loss_type",
        "scale_rewards", "importance_sampling_level", "off_policy_mask_threshold",
        "top_entropy_quantile", "multi_objective_aggregation", "log_multimodal",
        "vllm_importance_sampling_correction", "max_completion_length")}  # fmt: skip
    return types.SimpleNamespace(
        args=args, **fields, model=model, ref_model=ref_model, accelerator=accelerator,
        epsilon_low=args.epsilon, epsilon_high=args.epsilon_high or args.epsilon,
        reward_weights=torch.tensor(args.reward_weights), reward_func_names=["proxy", "gold"],
        num_generations_eval=args.num_generations, current_gradient_accumulation_steps=1,
        aux_loss_enabled=False, _entropy_bonus_enabled=False, eos_token_ids=[2],
        _tokenizer=types.SimpleNamespace(pad_token_id=PAD),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _logs={"prompt": [], "completion": [], "rewards": defaultdict(list), "advantages": [],
               "extra": defaultdict(list)},
        _pending_extra_logs={}, _pending_metrics={}, environment_factories=None, environments=None,
        tools=[],
        _get_per_token_logps_and_entropies=per_token_logps, **extra,
    )  # fmt: skip


def _rollout(b):
    """What TRL's ``_generate`` returns: token-id lists of ragged completions."""
    prompt_ids = [[5, 6, 7]] * b.B
    completion_ids = [[9] * int(n) for n in b.lengths]
    return prompt_ids, completion_ids, ["text"] * b.B


def _score_with_trl(trainer_class, args, b):
    """TRL's ``_generate_and_score_completions`` on our batch: its rewards, KL and advantages."""
    prompt_ids, completion_ids, texts = _rollout(b)
    if trainer_class.__name__ == "RLOOTrainer":
        generate = lambda prompts: (prompt_ids, completion_ids, texts)  # noqa: E731
    else:
        generate = lambda prompts: (prompt_ids, completion_ids, None, texts, None, {}, None,  # noqa: E731
                                    [None] * b.B)  # fmt: skip
    gold = torch.randn(b.B)  # weight 0: must not count
    me = _stand_in(args, {"policy": b.old, "ref": b.ref}, _generate=generate,
                   _calculate_rewards=lambda *a: torch.stack([b.scores, gold], 1))  # fmt: skip
    out = trainer_class._generate_and_score_completions(me, [{"prompt": "p"}] * b.B)
    assert torch.equal(out["completion_mask"], b.mask)  # same padding as our batch
    return out, me._metrics["train"]


def test_rloo_rewards_and_advantages_are_trls(tmp_path):
    from trl import RLOOConfig, RLOOTrainer

    args = _trl_args(RLOOConfig, tmp_path)
    assert not args.normalize_advantages and not args.mask_truncated_completions
    b = _batch(n_prompts=4)
    out, metrics = _score_with_trl(RLOOTrainer, args, b)
    ours = rloo_advantages(rloo_rewards(b.scores, b.old, b.ref, b.mask, args.beta), GROUP)
    assert torch.allclose(out["advantages"], ours, atol=1e-5)
    # the reward without its KL would not do (the test can fail)
    assert not torch.allclose(out["advantages"], rloo_advantages(b.scores, GROUP), atol=1e-3)
    kl = masked_mean(kl_estimate(b.old, b.ref, "k1"), b.mask).item()
    assert metrics["kl"] == [pytest.approx(kl, rel=1e-5)]


def test_grpo_advantages_and_token_count_are_trls(tmp_path):
    from trl import GRPOConfig, GRPOTrainer

    args = _trl_args(GRPOConfig, tmp_path)
    assert args.scale_rewards == "group" and not args.mask_truncated_completions
    b = _batch(n_prompts=4)
    out, _ = _score_with_trl(GRPOTrainer, args, b)
    assert torch.allclose(out["advantages"], grpo_advantages(b.scores, GROUP), atol=1e-5)
    assert "old_per_token_logps" in out  # num_iterations=4: TRL keeps the sampling log-probs
    assert torch.equal(out["ref_per_token_logps"], b.ref)
    assert float(out["num_items_in_batch"]) == b.mask.sum()


def _loss_inputs(b, rows, advantages, **more):
    prompt_ids = torch.full((len(rows), 3), 5)
    return {"prompt_ids": prompt_ids, "prompt_mask": torch.ones_like(prompt_ids),
            "completion_ids": torch.where(b.mask[rows].bool(), 9, PAD),
            "completion_mask": b.mask[rows], "advantages": advantages[rows], **more}  # fmt: skip


def _compare(trl_loss_fn, our_loss_fn, b, rows):
    """Loss and gradient of TRL's ``_compute_loss`` and ours on one micro-batch."""
    theirs = b.logp[rows].clone().requires_grad_()
    ours = b.logp[rows].clone().requires_grad_()
    trl_loss, metrics = trl_loss_fn(theirs)
    our_loss, stats = our_loss_fn(ours)
    trl_loss.backward(), our_loss.backward()
    assert our_loss.item() == pytest.approx(trl_loss.item(), rel=1e-5, abs=1e-7)
    assert torch.allclose(ours.grad, theirs.grad, atol=1e-6)
    assert stats["clipfrac"] == pytest.approx(metrics["clip_ratio/region_mean"][-1])
    return metrics, stats


def test_rloo_policy_loss_is_trls(tmp_path):
    from trl import RLOOConfig, RLOOTrainer

    args = _trl_args(RLOOConfig, tmp_path)
    b = _batch(n_prompts=4)
    adv = rloo_advantages(rloo_rewards(b.scores, b.old, b.ref, b.mask, BETA), GROUP)
    rows = torch.tensor([0, 5, 10, 15])  # TRL shuffles the generation batch into micro-batches
    old_logps = (b.old * b.mask).sum(1)  # what TRL's _generate_and_score_completions hands on

    def trl(logp):
        me = _stand_in(args, {"policy": logp, "entropy": torch.zeros_like(logp)})
        inputs = _loss_inputs(b, rows, adv, old_logps=old_logps[rows])
        return RLOOTrainer._compute_loss(me, None, inputs), me._metrics["train"]

    _compare(trl, lambda logp: rloo_policy_loss(logp, b.old[rows], adv[rows], b.mask[rows]), b,
             rows)  # fmt: skip


@pytest.mark.parametrize("rows", [[0, 5, 10, 15], [1, 2, 3, 4]])
def test_grpo_policy_loss_is_trls(tmp_path, rows):
    from trl import GRPOConfig, GRPOTrainer

    args = _trl_args(GRPOConfig, tmp_path)
    assert args.loss_type == "dapo" and args.importance_sampling_level == "token"
    assert args.use_bias_correction_kl and args.delta is None and args.epsilon_high is None
    b = _batch(n_prompts=4)
    adv, rows = grpo_advantages(b.scores, GROUP), torch.tensor(rows)
    num_items = b.mask.sum()  # counted over the generation batch, before the split

    def trl(logp):
        me = _stand_in(args, {"policy": logp, "entropy": torch.zeros_like(logp)})
        inputs = _loss_inputs(b, rows, adv, old_per_token_logps=b.old[rows],
                              ref_per_token_logps=b.ref[rows],
                              num_items_in_batch=num_items)  # fmt: skip
        return GRPOTrainer._compute_loss(me, None, inputs), me._metrics["train"]

    def ours(logp):
        return grpo_policy_loss(logp, b.old[rows], b.ref[rows], adv[rows], b.mask[rows], BETA,
                                num_tokens=grpo_num_tokens(b.mask, 4))  # fmt: skip

    metrics, stats = _compare(trl, ours, b, rows)
    assert stats["kl"] == pytest.approx(metrics["kl"][-1], rel=1e-5)
    # the micro-batch's own token count would not do (the test can fail)
    own = grpo_policy_loss(b.logp[rows], b.old[rows], b.ref[rows], adv[rows], b.mask[rows], BETA)
    assert own[0].item() != pytest.approx(ours(b.logp[rows])[0].item(), rel=1e-3)


# --- bad inputs -----------------------------------------------------------------------------


def test_bad_shapes_and_values_raise_clear_errors():
    b = _batch()
    adv = rloo_advantages(b.scores, GROUP)
    with pytest.raises(ValueError, match="same shape"):
        rloo_rewards(b.scores, b.old, b.ref[:, :-1], b.mask, BETA)
    with pytest.raises(ValueError, match=r"scores must hold one number per completion.*view\(-1\)"):
        rloo_rewards(b.scores[:, None], b.old, b.ref, b.mask, BETA)
    with pytest.raises(ValueError, match="advantages must hold one number per completion"):
        rloo_policy_loss(b.logp, b.old, adv[:, None], b.mask)
    with pytest.raises(ValueError, match=r"must be \[B, T\]"):
        grpo_policy_loss(b.logp[0], b.old[0], b.ref[0], adv[:1], b.mask[0])
    with pytest.raises(ValueError, match="selects no response token"):
        grpo_policy_loss(b.logp, b.old, b.ref, adv, torch.zeros_like(b.mask))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        rloo_policy_loss(b.logp.tolist(), b.old, adv, b.mask)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        rloo_rewards(b.scores, b.old, b.ref, b.mask, -0.1)
    with pytest.raises(ValueError, match="num_tokens must be a finite number > 0"):
        grpo_policy_loss(b.logp, b.old, b.ref, adv, b.mask, num_tokens=0)
    with pytest.raises(ValueError, match=r"grpo_policy_loss.epsilon must be .* in \(0, 1\)"):
        grpo_policy_loss(b.logp, b.old, b.ref, adv, b.mask, epsilon=1.5)
    with pytest.raises(ValueError, match=r"rloo_policy_loss.epsilon must be"):
        rloo_policy_loss(b.logp, b.old, adv, b.mask, epsilon=0)
    with pytest.raises(ValueError, match="steps_per_generation must be a positive int"):
        grpo_num_tokens(b.mask, 0)
