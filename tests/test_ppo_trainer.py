"""The PPO loop on a tiny random GPT-2: it learns a toy reward, logs TRL's metric names, starts at
KL = 0, refuses impossible configs and stops cleanly on a NaN reward."""

import copy

import pytest
import torch
from tiny_models import review_tokenizer, tiny_gpt2_config
from transformers import GPT2ForSequenceClassification, GPT2LMHeadModel

from rlhf_lib.ppo import AdaptiveKLController, PPOConfig, PPOTrainer
from rlhf_lib.rollout import Rollout, response_mask

PROMPTS = ["the film was", "i thought the acting", "the plot", "what a"]
TRL_NAMES = ("objective/kl", "objective/entropy", "objective/non_score_reward",
             "objective/rlhf_reward", "objective/scores", "policy/approxkl_avg",
             "policy/clipfrac_avg", "loss/policy_avg", "loss/value_avg", "val/ratio")  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    return review_tokenizer()


def tiny_models(tokenizer, seed=0):
    torch.manual_seed(seed)
    config = tiny_gpt2_config(tokenizer, n_positions=32, num_labels=1)
    policy = GPT2LMHeadModel(config)
    value = GPT2ForSequenceClassification(config)
    return policy, copy.deepcopy(policy), value


def count_letter_e(texts):
    return torch.tensor([t.count("e") / max(len(t), 1) * 10 for t in texts])


def make_trainer(tokenizer, reward_fn=count_letter_e, **overrides):
    config = PPOConfig(**({"total_steps": 3, "batch_size": 8, "mini_batch_size": 4,
                           "max_new_tokens": 8} | overrides))  # fmt: skip
    policy, ref, value = tiny_models(tokenizer, config.seed)
    return PPOTrainer(config, policy, ref, value, tokenizer, PROMPTS, reward_fn,
                      gold_fn=lambda texts: [float(len(t)) for t in texts])  # fmt: skip


def test_first_step_starts_at_zero_kl_and_logs_trl_names(tokenizer):
    trainer = make_trainer(tokenizer)
    first = trainer.step()
    # policy == reference before any update; the policy's log-probs come from sampling's cached
    # pass and the reference's from one full pass, equal to float rounding
    assert abs(first["objective/kl"]) < 1e-5
    for name in (*TRL_NAMES, "gold/score"):
        assert name in first, name
    assert abs(first["val/ratio"] - 1) < 0.1  # early updates stay near the old policy
    assert len(trainer.history) == 1


def test_ppo_learns_a_toy_reward(tokenizer):
    trainer = make_trainer(
        tokenizer, total_steps=20, batch_size=16, mini_batch_size=8, kl_coef=0.0,
        learning_rate=3e-3, missing_eos_penalty=None,
    )  # fmt: skip
    history = trainer.train(progress=False)
    start = sum(h["objective/scores"] for h in history[:3]) / 3
    end = sum(h["objective/scores"] for h in history[-3:]) / 3
    assert end > 1.3 * start, (start, end)  # a clear rise, not noise
    assert history[-1]["objective/kl"] > 0  # it moved away from the reference


def test_nan_reward_stops_with_history_intact(tokenizer):
    calls = {"n": 0}

    def reward_that_breaks(texts):
        calls["n"] += 1
        scores = count_letter_e(texts)
        return scores if calls["n"] < 3 else scores * float("nan")

    trainer = make_trainer(tokenizer, reward_fn=reward_that_breaks)
    trainer.step(), trainer.step()
    before = [p.clone() for p in trainer.policy.parameters()]
    with pytest.raises(FloatingPointError, match="2 finished steps are kept"):
        trainer.step()
    assert len(trainer.history) == 2
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.policy.parameters(), strict=True))


@pytest.mark.parametrize(
    "field, value",
    [("kl_coef", -0.1), ("cliprange", 0.0), ("mini_batch_size", 3), ("gamma", 1.5),
     ("kl_estimator", "k9"), ("target_kl", -1.0), ("ppo_epochs", 0)],
)  # fmt: skip
def test_impossible_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field if field != "mini_batch_size" else "batch_size"):
        PPOConfig(**{field: value})


def test_prompt_longer_than_context_is_refused(tokenizer):
    with pytest.raises(ValueError, match="max_new_tokens"):
        make_trainer(tokenizer, max_new_tokens=30)


def test_response_mask_stops_after_first_eos():
    responses = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 9, 9, 9]])
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    assert torch.equal(response_mask(responses, eos_token_id=2), expected)


def test_adaptive_kl_controller_moves_beta_towards_target():
    controller = AdaptiveKLController(0.1, target=6.0, horizon=1000)
    controller.update(current_kl=12.0, n_samples=100)  # too much KL: raise the price
    assert controller.value == pytest.approx(0.1 * (1 + 0.2 * 0.1))
    controller.update(current_kl=1.0, n_samples=100)  # too little: lower it
    assert controller.value < 0.1 * (1 + 0.2 * 0.1)


