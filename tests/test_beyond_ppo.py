"""Chapter 6's pieces: GRPO and RLOO advantages and the DPO loss against their formulas written as
loops, the KL measurement of evaluate_policy, config checks and the figure."""

import copy
import math

import pytest
import torch
from tiny_models import review_tokenizer, tiny_gpt2_config
from transformers import GPT2LMHeadModel

from rlhf_lib.beyond_ppo import MethodRunConfig
from rlhf_lib.dashboard import gold_vs_kl_figure
from rlhf_lib.evaluation import evaluate_policy
from rlhf_lib.objectives import dpo_loss, grpo_advantages, rloo_advantages

REWARDS = torch.tensor([1.0, 0.0, 0.5, 2.5, -1.0, -1.0, 3.0, 0.0])


def test_grpo_advantages_match_a_loop():
    expected = []
    for g in range(0, len(REWARDS), 4):
        group = REWARDS[g : g + 4].tolist()
        mean = sum(group) / 4
        std = math.sqrt(sum((r - mean) ** 2 for r in group) / 3)  # unbiased, as torch.std
        expected += [(r - mean) / (std + 1e-4) for r in group]
    assert torch.allclose(grpo_advantages(REWARDS, 4), torch.tensor(expected), atol=1e-6)


def test_rloo_advantages_match_a_loop_and_sum_to_zero_per_group():
    expected = []
    for g in range(0, len(REWARDS), 4):
        group = REWARDS[g : g + 4].tolist()
        for i, r in enumerate(group):
            others = group[:i] + group[i + 1 :]
            expected.append(r - sum(others) / len(others))
    advantages = rloo_advantages(REWARDS, 4)
    assert torch.allclose(advantages, torch.tensor(expected), atol=1e-6)
    assert torch.allclose(advantages.view(-1, 4).sum(1), torch.zeros(2), atol=1e-6)


def test_equal_rewards_in_a_group_give_no_signal():
    rewards = torch.tensor([0.7, 0.7, 0.7, 0.7, 0.0, 1.0, 0.0, 1.0])
    for advantages in (grpo_advantages(rewards, 4), rloo_advantages(rewards, 4)):
        assert torch.allclose(advantages[:4], torch.zeros(4))
        assert advantages[4:].abs().sum() > 0


@pytest.mark.parametrize("group_size", [1, 3])
def test_advantages_refuse_partial_groups(group_size):
    with pytest.raises(ValueError, match="whole groups"):
        rloo_advantages(REWARDS, group_size)


def test_dpo_loss_matches_its_formula_and_starts_at_log_two():
    torch.manual_seed(0)
    pc, pr, rc, rr = (torch.randn(16) * 5 for _ in range(4))
    beta = 0.1
    expected = (
        sum(
            -math.log(1 / (1 + math.exp(-beta * ((a - c) - (b - d)))))
            for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist(), strict=True)
        )
        / 16
    )
    assert dpo_loss(pc, pr, rc, rr, beta).item() == pytest.approx(expected, rel=1e-5)
    assert dpo_loss(pc, pr, pc, pr, beta).item() == pytest.approx(math.log(2), rel=1e-6)


def test_config_refuses_an_unknown_method_and_uneven_batches():
    with pytest.raises(ValueError, match="method must be one of"):
        MethodRunConfig(method="reinforce")
    with pytest.raises(ValueError, match="divisible by group_size"):
        MethodRunConfig(group_size=5)
    with pytest.raises(ValueError, match="less than one rollout"):
        MethodRunConfig(n_samples=8)
    assert MethodRunConfig().rollouts == 30


class ConstantReward(torch.nn.Module):
    """A stand-in reward model: every text scores its length (score_texts reads .logits)."""

    config = type("Config", (), {"n_positions": 64})()

    def parameters(self):
        return iter([torch.zeros(1)])

    def forward(self, input_ids, attention_mask):
        logits = attention_mask.sum(1, keepdim=True).float()
        return type("Output", (), {"logits": logits})()


@pytest.fixture(scope="module")
def tiny_policy():
    tokenizer = review_tokenizer()
    torch.manual_seed(0)
    return GPT2LMHeadModel(tiny_gpt2_config(tokenizer)).eval(), tokenizer


def test_kl_is_zero_against_itself_and_positive_after_a_change(tiny_policy):
    policy, tokenizer = tiny_policy
    prompts = ["the film was", "the plot"] * 4
    args = (tokenizer, prompts, ConstantReward(), tokenizer)
    same = evaluate_policy(policy, copy.deepcopy(policy), *args, max_new_tokens=8)
    assert same["kl"] == pytest.approx(0.0, abs=1e-6)
    assert len(same["texts"]) == len(prompts)
    changed = copy.deepcopy(policy)
    with torch.no_grad():
        changed.lm_head.weight.add_(0.5 * torch.randn_like(changed.lm_head.weight))
    assert evaluate_policy(changed, policy, *args, max_new_tokens=8)["kl"] > 0.01


def test_gold_vs_kl_figure_has_one_curve_per_method_and_checks_input():
    runs = [{"method": m, "checkpoints": [{"samples": 0, "kl": 0.0, "gold": 0.1, "proxy": 0.0},
                                          {"samples": 960, "kl": 2.0, "gold": 0.5, "proxy": 1.0}]}
            for m in ("ppo", "grpo")]  # fmt: skip
    fig = gold_vs_kl_figure(runs)
    assert [t.name for t in fig.data] == ["PPO (ours)", "GRPO (TRL)"]
    assert list(fig.data[0].y) == [0.1, 0.5]
    assert list(gold_vs_kl_figure(runs, y="proxy").data[1].y) == [0.0, 1.0]
    with pytest.raises(ValueError, match="at least one run"):
        gold_vs_kl_figure([])
    with pytest.raises(ValueError, match="'gold' or 'proxy'"):
        gold_vs_kl_figure(runs, y="kl")


def test_chapter_6s_ppo_run_is_chapter_5s_default_run():
    from dataclasses import asdict

    from rlhf_lib.beyond_ppo import _ppo_run_config
    from rlhf_lib.rlhf_run import RLHFRunConfig

    # the same config, so the same cached stage: chapter 6 never trains PPO a second time
    assert asdict(_ppo_run_config(MethodRunConfig(method="ppo"))) == asdict(RLHFRunConfig())
