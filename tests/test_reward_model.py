"""The reward-model wrapper (chapter 4): TRL's loss is our Bradley–Terry loss, and bad input
fails early with one clear message."""

import copy

import pytest
import torch

from rlhf_lib.base_model import BaseModelConfig, make_model
from rlhf_lib.reviews import generate_reviews, train_tokenizer
from rlhf_lib.reward import bradley_terry_loss
from rlhf_lib.reward_figures import calibration_figure
from rlhf_lib.reward_model import (
    PreferenceDataError,
    RewardModelConfig,
    accuracy_history,
    calibration_table,
    check_preference_inputs,
    make_trainer,
    pairwise_metrics,
    reward_model_from_sft,
    score_pairs,
    score_texts,
)

TINY = BaseModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=128, vocab_size=300)
LONG = 128  # a 300-token vocabulary spells reviews out in many tokens


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory):
    """A tiny causal LM saved to disk and reloaded as a reward model (num_labels=1)."""
    folder = tmp_path_factory.mktemp("tiny_lm")
    texts = [r.text for r in generate_reviews(300, seed=0)]
    tokenizer = train_tokenizer(texts, TINY.vocab_size)
    make_model(TINY, tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return reward_model_from_sft(folder)


def pairs(n=8, prompt=True, margin=False):
    from datasets import Dataset

    reviews = generate_reviews(2 * n, seed=7)
    rows = []
    for a, b in zip(reviews[:n], reviews[n:], strict=True):
        row = {"chosen": a.text[len(a.prompt) :], "rejected": b.text[len(b.prompt) :]}
        if prompt:
            row["prompt"] = a.prompt
        else:
            row["chosen"], row["rejected"] = a.text, b.text
        if margin:
            row["margin"] = 0.5
        rows.append(row)
    return Dataset.from_list(rows)


def trl_eval_loss(model, tokenizer, data, tmp_path, **overrides):
    config = RewardModelConfig(max_length=LONG, **overrides)
    trainer = make_trainer(model, tokenizer, data, None, config, tmp_path / "rm")
    return trainer.evaluate(data)["eval_loss"]  # one batch: eval batch size 256 > len(data)


@pytest.mark.parametrize("prompt", [True, False])
def test_bradley_terry_loss_equals_trl_loss(tiny_rm, tmp_path, prompt):
    model, tokenizer = tiny_rm
    torch.nn.init.normal_(model.score.weight, std=1.0)  # rewards far from zero: a real test
    data = pairs(prompt=prompt)
    r_c, r_r = score_pairs(model, tokenizer, data)
    ours = bradley_terry_loss(torch.tensor(r_c), torch.tensor(r_r)).item()
    assert trl_eval_loss(model, tokenizer, data, tmp_path, center_rewards_coefficient=None) == (
        pytest.approx(ours, rel=1e-4)
    )
    centred = bradley_terry_loss(
        torch.tensor(r_c), torch.tensor(r_r), center_rewards_coefficient=0.01
    ).item()
    assert trl_eval_loss(model, tokenizer, data, tmp_path) == pytest.approx(centred, rel=1e-4)
    assert pairwise_metrics(r_c, r_r)["loss"] == pytest.approx(ours, rel=1e-6)


def test_margin_column_matches_the_margin_argument(tiny_rm, tmp_path):
    model, tokenizer = tiny_rm
    data = pairs(margin=True)
    r_c, r_r = map(torch.tensor, score_pairs(model, tokenizer, data))
    ours = bradley_terry_loss(r_c, r_r, margin=0.5).item()
    loss = trl_eval_loss(model, tokenizer, data, tmp_path, center_rewards_coefficient=None)
    assert loss == pytest.approx(ours, rel=1e-4)


def test_a_few_training_steps_run_and_score(tiny_rm, tmp_path):
    model, tokenizer = tiny_rm
    data = pairs(16)
    config = RewardModelConfig(batch_size=8, eval_steps=1, max_length=LONG)
    trainer = make_trainer(model, tokenizer, data, {"eval": data}, config, tmp_path, max_steps=2)
    trainer.train()
    acc = accuracy_history(trainer.state.log_history)
    assert acc["step"] == [1, 2] and len(acc["eval"]) == 2
    scores = score_texts(model, tokenizer, ["The plot was great.", "The plot was awful."])
    assert scores.shape == (2,)
    table = calibration_table(*score_pairs(model, tokenizer, data), n_bins=4)
    assert sum(table["count"]) == 2 * len(data)
    assert len(calibration_figure({"eval": table}).data) == 2


def test_wrong_columns(tiny_rm):
    model, tokenizer = tiny_rm
    data = pairs().rename_column("chosen", "good")
    with pytest.raises(PreferenceDataError, match="'chosen' and 'rejected'"):
        check_preference_inputs(model, tokenizer, data, LONG)


def test_empty_dataset(tiny_rm):
    model, tokenizer = tiny_rm
    with pytest.raises(PreferenceDataError, match="is empty"):
        check_preference_inputs(model, tokenizer, pairs().select([]), LONG)


def test_tokenizer_that_does_not_match(tiny_rm):
    model, _ = tiny_rm
    other = train_tokenizer([r.text for r in generate_reviews(300, seed=1)], 400)
    with pytest.raises(PreferenceDataError, match="do not belong together"):
        check_preference_inputs(model, other, pairs(), LONG)


def test_num_labels_must_be_one(tiny_rm, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model, tokenizer = tiny_rm
    config = copy.deepcopy(model.config)
    config.num_labels = 2
    two = AutoModelForSequenceClassification.from_config(config)
    with pytest.raises(PreferenceDataError, match="num_labels=2"):
        check_preference_inputs(two, tokenizer, pairs(), LONG)
    with pytest.raises(PreferenceDataError, match="num_labels=2"):  # make_trainer checks too
        make_trainer(two, tokenizer, pairs(), None, RewardModelConfig(), tmp_path / "rm")


def test_all_pairs_too_long(tiny_rm, tmp_path):
    model, tokenizer = tiny_rm
    with pytest.raises(PreferenceDataError, match="All 8 pairs .* longer than max_length=5"):
        make_trainer(model, tokenizer, pairs(), None, RewardModelConfig(max_length=5), tmp_path)


def test_some_pairs_too_long_only_warn(tiny_rm):
    model, tokenizer = tiny_rm
    data = pairs()
    from rlhf_lib.reward_model import pair_lengths

    lengths = pair_lengths(tokenizer, data)
    cut = int(sorted(lengths)[len(lengths) // 2])
    with pytest.warns(UserWarning, match="TRL will drop them"):
        check_preference_inputs(model, tokenizer, data, cut)
