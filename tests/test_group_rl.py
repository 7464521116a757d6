"""Our RLOO and GRPO (rlhf_lib.group_rl) on a tiny random GPT-2: groups side by side, no value
model, the toy reward learned, the KL where TRL puts it, and configs that cannot work refused."""

import copy

import pytest
import torch
from tiny_models import review_tokenizer, tiny_gpt2_config
from transformers import GPT2LMHeadModel

from rlhf_lib.checks import ConfigError
from rlhf_lib.group_rl import GroupConfig, GroupTrainer

PROMPTS = ["the film was", "i thought the acting", "the plot", "what a"]


@pytest.fixture(scope="module")
def tokenizer():
    return review_tokenizer()


def count_letter_e(texts):
    return torch.tensor([t.count("e") / max(len(t), 1) * 10 for t in texts])


def make_trainer(tokenizer, estimator, reward_fn=count_letter_e, **overrides):
    config = GroupConfig(**({"total_steps": 3, "batch_size": 8, "mini_batch_size": 4,
                             "max_new_tokens": 8, "estimator": estimator, "group_size": 4}
                            | overrides))  # fmt: skip
    torch.manual_seed(0)
    policy = GPT2LMHeadModel(tiny_gpt2_config(tokenizer, n_positions=32))
    return GroupTrainer(config, policy, copy.deepcopy(policy), tokenizer, PROMPTS, reward_fn,
                        gold_fn=lambda texts: [float(len(t)) for t in texts])  # fmt: skip


@pytest.mark.parametrize("estimator", ["rloo", "grpo"])
def test_a_rollout_holds_whole_groups_and_no_value_model(tokenizer, estimator, monkeypatch):
    trainer = make_trainer(tokenizer, estimator)
    seen = []
    generate = trainer.generate
    monkeypatch.setattr(trainer, "generate", lambda prompts, **kw: seen.append(prompts) or
                        generate(prompts, **kw))  # fmt: skip
    first = trainer.step()
    prompts = seen[0]
    assert len(prompts) == 8 and prompts[:4] == [prompts[0]] * 4 and prompts[4:] == [prompts[4]] * 4
    assert trainer.value_model is None
    # policy == reference before any update; the sampled log-probs come from the cached loop,
    # the reference's from one full pass, which round differently on some CPUs (1e-7 on an EPYC)
    assert abs(first["objective/kl"]) < 1e-5
    assert "gold/score" in first and abs(first["val/ratio"] - 1) < 0.1


@pytest.mark.parametrize("estimator", ["rloo", "grpo"])
def test_group_methods_learn_a_toy_reward(tokenizer, estimator):
    trainer = make_trainer(tokenizer, estimator, total_steps=20, batch_size=16,
                           mini_batch_size=8, kl_coef=0.0, learning_rate=3e-3,
                           missing_eos_penalty=None)  # fmt: skip
    history = trainer.train(progress=False)
    start = sum(h["objective/scores"] for h in history[:3]) / 3
    end = sum(h["objective/scores"] for h in history[-3:]) / 3
    assert end > 1.3 * start, (start, end)


def test_each_logged_reward_carries_its_methods_kl_term(tokenizer):
    for estimator in ("rloo", "grpo"):
        trainer = make_trainer(tokenizer, estimator, kl_coef=0.5, learning_rate=3e-3)
        history = trainer.train(progress=False)
        last = history[-1]
        gap = last["objective/scores"] - last["objective/rlhf_reward"]
        if estimator == "rloo":  # reward = score − β·Σ k1: the gap is β times the logged KL
            assert gap == pytest.approx(0.5 * last["objective/kl"], rel=1e-4, abs=1e-6)
        else:  # GRPO's KL term is k3 (never negative), in its loss: logged beside the score
            assert gap > 0 and gap != pytest.approx(0.5 * last["objective/kl"], rel=1e-3)


@pytest.mark.parametrize(
    "overrides, match",
    [({"group_size": 1}, "group_size >= 2"), ({"group_size": 3}, "whole groups"),
     ({"estimator": "ppo"}, "estimator"), ({"value_model": "shared"}, "trains no value model"),
     ({"critic_warmup_epochs": 2}, "trains no value model")],
)  # fmt: skip
def test_impossible_group_configs_are_refused(overrides, match):
    with pytest.raises(ConfigError, match=match):
        GroupConfig(**({"batch_size": 8, "mini_batch_size": 4} | overrides))
