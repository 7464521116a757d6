"""Chapter 6's pieces: GRPO and RLOO advantages and the DPO loss against their formulas written as
loops, the KL measurement of evaluate_policy, config checks and the figure."""

import copy
import dataclasses
import math
from dataclasses import asdict

import pytest
import torch
from tiny_models import review_tokenizer, tiny_gpt2_config
from transformers import GPT2LMHeadModel

from rlhf_lib.beyond_ppo import PPO_FIELDS_READ, MethodRunConfig, trl_arguments
from rlhf_lib.dashboard import gold_vs_kl_figure
from rlhf_lib.evaluation import evaluate_policy
from rlhf_lib.objectives import dpo_loss, grpo_advantages, rloo_advantages
from rlhf_lib.ppo import PPOConfig

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
    with pytest.raises(ValueError, match=r"ppo\.batch_size=32 must be divisible by group_size=5"):
        MethodRunConfig(group_size=5)
    MethodRunConfig(method="ppo", group_size=5)  # PPO samples no groups
    config = MethodRunConfig(ppo=PPOConfig(total_steps=3, batch_size=16, seed=7))
    assert (config.rollouts, config.n_samples, config.steps_per_rollout) == (3, 48, 2)
    assert config.seed == 7
    default = MethodRunConfig()
    assert (default.rollouts, default.n_samples, default.steps_per_rollout) == (30, 960, 4)


def test_config_refuses_ppo_settings_a_method_cannot_honour():
    with pytest.raises(ValueError, match=r"MethodRunConfig\.ppo\.target_kl=6\.0: TRL's grpo"):
        MethodRunConfig(method="grpo", ppo=PPOConfig(target_kl=6.0))
    MethodRunConfig(method="grpo_ours", ppo=PPOConfig(target_kl=6.0))  # ours adapt β as PPO
    with pytest.raises(ValueError, match=r"MethodRunConfig\.ppo cannot run rloo_ours: .*value"):
        MethodRunConfig(method="rloo_ours", ppo=PPOConfig(value_model="shared"))
    MethodRunConfig(method="ppo", ppo=PPOConfig(value_model="shared"))


def test_our_rloo_and_grpo_run_the_shared_ppo_config():
    from rlhf_lib.group_rl import GroupConfig

    ppo = PPOConfig(kl_coef=0.2, cliprange=0.1, seed=3)
    group = MethodRunConfig(method="grpo_ours", ppo=ppo, group_size=8).group_config()
    assert group == GroupConfig(**asdict(ppo), estimator="grpo", group_size=8)


# What today's TRL trainers got before trl_arguments derived them from MethodRunConfig.ppo
TRL_COMMON = {"learning_rate": 1e-4, "lr_scheduler_type": "constant", "warmup_steps": 0,
              "per_device_train_batch_size": 8, "logging_steps": 1, "save_strategy": "no",
              "report_to": "none", "disable_tqdm": True, "seed": 0}  # fmt: skip
TRL_ONLINE = {"max_steps": 480, "num_generations": 4, "steps_per_generation": 4,
              "num_iterations": 4, "max_completion_length": 24, "temperature": 1.0, "beta": 0.05,
              "reward_weights": [1.0, 0.0], "disable_dropout": True}  # fmt: skip
# passed now, at TRL's own defaults (which are PPOConfig's), so TRL's configs do not change
NEWLY_PASSED = {"max_grad_norm": 1.0, "weight_decay": 0.0}
# passed on purpose away from TRL's default (1e-8): PPOConfig.adam_eps, ours and TRL's alike
CHANGED_FOR_TRL = {"adam_epsilon": 1e-5}


@pytest.mark.parametrize("method", ["grpo", "rloo", "dpo"])
def test_trl_arguments_at_the_defaults_are_the_arguments_trl_got_before(method, tmp_path):
    import trl

    from rlhf_lib.reward_model import RewardModelConfig
    from rlhf_lib.sft import trainer_device_args

    config_class = {"grpo": trl.GRPOConfig, "rloo": trl.RLOOConfig, "dpo": trl.DPOConfig}[method]
    before = {"output_dir": str(tmp_path), **TRL_COMMON, **trainer_device_args()}
    newly = dict(NEWLY_PASSED)
    if method == "dpo":
        before |= {"num_train_epochs": 1, "beta": 0.1,
                   "max_length": RewardModelConfig().max_length}  # fmt: skip
    else:
        before |= TRL_ONLINE
        newly["epsilon"] = 0.2  # PPOConfig.cliprange
    derived = trl_arguments(MethodRunConfig(method=method), tmp_path)
    assert derived == before | newly | CHANGED_FOR_TRL
    defaults = {f.name: f.default for f in dataclasses.fields(config_class)}
    assert {name: defaults[name] for name in newly} == newly
    assert defaults["adam_epsilon"] == 1e-8 != CHANGED_FOR_TRL["adam_epsilon"]
    expected = config_class(**before, **CHANGED_FOR_TRL).to_dict()
    assert config_class(**derived).to_dict() == expected


# a value of each PPOConfig field other than its default (and valid beside the others)
CHANGED = {"total_steps": 2, "batch_size": 16, "mini_batch_size": 4, "ppo_epochs": 2,
           "max_new_tokens": 12, "temperature": 0.7, "kl_coef": 0.1, "kl_estimator": "k3",
           "target_kl": 6.0, "kl_horizon": 5000, "missing_eos_penalty": 2.0, "gamma": 0.9,
           "lam": 0.9, "learning_rate": 3e-5, "cliprange": 0.1, "cliprange_value": 0.3,
           "vf_coef": 0.5, "value_model": "shared", "critic_layers": 2, "value_epochs": 1,
           "critic_warmup_epochs": 1, "entropy_coef": 0.01, "max_grad_norm": 0.5,
           "weight_decay": 0.01, "adam_eps": 1e-8, "seed": 1}  # fmt: skip


@pytest.mark.parametrize("method", ["grpo", "rloo", "dpo"])
def test_trl_arguments_read_exactly_the_ppo_fields_the_method_lists(method, tmp_path):
    assert set(CHANGED) == {f.name for f in dataclasses.fields(PPOConfig)}
    before = trl_arguments(MethodRunConfig(method=method), tmp_path)
    # read elsewhere: missing_eos_penalty by the reward function, DPO's n_samples / 2 pairs
    elsewhere = {"missing_eos_penalty", *(("total_steps", "batch_size") if method == "dpo" else ())}
    for name, value in CHANGED.items():
        if name == "target_kl":  # refused for TRL (test above): TRL's β is fixed
            continue
        config = MethodRunConfig(method=method, ppo=PPOConfig(**{name: value}))
        moved = trl_arguments(config, tmp_path) != before
        read = name in PPO_FIELDS_READ[method] and name not in elsewhere
        assert moved == read, f"{name}: {'changes' if moved else 'does not change'} {method}"


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
    from rlhf_lib.beyond_ppo import _ppo_run_config
    from rlhf_lib.rlhf_run import RLHFRunConfig

    # the same config, so the same cached stage: chapter 6 never trains PPO a second time
    assert asdict(_ppo_run_config(MethodRunConfig(method="ppo"))) == asdict(RLHFRunConfig())