def test_same_seed_same_history(tokenizer):
    def run():
        trainer = make_trainer(tokenizer, total_steps=2)
        history = trainer.train(progress=False)
        return [{k: v for k, v in h.items() if not k.startswith("time/")} for h in history]

    assert run() == run()


def test_value_head_on_the_policy_trunk_needs_no_value_model(tokenizer):
    config = PPOConfig(total_steps=2, batch_size=8, mini_batch_size=4, max_new_tokens=8,
                       value_model="shared")  # fmt: skip
    policy, ref, value = tiny_models(tokenizer)
    with pytest.raises(ValueError, match="pass value_model=None"):
        PPOTrainer(config, policy, ref, value, tokenizer, PROMPTS, count_letter_e)
    trainer = PPOTrainer(config, policy, ref, None, tokenizer, PROMPTS, count_letter_e)
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert {id(p) for p in trainer.value_head.parameters()} <= optimised
    first = trainer.step()
    assert first["val/explained_variance"] == pytest.approx(0.0, abs=1e-6)  # the head starts at 0
    trainer.step()
    assert trainer.value_head.weight.abs().sum() > 0  # the value loss trained it


def test_values_train_in_the_first_value_epochs_only(tokenizer):
    trainer = make_trainer(tokenizer, value_epochs=1)
    stats = {}
    update = trainer._update

    def spy(*args):
        stats.update(update(*args))
        return stats

    trainer._update = spy
    trainer.step()
    assert len(stats["pg_loss"]) == 4 * 2 and len(stats["vf_loss"]) == 2  # 4 epochs of 2 batches


def test_a_warmed_up_critic_explains_more_of_the_first_rollout(tokenizer):
    cold, warm = make_trainer(tokenizer), make_trainer(tokenizer, critic_warmup_epochs=20)
    cold_ev = cold.step()["val/explained_variance"]
    assert warm.step()["val/explained_variance"] > cold_ev


def test_value_model_choices_are_checked():
    with pytest.raises(ValueError, match="value_model"):
        PPOConfig(value_model="tiny")
    with pytest.raises(ValueError, match="Use one or the other"):
        PPOConfig(value_model="shared", critic_warmup_epochs=2)


def test_critic_is_the_reward_model_cut_to_its_first_blocks(tokenizer):
    from rlhf_lib.checks import ConfigError
    from rlhf_lib.rlhf_run import critic

    config = tiny_gpt2_config(tokenizer, n_positions=32, num_labels=1)
    config.n_layer = 2
    reward_model = GPT2ForSequenceClassification(config)
    cut = critic(reward_model, PPOConfig(critic_layers=1))
    assert len(cut.transformer.h) == 1 and len(reward_model.transformer.h) == 2
    first, original = (
        cut.transformer.h[0].mlp.c_fc.weight,
        reward_model.transformer.h[0].mlp.c_fc.weight,
    )
    assert torch.equal(first, original) and first is not original  # a copy of the first block
    assert critic(reward_model, PPOConfig(value_model="shared")) is None
    with pytest.raises(ConfigError, match="only 2 blocks"):
        critic(reward_model, PPOConfig(critic_layers=3))


@pytest.mark.parametrize("value_model", ["separate", "shared"])
def test_trimming_minibatches_changes_no_update(tokenizer, monkeypatch, value_model):
    # the same two PPO steps with each minibatch trimmed of its padding columns, and without
    generate = PPOTrainer.generate

    def ending_early(self, prompts, **kwargs):  # end half the responses after 2 tokens
        rollout = generate(self, prompts, **kwargs)
        start, eos = rollout.context_length, tokenizer.eos_token_id
        rollout.input_ids[::2, start + 1] = eos
        rollout.input_ids[::2, start + 2 :] = tokenizer.pad_token_id
        rollout.attention_mask[::2, start + 2 :] = 0
        return rollout

    trim_columns = Rollout.trimmed
    dropped = []

    def trimmed(rollout):  # counts the columns each minibatch drops
        part, n = trim_columns(rollout)
        dropped.append(rollout.input_ids.shape[1] - part.input_ids.shape[1])
        return part, n

    def untrimmed(rollout):  # the whole minibatch, padding included
        return rollout, rollout.responses.shape[1]

    def train(trim: bool):
        monkeypatch.setattr(Rollout, "trimmed", trimmed if trim else untrimmed)
        config = PPOConfig(total_steps=2, batch_size=8, mini_batch_size=2, max_new_tokens=8,
                           value_model=value_model, missing_eos_penalty=None)  # fmt: skip
        policy, ref, value = tiny_models(tokenizer)
        trainer = PPOTrainer(config, policy, ref, value if value_model == "separate" else None,
                             tokenizer, PROMPTS, count_letter_e)  # fmt: skip
        trainer.train(progress=False)
        monkeypatch.undo()
        return [p.detach().clone() for g in trainer.optimizer.param_groups for p in g["params"]]

    monkeypatch.setattr(PPOTrainer, "generate", ending_early)
    with_trimming = train(trim=True)
    assert max(dropped) > 0  # some minibatches had padding columns to drop
    monkeypatch.setattr(PPOTrainer, "generate", ending_early)
    for a, b in zip(with_trimming, train(trim=False), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
