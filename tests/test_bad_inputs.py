"""A careless reader's tour (issue 12, parts 3-6): every mistake gets a clear error at once.

One row per mistake: the call, the exception it must raise and a pattern its message must match
(the field it names, or the fix it suggests). Configs fail when built, before any model loads;
models, trainers and data checks fail before torch, transformers or TRL see the bad input. Only
tiny models built from configs are used; no stage is built.
"""

import copy
import json
import math
import os
import shutil
import time
import warnings

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import (
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from rlhf_lib import beyond_ppo, cache, performance, ppo
from rlhf_lib.annotators import (
    Annotator,
    AnnotatorPoolConfig,
    annotate,
    degeneracy_reasons,
    expected_agreement,
    gold_score,
    make_annotators,
    measured_agreement,
    noise_ceiling,
)
from rlhf_lib.attention import (
    MultiHeadAttention,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
    sinusoidal_positional_encoding,
)
from rlhf_lib.base_model import BaseModelConfig, make_model
from rlhf_lib.beyond_ppo import MethodRunConfig
from rlhf_lib.checks import ConfigError
from rlhf_lib.dashboard import (
    gold_vs_kl_figure,
    overoptimisation_figure,
    overoptimisation_verdict,
    ppo_dashboard,
    smooth,
)
from rlhf_lib.decoding import (
    apply_temperature,
    decoding_explorer_figure,
    generate,
    next_token,
    sample_settings,
    top_k_filter,
    top_p_filter,
)
from rlhf_lib.evaluation import evaluate_policy
from rlhf_lib.explorer import attention_figure, positional_encoding_figure
from rlhf_lib.gpt import GPT, GPTConfig, LLaMA, LLaMAConfig, kv_cache_bytes, rope_cos_sin
from rlhf_lib.objectives import dpo_loss, grpo_advantages, rloo_advantages
from rlhf_lib.ppo import (
    AdaptiveKLController,
    PPOConfig,
    PPOTrainer,
    clipped_policy_loss,
    clipped_value_loss,
    compute_gae,
    kl_estimate,
    whiten,
)
from rlhf_lib.preferences import PreferenceConfig, label_pairs
from rlhf_lib.reviews import (
    generate_reviews,
    load_model_and_tokenizer,
    train_tokenizer,
    vader_compound,
)
from rlhf_lib.reward import bradley_terry_loss
from rlhf_lib.reward_figures import reward_vs_gold_figure
from rlhf_lib.reward_model import (
    PreferenceDataError,
    RewardModelConfig,
    calibration_table,
    check_preference_inputs,
    make_trainer,
    pairwise_metrics,
    probe_edits,
    reward_model_from_sft,
    score_texts,
)
from rlhf_lib.rlhf_run import RLHFRunConfig
from rlhf_lib.runtime import local_folder, seed_everything
from rlhf_lib.sft import SFTStageConfig, sample_completions
from rlhf_lib.transformer import LayerNorm, Seq2SeqTransformer, TransformerConfig
from rlhf_lib.translation import TranslationConfig

NAN, INF = math.nan, math.inf
PROMPTS = ["the film was", "i thought the acting", "the plot", "what a"]

# ---------------------------------------------------------------------------------------------
# 3. Every config is checked when it is built
# ---------------------------------------------------------------------------------------------


def cases(table):
    """The rows of a case table, ``(id, *arguments)``, as pytest parameters named by their id."""
    return [pytest.param(*arguments, id=case) for case, *arguments in table]


CONFIG_CASES = [  # (id, config class, fields, message pattern[, exception])
    # PPO (chapter 5)
    ("ppo-kl-nan", PPOConfig, {"kl_coef": NAN},
     r"PPOConfig\.kl_coef must be a finite number >= 0, got nan"),
    ("ppo-lr-inf", PPOConfig, {"learning_rate": INF},
     r"PPOConfig\.learning_rate must be a finite number > 0, got inf"),
    ("ppo-lr-zero", PPOConfig, {"learning_rate": 0.0}, r"PPOConfig\.learning_rate .* > 0"),
    ("ppo-temperature-nan", PPOConfig, {"temperature": NAN}, r"PPOConfig\.temperature"),
    ("ppo-uneven-minibatch", PPOConfig, {"batch_size": 32, "mini_batch_size": 12},
     r"batch_size=32 must be divisible by mini_batch_size=12.*use batch_size=24 or 36"),
    ("ppo-minibatch-larger", PPOConfig, {"batch_size": 4, "mini_batch_size": 8},
     r"batch_size=4 must be divisible by mini_batch_size=8.*use batch_size=8,"),
    ("ppo-zero-epochs", PPOConfig, {"ppo_epochs": 0},
     r"PPOConfig\.ppo_epochs must be a positive int, got 0"),
    ("ppo-float-batch", PPOConfig, {"batch_size": 8.0},
     r"PPOConfig\.batch_size must be a positive int, got 8\.0"),
    ("ppo-cliprange-above-one", PPOConfig, {"cliprange": 1.5},
     r"PPOConfig\.cliprange must be a finite number in \(0, 1\)"),
    ("ppo-lam-nan", PPOConfig, {"lam": NAN}, r"PPOConfig\.lam must be a finite number in \[0, 1\]"),
    ("ppo-target-kl-nan", PPOConfig, {"target_kl": NAN}, r"PPOConfig\.target_kl .* or None"),
    ("ppo-negative-eos-penalty", PPOConfig, {"missing_eos_penalty": -1.0},
     r"PPOConfig\.missing_eos_penalty must be a finite number >= 0 or None"),
    ("ppo-unknown-estimator", PPOConfig, {"kl_estimator": "k9"},
     r"PPOConfig\.kl_estimator must be one of \('k1', 'k2', 'k3'\)"),
    ("ppo-negative-seed", PPOConfig, {"seed": -1}, r"PPOConfig\.seed must be an int >= 0"),
    ("ppo-adaptive-kl-from-zero", PPOConfig, {"kl_coef": 0.0, "target_kl": 6.0},
     r"PPOConfig\.kl_coef must be > 0 when target_kl is set.*kl_coef=0\.05"),
    ("ppo-kl-horizon-below-batch", PPOConfig, {"target_kl": 6.0, "kl_horizon": 1},
     r"PPOConfig\.kl_horizon=1 must be at least batch_size=32 when target_kl is set"),
    # GRPO / RLOO / DPO runs (chapter 6): the budget is a PPOConfig, which checks its own fields
    # (the PPO cases above: learning rate, epochs, minibatches...)
    ("ppo-negative-kl", PPOConfig, {"kl_coef": -0.1},
     r"PPOConfig\.kl_coef must be a finite number >= 0, got -0\.1"),
    ("ppo-lr-nan", PPOConfig, {"learning_rate": NAN},
     r"PPOConfig\.learning_rate must be a finite number > 0, got nan"),
    ("ppo-zero-steps", PPOConfig, {"total_steps": 0},
     r"PPOConfig\.total_steps must be a positive int, got 0"),
    ("method-negative-dpo-beta", MethodRunConfig, {"dpo_beta": -1.0},
     r"MethodRunConfig\.dpo_beta must be a finite number > 0"),
    ("method-grpo-group-of-one", MethodRunConfig, {"method": "grpo", "group_size": 1},
     r"group_size=1 is too small for grpo.*group_size >= 2"),
    ("method-rloo-group-of-one", MethodRunConfig, {"method": "rloo", "group_size": 1},
     r"group_size >= 2"),
    ("method-partial-groups", MethodRunConfig,
     {"ppo": PPOConfig(batch_size=30, mini_batch_size=6), "group_size": 4},
     r"MethodRunConfig\.ppo\.batch_size=30 must be divisible by group_size=4 \(a rollout of grpo "
     r"holds whole groups.*use ppo\.batch_size=28 or 32, or change group_size"),
    ("method-ours-partial-groups", MethodRunConfig,
     {"method": "rloo_ours", "ppo": PPOConfig(batch_size=12, mini_batch_size=4), "group_size": 8},
     r"MethodRunConfig\.ppo\.batch_size=12 .* by group_size=8.*use ppo\.batch_size=8 or 16"),
    ("method-trl-target-kl", MethodRunConfig, {"method": "rloo", "ppo": PPOConfig(target_kl=6.0)},
     r"MethodRunConfig\.ppo\.target_kl=6\.0: TRL's rloo keeps β fixed.*target_kl=None"),
    ("method-ours-value-head", MethodRunConfig,
     {"method": "grpo_ours", "ppo": PPOConfig(value_model="shared")},
     r"MethodRunConfig\.ppo cannot run grpo_ours: GroupConfig trains no value model"),
    ("method-ppo-as-dict", MethodRunConfig, {"ppo": {"kl_coef": 0.1}},
     r"MethodRunConfig\.ppo must be a PPOConfig, got dict", TypeError),
    ("method-nested-dict", MethodRunConfig, {"sft": {"max_steps": 5}},
     r"MethodRunConfig\.sft must be a SFTStageConfig, got dict", TypeError),
    ("method-unknown", MethodRunConfig, {"method": "reinforce"},
     r"MethodRunConfig\.method must be one of"),
    # reward model (chapter 4)
    ("rm-zero-epochs", RewardModelConfig, {"epochs": 0}, r"RewardModelConfig\.epochs .* > 0"),
    ("rm-lr-nan", RewardModelConfig, {"lr": NAN}, r"RewardModelConfig\.lr .* got nan"),
    ("rm-negative-centering", RewardModelConfig, {"center_rewards_coefficient": -0.01},
     r"RewardModelConfig\.center_rewards_coefficient must be a finite number >= 0 or None"),
    ("rm-zero-max-length", RewardModelConfig, {"max_length": 0},
     r"RewardModelConfig\.max_length must be a positive int"),
    ("rm-zero-batch", RewardModelConfig, {"batch_size": 0}, r"RewardModelConfig\.batch_size"),
    # PPO run of the miniature world
    ("run-zero-prompts", RLHFRunConfig, {"n_prompts": 0}, r"RLHFRunConfig\.n_prompts"),
    ("run-ppo-as-dict", RLHFRunConfig, {"ppo": {"kl_coef": 0.1}},
     r"RLHFRunConfig\.ppo must be a PPOConfig, got dict", TypeError),
    # base model (chapter 2)
    ("base-lr-nan", BaseModelConfig, {"lr": NAN}, r"BaseModelConfig\.lr .* got nan"),
    ("base-zero-heads", BaseModelConfig, {"n_head": 0},
     r"BaseModelConfig\.n_head must be a positive int, got 0"),
    ("base-uneven-heads", BaseModelConfig, {"n_embd": 130},
     r"n_embd=130 must be divisible by n_head=4.*use n_embd=128 or 132"),
    ("base-beta-above-one", BaseModelConfig, {"betas": [0.9, 1.5]},
     r"BaseModelConfig\.betas must be 2 finite numbers in \[0, 1\)"),
    ("base-tiny-vocab", BaseModelConfig, {"vocab_size": 100},
     r"BaseModelConfig\.vocab_size must be an int >= 259"),
    ("base-min-lr-ratio", BaseModelConfig, {"min_lr_ratio": 2.0}, r"min_lr_ratio .* \[0, 1\]"),
    # SFT (chapter 3)
    ("sft-negative-lr", SFTStageConfig, {"lr": -1e-3}, r"SFTStageConfig\.lr .* > 0"),
    ("sft-sentiment-nan", SFTStageConfig, {"min_sentiment": NAN},
     r"SFTStageConfig\.min_sentiment .* lower min_sentiment"),
    ("sft-warmup-ratio-one", SFTStageConfig, {"warmup_ratio": 1.0},
     r"SFTStageConfig\.warmup_ratio must be a finite number in \[0, 1\)"),
    ("sft-zero-batch", SFTStageConfig, {"batch_size": 0}, r"SFTStageConfig\.batch_size"),
    # translator and Transformer (chapter 1)
    ("translation-zero-steps", TranslationConfig, {"steps": 0}, r"TranslationConfig\.steps"),
    ("translation-batch-above-data", TranslationConfig, {"n_train": 10, "batch_size": 96},
     r"batch_size=96 is larger than n_train=10"),
    ("translation-small-vocab", TranslationConfig,
     {"model": TransformerConfig(src_vocab_size=10, tgt_vocab_size=13)},
     r"model\.src_vocab_size=10 is smaller than the task's vocabulary.*use src_vocab_size=35"),
    ("translation-lr-inf", TranslationConfig, {"lr": INF}, r"TranslationConfig\.lr .* got inf"),
    ("transformer-zero-heads", TransformerConfig, {"n_heads": 0},
     r"TransformerConfig\.n_heads must be a positive int, got 0"),
    ("transformer-uneven-heads", TransformerConfig, {"d_model": 30, "n_heads": 4},
     r"d_model=30 must be divisible by n_heads=4.*use d_model=28 or 32"),
    ("transformer-odd-sinusoidal", TransformerConfig, {"d_model": 15, "n_heads": 3},
     r"d_model=15 must be even for sinusoidal positions"),
    ("transformer-dropout-one", TransformerConfig, {"dropout": 1.0},
     r"TransformerConfig\.dropout .* \[0, 1\)"),
    ("transformer-norm-first-string", TransformerConfig, {"norm_first": "False"},
     r"TransformerConfig\.norm_first must be True or False, got 'False'"),
    ("gpt-zero-heads", GPTConfig, {"n_head": 0}, r"GPTConfig\.n_head must be a positive int"),
    ("gpt-causal-string", GPTConfig, {"causal": "False"},
     r"GPTConfig\.causal must be True or False, got 'False'"),
    ("llama-tie-string", LLaMAConfig, {"tie_word_embeddings": "no"},
     r"LLaMAConfig\.tie_word_embeddings must be True or False"),
    ("llama-zero-kv-heads", LLaMAConfig, {"n_kv_head": 0}, r"LLaMAConfig\.n_kv_head"),
    ("llama-rope-theta-nan", LLaMAConfig, {"rope_theta": NAN}, r"LLaMAConfig\.rope_theta"),
    # preferences and annotators (chapters 3-4)
    ("preferences-zero-temperature", PreferenceConfig, {"temperature": 0.0},
     r"PreferenceConfig\.temperature must be a finite number > 0"),
    ("preferences-no-pairs", PreferenceConfig, {"n_train": 0}, r"PreferenceConfig\.n_train"),
    ("annotators-none", AnnotatorPoolConfig, {"temperatures": []},
     r"AnnotatorPoolConfig\.temperatures must be a non-empty list"),
    ("annotators-nan", AnnotatorPoolConfig, {"temperatures": [0.1, NAN]},
     r"AnnotatorPoolConfig\.temperatures .* > 0"),
]  # fmt: skip


@pytest.mark.parametrize(
    "cls, kwargs, match, error",
    [pytest.param(*row[1:4], (*row[4:], ConfigError)[0], id=row[0]) for row in CONFIG_CASES],
)
def test_config_refuses_impossible_value(cls, kwargs, match, error):
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(error, match=match):
        cls(**kwargs)


def test_annotator_refuses_an_infinite_temperature():
    with pytest.raises(ValueError, match=r"temperature must be > 0 and finite.*coin flip"):
        Annotator("a", INF)


def test_defaults_still_pass():
    for cls in (PPOConfig, MethodRunConfig, RewardModelConfig, RLHFRunConfig, BaseModelConfig,
                SFTStageConfig, TranslationConfig, TransformerConfig, GPTConfig, LLaMAConfig,
                PreferenceConfig, AnnotatorPoolConfig):  # fmt: skip
        cls()


# ---------------------------------------------------------------------------------------------
# 4. PPO refuses misuse
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizers():
    """Two tokenizers of the same size from different corpora ("another run's tokenizer")."""
    a = train_tokenizer([r.text for r in generate_reviews(300, seed=0)], 300)
    b = train_tokenizer([r.text for r in generate_reviews(300, seed=1)], 300)
    assert len(a) == len(b) == 300 and a.get_vocab() != b.get_vocab()
    return a, b


def tiny_models(tokenizer, n_positions=32):
    """Policy, reference and value model as the library builds them (the config records the
    tokenizer's vocabulary, as base_model.make_model does)."""
    base = BaseModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=n_positions, vocab_size=300)
    policy = make_model(base, tokenizer)
    value_config = copy.deepcopy(policy.config)
    value_config.num_labels = 1
    return policy, copy.deepcopy(policy), GPT2ForSequenceClassification(value_config)


def count_letter_e(texts):
    return torch.tensor([t.count("e") / max(len(t), 1) * 10 for t in texts])


def ppo_trainer(tokenizer, models=None, prompts=PROMPTS, **overrides):
    config = PPOConfig(**({"total_steps": 3, "batch_size": 8, "mini_batch_size": 4,
                           "max_new_tokens": 6} | overrides))  # fmt: skip
    policy, ref, value = models or tiny_models(tokenizer)
    return PPOTrainer(config, policy, ref, value, tokenizer, prompts, count_letter_e)


def ppo_with(tokenizer, reward_fn=count_letter_e, gold_fn=None):
    config = PPOConfig(total_steps=1, batch_size=8, mini_batch_size=4, max_new_tokens=6)
    return PPOTrainer(config, *tiny_models(tokenizer), tokenizer, PROMPTS, reward_fn, gold_fn)


def _no_pad(tokenizer):
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.pad_token = None
    return tokenizer


def _same_model_as_ref(tok):
    policy, _, value = tiny_models(tok)
    return ppo_trainer(tok, (policy, policy, value))


def _shallow_copy_as_ref(tok):
    policy, _, value = tiny_models(tok)
    return ppo_trainer(tok, (policy, copy.copy(policy), value))  # same tensors, new object


def _value_on_ref_tensors(tok):
    policy, ref, value = tiny_models(tok)
    value.transformer = ref.transformer
    return ppo_trainer(tok, (policy, ref, value))


def _small_model(tok):
    config = GPT2Config(vocab_size=280, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=1, eos_token_id=2, pad_token_id=0, num_labels=1)  # fmt: skip
    value = GPT2ForSequenceClassification(config)
    return ppo_trainer(tok, (GPT2LMHeadModel(config), GPT2LMHeadModel(config), value))


PPO_CASES = [
    ("prompts-one-string", lambda a, b: ppo_trainer(a, prompts="the film was"),
     TypeError, r"PPOTrainer takes a list of prompts; wrap a single one as \[text\]"),
    ("prompts-not-strings", lambda a, b: ppo_trainer(a, prompts=["the plot", None]),
     TypeError, r"prompts\[1\] is NoneType"),
    ("ref-is-policy", lambda a, b: _same_model_as_ref(a),
     ValueError, r"ref_policy shares parameters with the policy.*copy\.deepcopy\(policy\)"),
    ("ref-shares-tensors", lambda a, b: _shallow_copy_as_ref(a),
     ValueError, r"shares parameters with the policy.*KL penalty would stay 0"),
    ("value-on-ref-tensors", lambda a, b: _value_on_ref_tensors(a),
     ValueError, r"shares parameters with the value_model"),
    ("tokenizer-without-pad", lambda a, b: ppo_trainer(_no_pad(a), tiny_models(a)),
     ValueError, r"no pad token.*tokenizer\.pad_token = tokenizer\.eos_token"),
    ("tokenizer-of-another-run", lambda a, b: ppo_trainer(b, tiny_models(a)),
     ValueError, r"policy: The tokenizer's vocabulary is not the one the model was trained"),
    ("tokenizer-larger-than-model", lambda a, b: _small_model(a),
     ValueError, r"300 tokens but the model's embedding has 280 rows"),
    ("reward-not-callable", lambda a, b: PPOTrainer(PPOConfig(), *tiny_models(a), a, PROMPTS,
                                                    reward_fn=None),
     TypeError, r"reward_fn must be a function"),
    ("prompts-a-set", lambda a, b: ppo_trainer(a, prompts=set(PROMPTS)),
     TypeError, r"got a set: a set's order changes.*sorted\(prompts\)"),
    ("gold-not-callable", lambda a, b: ppo_with(a, gold_fn=[1.0]),
     TypeError, r"gold_fn must be a function"),
    ("gold-one-value-for-a-batch", lambda a, b: ppo_with(a, gold_fn=lambda t: [1.0]).step(),
     ValueError, r"gold_fn must return one score per text \(8\), got shape \(1,\)"),
    ("reward-returns-strings", lambda a, b: ppo_with(a, reward_fn=lambda t: ["1"] * len(t)).step(),
     TypeError, r"reward_fn must return numbers"),
    ("generate-one-string", lambda a, b: ppo_trainer(a).generate("the film"),
     TypeError, r"PPOTrainer\.generate takes a list of prompts"),
    ("generate-no-prompts", lambda a, b: ppo_trainer(a).generate([]),
     ValueError, r"PPOTrainer\.generate got an empty list of prompts"),
    ("score-tokenizer-of-another-run", lambda a, b: score_texts(tiny_models(a)[2], b, ["Fun."]),
     ValueError, r"vocabulary is not the one the model was trained with"),
]  # fmt: skip


@pytest.mark.parametrize(
    "make, error, match",
    cases(PPO_CASES),
)
def test_ppo_trainer_refuses_misuse(tokenizers, make, error, match):
    with pytest.raises(error, match=match):
        make(*tokenizers)


def test_ppo_pads_prompts_on_the_left_without_changing_the_tokenizer(tokenizers):
    right = copy.deepcopy(tokenizers[0])
    right.padding_side = "right"
    trainer = ppo_trainer(right)
    rollout = trainer.generate(PROMPTS)
    ctx = rollout.context_length
    assert (rollout.attention_mask[:, ctx - 1] == 1).all()  # the token before each response is real
    assert (rollout.input_ids[:, ctx - 1] != right.pad_token_id).all()
    assert right.padding_side == "right"  # the caller's tokenizer is left as it was


def _policy_loss_that_breaks(kind):
    real = ppo.clipped_policy_loss

    def broken(logprobs, old_logprobs, advantages, mask, cliprange):
        loss, stats = real(logprobs, old_logprobs, advantages, mask, cliprange)
        if kind == "nan loss":
            return loss * NAN, stats
        # a finite loss (0) whose gradient is NaN: d sqrt(u)/du is infinite at u = 0
        return loss + torch.sqrt((logprobs * mask).sum() * 0.0), stats

    return broken


@pytest.mark.parametrize(
    "kind, match", [("nan loss", r"the loss is nan"), ("nan gradient", r"the gradient norm is nan")]
)
def test_non_finite_loss_stops_before_the_update_and_keeps_history(
    tokenizers, monkeypatch, kind, match
):
    trainer = ppo_trainer(tokenizers[0])
    trainer.step()
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    monkeypatch.setattr(ppo, "clipped_policy_loss", _policy_loss_that_breaks(kind))
    with pytest.raises(FloatingPointError, match=rf"step 2 {match}.*1 finished steps are kept"):
        trainer.step()
    assert len(trainer.history) == 1 and trainer.history[0]["step"] == 1
    after = list(trainer.policy.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert all(torch.isfinite(p).all() for p in trainer.value_model.parameters())


# ---------------------------------------------------------------------------------------------
# 5. Data, tokenizers, token ids, attention inputs
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reward_model(tokenizers):
    tokenizer = tokenizers[0]
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=16, n_layer=1,
                        n_head=2, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                        num_labels=1)  # fmt: skip
    return GPT2ForSequenceClassification(config).eval(), tokenizer


@pytest.fixture(scope="module")
def small_policy(tokenizers):
    policy, _, _ = tiny_models(tokenizers[0], n_positions=64)
    return policy.eval(), tokenizers[0]


def pairs(chosen, rejected):
    return Dataset.from_dict({"prompt": ["The plot"] * len(chosen), "chosen": chosen,
                              "rejected": rejected})  # fmt: skip


def id_pairs(chosen_ids):
    return Dataset.from_dict({"chosen_ids": chosen_ids, "rejected_ids": [[1, 6, 2]] * 2})


def _no_pad_id(model):
    model = copy.deepcopy(model)
    model.config.pad_token_id = None
    return model


GOOD, BAD = [" was great.", " was fun."], [" was awful.", " was dull."]
DATA_CASES = [
    ("preference-none-entry", lambda m, t: check_preference_inputs(
        m, t, pairs([GOOD[0], None], BAD), None),
     PreferenceDataError, r"Column 'chosen' of the train dataset holds NoneType \(None\) in row 1"),
    ("preference-ints", lambda m, t: check_preference_inputs(
        m, t, pairs(GOOD, [1, 2]), None, name="eval"),
     PreferenceDataError, r"Column 'rejected' of the eval dataset holds int.*must be text"),
    ("preference-all-identical", lambda m, t: check_preference_inputs(
        m, t, pairs(GOOD, GOOD), None),
     PreferenceDataError, r"In all 2 pairs .* 'chosen' equals 'rejected'.*log 2 = 0\.693"),
    ("preference-tokenizer-without-pad", lambda m, t: check_preference_inputs(
        m, _no_pad(t), pairs(GOOD, BAD), None),
     PreferenceDataError, r"no pad token"),
    ("score-one-string", lambda m, t: score_texts(m, t, "The plot was great."),
     TypeError, r"score_texts takes a list of texts"),
    ("score-non-string", lambda m, t: score_texts(m, t, ["The plot was great.", 3]),
     TypeError, r"texts\[1\] is int"),
    ("score-tokenizer-without-pad", lambda m, t: score_texts(m, _no_pad(t), ["The plot."]),
     ValueError, r"score_texts pads batches, but the tokenizer has no pad token"),
    ("preference-id-past-vocab", lambda m, t: check_preference_inputs(
        m, t, id_pairs([[1, 999, 2], [1, 5, 2]]), None),
     PreferenceDataError, r"'chosen_ids' of the train dataset holds token id 999 in row 0.*300"),
    ("preference-empty-ids", lambda m, t: check_preference_inputs(
        m, t, id_pairs([[1, 4, 2], []]), None),
     PreferenceDataError, r"'chosen_ids' .* holds an empty list of token ids in row 1"),
    ("score-negative-batch", lambda m, t: score_texts(m, t, ["Great.", "Dull."], batch_size=-1),
     ConfigError, r"score_texts\.batch_size must be a positive int, got -1"),
    ("score-zero-batch", lambda m, t: score_texts(m, t, ["Great."], batch_size=0),
     ConfigError, r"score_texts\.batch_size must be a positive int, got 0"),
    ("score-model-without-pad-id", lambda m, t: score_texts(_no_pad_id(m), t, ["A.", "B."]),
     ValueError, r"model\.config\.pad_token_id is None.*= tokenizer\.pad_token_id"),
    ("probe-no-texts", lambda m, t: probe_edits(m, t, []),
     ValueError, r"probe_edits got an empty list of texts"),
    ("probe-empty-text", lambda m, t: probe_edits(m, t, [""]),
     ValueError, r"probe_edits: texts\[0\] has no words"),
]  # fmt: skip


@pytest.mark.parametrize(
    "call, error, match",
    cases(DATA_CASES),
)
def test_data_mistakes_name_the_column_and_the_fix(reward_model, call, error, match):
    with pytest.raises(error, match=match):
        call(*reward_model)


def test_some_identical_pairs_warn_with_their_count(reward_model):
    model, tokenizer = reward_model
    data = pairs([GOOD[0], GOOD[1], BAD[0], BAD[1]], [GOOD[0], BAD[1], BAD[0], GOOD[1]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_preference_inputs(model, tokenizer, data, None)
    identical = [w for w in caught if "identical" in str(w.message)]
    assert len(identical) == 1
    assert "2 of 4 pairs of the train dataset have identical 'chosen' and 'rejected'" in str(
        identical[0].message
    )


SAMPLING_CASES = [
    ("sample-tokenizer-without-pad", lambda m, t: sample_completions(m, _no_pad(t), PROMPTS),
     ValueError, r"sample_completions pads batches.*no pad token"),
    ("sample-one-string", lambda m, t: sample_completions(m, t, "The plot"),
     TypeError, r"sample_completions takes a list of prompts"),
    ("sample-zero-tokens", lambda m, t: sample_completions(m, t, PROMPTS, max_new_tokens=0),
     ValueError, r"max_new_tokens must be a positive int, got 0"),
    ("sample-temperature-nan", lambda m, t: sample_completions(m, t, PROMPTS, temperature=NAN),
     ValueError, r"temperature must be > 0"),
    ("evaluate-tokenizer-without-pad", lambda m, t: evaluate_policy(
        m, m, _no_pad(t), PROMPTS, m, t),
     ValueError, r"evaluate_policy pads batches.*no pad token"),
    ("evaluate-no-prompts", lambda m, t: evaluate_policy(m, m, t, [], m, t),
     ValueError, r"evaluate_policy got an empty list of prompts"),
    ("evaluate-zero-tokens", lambda m, t: evaluate_policy(m, m, t, PROMPTS, m, t,
                                                         max_new_tokens=0),
     ConfigError, r"evaluate_policy\.max_new_tokens must be a positive int, got 0"),
    ("evaluate-past-context", lambda m, t: evaluate_policy(m, m, t, PROMPTS, m, t,
                                                          max_new_tokens=100),
     ValueError, r"max_new_tokens=100 exceeds the policy's context of 64.*at most"),
]  # fmt: skip


@pytest.mark.parametrize(
    "call, error, match",
    cases(SAMPLING_CASES),
)
def test_sampling_refuses_bad_tokenizers_and_arguments(small_policy, call, error, match):
    with pytest.raises(error, match=match):
        call(*small_policy)


def tiny_gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()


def tiny_llama():
    torch.manual_seed(0)
    return LLaMA(LLaMAConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_kv_head=1,
                             n_embd=16, intermediate_size=32)).eval()  # fmt: skip


def tiny_seq2seq():
    torch.manual_seed(0)
    config = TransformerConfig(src_vocab_size=11, tgt_vocab_size=9, d_model=16, n_heads=2, d_ff=32,
                               n_encoder_layers=1, n_decoder_layers=1, max_len=12)  # fmt: skip
    return Seq2SeqTransformer(config).eval()


def tiny_hf_gpt2():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=40, n_embd=16, n_layer=1,
                                      n_head=2, bos_token_id=1, eos_token_id=2)).eval()  # fmt: skip


IDS = torch.tensor([[3, 4, 5, 6]])
TOKEN_CASES = [
    ("gpt-id-past-vocab", lambda: tiny_gpt()(torch.tensor([[3, 50]])),
     ValueError, r"idx holds token id 50, but the model's vocabulary has 50 tokens"),
    ("gpt-negative-id", lambda: tiny_gpt()(torch.tensor([[3, -1]])),
     ValueError, r"token id -1, but the model's vocabulary has 50 tokens"),
    ("gpt-float-ids", lambda: tiny_gpt()(IDS.float()),
     TypeError, r"idx must hold integer token ids.*idx\.long\(\)"),
    ("gpt-one-sequence-1d", lambda: tiny_gpt()(IDS[0]),
     ValueError, r"idx must have shape \[B, T\].*idx\[None\]"),
    ("llama-id-past-vocab", lambda: tiny_llama()(torch.tensor([[99]])),
     ValueError, r"token id 99, but the model's vocabulary has 50 tokens"),
    ("seq2seq-src-past-vocab", lambda: tiny_seq2seq()(torch.tensor([[3, 11]]), IDS[:, :2]),
     ValueError, r"src holds token id 11, but the model's vocabulary has 11 tokens"),
    ("seq2seq-tgt-past-vocab", lambda: tiny_seq2seq()(IDS, torch.tensor([[1, 9]])),
     ValueError, r"tgt_in holds token id 9.*9 tokens"),
    ("greedy-negative-tokens", lambda: tiny_seq2seq().greedy_decode(IDS, max_new_tokens=-1),
     ValueError, r"max_new_tokens must be an int >= 0, got -1"),
    ("generate-id-past-vocab", lambda: generate(tiny_hf_gpt2(), torch.tensor([[3, 77]]), 2),
     ValueError, r"input_ids holds token id 77.*vocabulary has 50 tokens"),
    ("generate-negative-tokens", lambda: generate(tiny_hf_gpt2(), IDS, -2),
     ValueError, r"max_new_tokens must be an int >= 0, got -2"),
]  # fmt: skip


@pytest.mark.parametrize(
    "call, error, match",
    cases(TOKEN_CASES),
)
def test_token_ids_outside_the_vocabulary_are_refused(call, error, match):
    with torch.no_grad(), pytest.raises(error, match=match):
        call()


def test_zero_new_tokens_generates_nothing():
    model = tiny_seq2seq()
    out = model.greedy_decode(IDS, max_new_tokens=0)
    assert out.tolist() == [[model.config.bos_id]]  # only the start token, nothing generated
    assert torch.equal(generate(tiny_hf_gpt2(), IDS, 0), IDS)  # the prompt, unchanged
    assert model.greedy_decode(IDS, max_new_tokens=3).shape[1] <= 4


Q = torch.randn(2, 5, 8)
ATTENTION_CASES = [
    ("batch-mismatch", lambda: scaled_dot_product_attention(Q, torch.randn(3, 5, 8),
                                                            torch.randn(3, 5, 8)),
     ValueError, r"same leading \(batch, head\) axes"),
    ("dtype-mismatch", lambda: scaled_dot_product_attention(Q, Q.double(), Q),
     TypeError, r"one dtype, got q torch\.float32, k torch\.float64.*\.to\(q\.dtype\)"),
    ("integer-inputs", lambda: scaled_dot_product_attention(Q.long(), Q.long(), Q.long()),
     TypeError, r"floating-point tensors"),
    ("mask-not-bool", lambda: scaled_dot_product_attention(Q, Q, Q, causal_mask(5).float()),
     TypeError, r"dtype torch\.bool \(True = may attend\).*mask\.bool\(\)"),
    ("pytorch-style-causal-mask", lambda: scaled_dot_product_attention(Q, Q, Q, ~causal_mask(5)),
     ValueError, r"True means 'may attend'.*pass ~mask"),
    ("pytorch-style-mask-multihead", lambda: MultiHeadAttention(8, 2)(Q, mask=~causal_mask(5)),
     ValueError, r"pass ~mask"),
    ("padding-mask-as-2d", lambda: scaled_dot_product_attention(
        Q, torch.randn(2, 7, 8), torch.randn(2, 7, 8), torch.ones(2, 7, dtype=torch.bool)),
     ValueError, r"looks like a padding mask \[B, Tk\].*key_padding_mask=mask"),
    ("key-padding-wrong-shape", lambda: scaled_dot_product_attention(
        Q, Q, Q, key_padding_mask=torch.ones(2, 4, dtype=torch.bool)),
     ValueError, r"key_padding_mask must have shape \[B, Tk\] = \[2, 5\]"),
    ("key-padding-not-bool", lambda: scaled_dot_product_attention(
        Q, Q, Q, key_padding_mask=torch.ones(2, 5)),
     TypeError, r"key_padding_mask must be a bool tensor"),
    ("mask-does-not-broadcast", lambda: scaled_dot_product_attention(
        Q, Q, Q, torch.ones(3, 4, dtype=torch.bool)),
     ValueError, r"does not broadcast.*key_padding_mask="),
    ("multihead-zero-heads", lambda: MultiHeadAttention(16, 0),
     ValueError, r"n_heads must be a positive int, got 0"),
    ("multihead-uneven-heads", lambda: MultiHeadAttention(10, 3),
     ValueError, r"d_model \(10\) must be divisible by n_heads \(3\).*Try n_heads in"),
    ("grpo-group-of-zero", lambda: grpo_advantages(torch.ones(8), 0),
     ValueError, r"group_size must be an int >= 2, got 0"),
    ("rloo-partial-group", lambda: rloo_advantages(torch.ones(7), 4),
     ValueError, r"shape \(7,\), which is not a multiple of 4"),
]  # fmt: skip


@pytest.mark.parametrize(
    "call, error, match",
    cases(ATTENTION_CASES),
)
def test_attention_inputs_are_checked(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_key_padding_mask_is_unambiguous_when_batch_equals_length():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 3, 8), torch.randn(3, 3, 8), torch.randn(3, 3, 8)
    real = torch.tensor([[True, True, True], [True, True, False], [True, False, False]])
    out, weights = scaled_dot_product_attention(q, k, v, key_padding_mask=real)
    expected, _ = scaled_dot_product_attention(q, k, v, real[:, None, :])  # [B, 1, Tk]
    assert torch.allclose(out, expected)
    assert (weights[2, :, 1:] == 0).all() and (weights[1, :, 2] == 0).all()
    tokens = torch.tensor([[5, 6, 7], [5, 6, 0], [5, 0, 0]])
    assert torch.equal(padding_mask(tokens, 0)[:, 0], real)
    mha = MultiHeadAttention(8, 2).eval()
    assert torch.allclose(mha(q, key_padding_mask=real)[0], mha(q, mask=padding_mask(tokens, 0))[0])


# ---------------------------------------------------------------------------------------------
# 6. Missing local folders fail at once; trainers go offline first
# ---------------------------------------------------------------------------------------------

FOLDER_CASES = [
    ("load-model-and-tokenizer",
     lambda path: load_model_and_tokenizer(path, GPT2LMHeadModel), r"The model folder"),
    ("reward-model-from-sft", reward_model_from_sft, r"The SFT model folder"),
]  # fmt: skip


@pytest.mark.parametrize(
    "load, match", [pytest.param(load, match, id=case) for case, load, match in FOLDER_CASES]
)
def test_missing_folder_fails_at_once_naming_the_path(tmp_path, monkeypatch, load, match):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # online, a hub id would be retried for ~20 s
    missing = tmp_path / "no_such_stage"
    started = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=rf"{match} '.*no_such_stage' does not exist"):
        load(str(missing))
    assert time.perf_counter() - started < 2.0


class _Stop(Exception):
    pass


def _record_then_stop(calls, name):
    def fake(*args, **kwargs):
        calls.append(name)
        raise _Stop

    return fake


@pytest.mark.parametrize("method", ["grpo", "dpo"])
def test_trl_trainers_of_chapter_6_go_offline_first(monkeypatch, tmp_path, method):
    calls = []
    monkeypatch.setattr(beyond_ppo, "go_offline", _record_then_stop(calls, "offline"))
    with pytest.raises(_Stop):  # before any stage is loaded or any trainer built
        beyond_ppo.TRAINERS[method](MethodRunConfig(method=method), tmp_path)
    assert calls == ["offline"]


def test_reward_trainer_turns_offline_mode_and_telemetry_off(reward_model, tmp_path, monkeypatch):
    from huggingface_hub import constants

    for key in ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", False)
    model, tokenizer = reward_model
    make_trainer(copy.deepcopy(model), tokenizer, pairs(GOOD, BAD), None,
                 RewardModelConfig(max_length=32), tmp_path)  # fmt: skip
    assert constants.HF_HUB_OFFLINE and constants.HF_HUB_DISABLE_TELEMETRY


def test_sft_trainer_goes_offline_first(small_policy, tmp_path, monkeypatch):
    import trl

    from rlhf_lib import sft

    calls = []
    monkeypatch.setattr(sft, "go_offline", lambda: calls.append("offline"))
    monkeypatch.setattr(trl, "SFTTrainer", _record_then_stop(calls, "trainer"))
    model, tokenizer = small_policy
    with pytest.raises(_Stop):  # the fake trainer stops the run before any training
        sft.train_sft(model, tokenizer, [{"prompt": "The plot", "completion": " was good."}],
                      SFTStageConfig(max_steps=1, batch_size=1), tmp_path)  # fmt: skip
    assert calls == ["offline", "trainer"]


TRAIN_CAUSAL_LM_CASES = [  # pages call train_causal_lm directly, with keyword arguments
    ("lr-nan", {"lr": NAN}, r"train_causal_lm\.lr must be a finite number > 0, got nan"),
    ("steps-0", {"max_steps": 0}, r"train_causal_lm\.max_steps must be a positive int"),
    ("betas", {"betas": (0.9, 1.0)}, r"train_causal_lm\.betas must be 2 finite numbers"),
    ("accum", {"batch_size": 6, "grad_accum_steps": 4}, r"batch_size=6 must be divisible.*use"),
]


@pytest.mark.parametrize(("overrides", "match"), [c[1:] for c in TRAIN_CAUSAL_LM_CASES],
                         ids=[c[0] for c in TRAIN_CAUSAL_LM_CASES])  # fmt: skip
def test_train_causal_lm_checks_its_arguments_before_training(overrides, match):
    from rlhf_lib.base_model import train_causal_lm

    model = GPT(GPTConfig(vocab_size=12, block_size=8, n_layer=1, n_head=1, n_embd=8))
    before = [p.detach().clone() for p in model.parameters()]
    kwargs = {"max_steps": 2, "batch_size": 2, "lr": 1e-3} | overrides
    with pytest.raises(ConfigError, match=match):
        train_causal_lm(model, torch.randint(0, 12, (4, 8)), **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_method_run_checks_its_evaluation_length_before_training(small_policy, monkeypatch):
    policy, tokenizer = small_policy
    import rlhf_lib.evaluation as evaluation

    monkeypatch.setattr(evaluation, "load_reward_model", lambda config: (None, None))
    config = MethodRunConfig(eval_max_new_tokens=100)  # the policy reads 64 positions
    with pytest.raises(ValueError, match=r"MethodRunConfig\.eval_max_new_tokens: .* of 64"):
        evaluation.Checkpoints(config, policy, tokenizer, total_steps=10, samples_per_step=1.0)


# ---------------------------------------------------------------------------------------------
# 7. The library's functions refuse what would give a silently wrong result (a second tour)
# ---------------------------------------------------------------------------------------------


def tiny_hf(model_class=GPT2LMHeadModel, **overrides):
    torch.manual_seed(0)
    if model_class is LlamaForCausalLM:
        return LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32,
                                            num_hidden_layers=1, num_attention_heads=2,
                                            num_key_value_heads=1)).eval()  # fmt: skip
    config = {"vocab_size": 50, "n_positions": 16, "n_embd": 16, "n_layer": 1, "n_head": 2}
    return GPT2LMHeadModel(GPT2Config(**(config | overrides))).eval()


def _load_without_bias():
    return MultiHeadAttention(8, 2).load_from_torch(torch.nn.MultiheadAttention(8, 2, bias=False))


RNG = np.random.default_rng(0)
B3, LOGITS = torch.ones(3, 3), torch.randn(2, 50)
FUNCTION_CASES = [  # (id, call, exception, message pattern)
    # PPO's numerical core (chapter 5)
    ("whiten-integers", lambda: whiten(torch.tensor([[1, 2, 3]])),
     TypeError, r"floating-point tensor, got torch\.int64: pass x\.float\(\)"),
    ("kl-of-lists", lambda: kl_estimate([[-1.0]], [[-2.0]]),
     TypeError, r"logprobs must be a torch\.Tensor, got list"),
    ("gae-gamma-string", lambda: compute_gae(B3, B3, "0.9", 0.9),
     ValueError, r"gamma must lie in \[0, 1\] \(a number\), got '0\.9'"),
    ("policy-loss-negative-clip", lambda: clipped_policy_loss(B3, B3, B3, B3, -0.2),
     ConfigError, r"clipped_policy_loss\.cliprange must be a finite number in \(0, 1\)"),
    ("policy-loss-flat-advantages-b-equals-t", lambda: clipped_policy_loss(
        B3, B3, torch.ones(3), B3, 0.2),
     ValueError, r"advantages must have the shape of logprobs \(3, 3\).*advantages\[:, None\]"),
    ("policy-loss-flat-advantages", lambda: clipped_policy_loss(
        torch.ones(2, 3), torch.ones(2, 3), torch.ones(2), torch.ones(2, 3), 0.2),
     ValueError, r"got \(2,\)\. For one value per sequence pass advantages\[:, None\]"),
    ("value-loss-negative-clip", lambda: clipped_value_loss(B3, B3, B3, B3, -0.2),
     ConfigError, r"clipped_value_loss\.cliprange_value must be a finite number > 0"),
    ("adaptive-kl-from-zero", lambda: AdaptiveKLController(0.0, 6.0, 10_000),
     ConfigError, r"AdaptiveKLController\.init_kl_coef must be a finite number > 0, got 0\.0"),
    ("adaptive-kl-step-past-horizon", lambda: AdaptiveKLController(0.1, 6.0, 10).update(0.0, 32),
     ValueError, r"n_samples must be an int in \[1, horizon=10\].*β negative"),
    # reward model loss (chapter 4)
    ("bt-margin-column", lambda: bradley_terry_loss(torch.ones(4), torch.zeros(4),
                                                    margin=torch.ones(4, 1)),
     ValueError, r"margin must be one number or one per pair.*\(4, 1\)\. .*margin\.view\(-1\)"),
    ("bt-margin-wrong-length", lambda: bradley_terry_loss(torch.ones(4), torch.zeros(4),
                                                          margin=torch.ones(3)),
     ValueError, r"rewards' shape \(4,\); got shape \(3,\)"),
    ("bt-margin-string", lambda: bradley_terry_loss(torch.ones(2), torch.zeros(2), margin="0.5"),
     TypeError, r"margin must be a finite number or per-pair margins, got '0\.5'"),
    ("bt-negative-centering", lambda: bradley_terry_loss(torch.ones(2), torch.zeros(2),
                                                         center_rewards_coefficient=-1.0),
     ConfigError, r"bradley_terry_loss\.center_rewards_coefficient must be .* >= 0"),
    # GRPO, RLOO and DPO (chapter 6)
    ("grpo-2d-rewards", lambda: grpo_advantages(torch.ones(2, 4), 4),
     ValueError, r"got shape \(2, 4\)\. Flatten it: rewards\.view\(-1\)"),
    ("grpo-zero-eps", lambda: grpo_advantages(torch.ones(4), 4, eps=0),
     ConfigError, r"grpo_advantages\.eps must be a finite number > 0, got 0"),
    ("grpo-negative-eps", lambda: grpo_advantages(torch.tensor([1.0, 1.0001]), 2, eps=-1e-4),
     ConfigError, r"grpo_advantages\.eps must be a finite number > 0"),
    ("dpo-column-next-to-flat", lambda: dpo_loss(torch.ones(3, 1), *[torch.ones(3)] * 3),
     ValueError, r"dpo_loss: these tensors must have the same shape.*\(3, 1\)"),
    ("dpo-lengths-differ", lambda: dpo_loss(torch.ones(3), torch.ones(2), torch.ones(3),
                                            torch.ones(3)),
     ValueError, r"'policy_rejected_logps': \(2,\)"),
    ("dpo-negative-beta", lambda: dpo_loss(*[torch.ones(3)] * 4, beta=-0.1),
     ConfigError, r"dpo_loss\.beta must be a finite number > 0, got -0\.1"),
    # GPT-2 and LLaMA (chapter 2)
    ("gpt-no-tokens", lambda: tiny_gpt()(torch.zeros(1, 0, dtype=torch.long)),
     ValueError, r"idx has no tokens \(shape \[B, 0\]\).*BOS"),
    ("llama-no-tokens", lambda: tiny_llama()(torch.zeros(1, 0, dtype=torch.long)),
     ValueError, r"idx has no tokens"),
    ("rope-odd-head-dim", lambda: rope_cos_sin(torch.arange(4), 7),
     ValueError, r"head_dim must be an even int >= 2.*got 7"),
    ("kv-cache-negative-layers", lambda: kv_cache_bytes(-2, 2, 64, 100),
     ConfigError, r"kv_cache_bytes\.n_layer must be an int >= 0, got -2"),
    ("from-hf-untied-head", lambda: GPT.from_hf(tiny_hf(tie_word_embeddings=False)),
     ValueError, r"tie_word_embeddings=False, but this GPT implements tie_word_embeddings=True"),
    ("from-hf-unscaled-attention", lambda: GPT.from_hf(tiny_hf(scale_attn_weights=False)),
     ValueError, r"scale_attn_weights=False"),
    ("from-hf-layer-scaled-attention", lambda: GPT.from_hf(
        tiny_hf(scale_attn_by_inverse_layer_idx=True)),
     ValueError, r"scale_attn_by_inverse_layer_idx=True"),
    ("from-hf-narrow-mlp", lambda: GPT.from_hf(tiny_hf(n_inner=24)),
     ValueError, r"n_inner=24, but this GPT implements n_inner=64"),
    ("gpt-from-llama", lambda: GPT.from_hf(tiny_hf(LlamaForCausalLM)),
     ValueError, r"GPT\.from_hf loads a 'gpt2' model; this one is 'llama': use LLaMA\.from_hf"),
    ("llama-from-gpt2", lambda: LLaMA.from_hf(tiny_hf()),
     ValueError, r"use GPT\.from_hf"),
    # the Transformer and attention (chapter 1)
    ("greedy-past-max-len", lambda: tiny_seq2seq().greedy_decode(IDS, max_new_tokens=100),
     ValueError, r"max_new_tokens=100 does not fit.*at most 11 tokens"),
    ("seq2seq-batch-mismatch", lambda: tiny_seq2seq()(IDS.repeat(2, 1), IDS[:, :2]),
     ValueError, r"src and tgt_in must hold the same number of sequences"),
    ("attention-maps-index", lambda: (lambda m: (m(IDS, IDS[:, :2]), m.attention_maps(5)))(
        tiny_seq2seq()),
     IndexError, r"index=5 is not an example of the last forward pass.*batch of 1"),
    ("layer-norm-width", lambda: LayerNorm(16)(torch.randn(2, 8)),
     ValueError, r"LayerNorm\(16\) normalises vectors of 16 features, got .*\(2, 8\)"),
    ("multihead-dropout-nan", lambda: MultiHeadAttention(8, 2, dropout=NAN),
     ConfigError, r"MultiHeadAttention\.dropout must be a finite number in \[0, 1\), got nan"),
    ("causal-mask-bool", lambda: causal_mask(True),
     ValueError, r"T must be a positive int .*got True"),
    ("padding-mask-lists", lambda: padding_mask([[1, 2, 0]], 0),
     TypeError, r"tokens must be a torch\.Tensor \[B, T\], got list"),
    ("padding-mask-no-pad-id", lambda: padding_mask(torch.tensor([[1, 2, 0]]), None),
     TypeError, r"pad_id must be the int id of the padding token, got None"),
    ("multihead-kv-width", lambda: MultiHeadAttention(8, 2)(Q, torch.randn(2, 5, 6)),
     ValueError, r"x_kv must have shape \[B, T, d_model=8\], got \(2, 5, 6\)"),
    ("multihead-kv-2d", lambda: MultiHeadAttention(8, 2)(Q, torch.randn(5, 8)),
     ValueError, r"x_kv must have shape \[B, T, d_model=8\], got \(5, 8\)"),
    ("multihead-double-input", lambda: MultiHeadAttention(8, 2)(Q.double()),
     TypeError, r"x_q is torch\.float64 but the module's weights are torch\.float32"),
    ("load-from-torch-without-bias", _load_without_bias,
     ValueError, r"bias=False and this one bias=True.*MultiHeadAttention\(d_model, n_heads, "),
    # decoding (chapter 2)
    ("generate-gpt-with-cache", lambda: generate(tiny_gpt(), IDS, 3),
     ValueError, r"GPT keeps no KV cache.*pass use_cache=False"),
    ("generate-empty-prompt", lambda: generate(tiny_hf_gpt2(), torch.zeros(1, 0).long(), 3),
     ValueError, r"input_ids holds no tokens.*BOS"),
    ("top-k-float", lambda: generate(tiny_hf_gpt2(), IDS, 3, top_k=2.5),
     ValueError, r"top_k must be a positive int \(or None to keep all\), got 2\.5"),
    ("top-k-nan", lambda: top_k_filter(LOGITS, NAN), ValueError, r"top_k .* got nan"),
    ("top-k-bool", lambda: top_k_filter(LOGITS, True), ValueError, r"top_k .* got True"),
    ("next-token-all-masked", lambda: next_token(torch.full((1, 5), -INF)),
     ValueError, r"every logit of a row is -inf"),
    ("next-token-nan", lambda: next_token(torch.tensor([[0.0, NAN, 1.0]])),
     ValueError, r"the logits hold NaN or \+inf"),
    ("top-p-string", lambda: top_p_filter(LOGITS, "0.9"),
     ValueError, r"top_p must be a number in \(0, 1\], got '0\.9'"),
    ("temperature-string", lambda: apply_temperature(LOGITS, "1.0"),
     ValueError, r"temperature must be a number > 0, got '1\.0'"),
    ("setting-without-name", lambda: sample_settings(None, None, "p", [{"temperature": 0.5}]),
     ValueError, r"settings\[0\] must be a dict with a 'name'"),
    ("settings-zero-samples", lambda: sample_settings(None, None, "p", n=0),
     ConfigError, r"sample_settings\.n must be a positive int, got 0"),
    ("explorer-one-string", lambda: decoding_explorer_figure("p", {"greedy": "one text"}),
     TypeError, r"takes a list of samples\['greedy'\]; wrap a single one as \[text\]"),
    # reward-model evaluation and figures (chapter 4)
    ("metrics-lengths-differ", lambda: pairwise_metrics([1, 2, 3], [0, 1]),
     ValueError, r"one reward per pair each, got shapes \(3,\) and \(2,\)"),
    ("calibration-lengths-differ", lambda: calibration_table([1, 2, 3], [0, 0]),
     ValueError, r"r_chosen, r_rejected must have the same length"),
    ("calibration-no-bins", lambda: calibration_table([1.0, 2.0], [0.0, 0.0], n_bins=0),
     ConfigError, r"calibration_table\.n_bins must be a positive int, got 0"),
    ("calibration-nan-reward", lambda: calibration_table([1.0, NAN], [0.0, 0.0]),
     ValueError, r"r_chosen holds nan at index 1"),
    ("figure-scores-short", lambda: reward_vs_gold_figure(["a", "b", "c"], [0.1, 0.2], [0] * 3),
     ValueError, r"'rm_scores': 2"),
    ("figure-groups-short", lambda: reward_vs_gold_figure(["a", "b", "c"], [0] * 3, [0] * 3,
                                                         groups=["g1"]),
     ValueError, r"'groups': 1"),
    ("figure-texts-one-string", lambda: reward_vs_gold_figure("abc", [0] * 3, [0] * 3),
     TypeError, r"reward_vs_gold_figure takes a list of texts"),
    # annotators, reviews and preference pairs (chapters 2-4)
    ("gold-score-none", lambda: gold_score([None]), TypeError, r"texts\[0\] is NoneType"),
    ("annotate-no-annotators", lambda: annotate([0.1], [0.2], [], RNG),
     ValueError, r"annotate needs at least one annotator: pass make_annotators\(\)"),
    ("annotate-nan-gold", lambda: annotate([NAN] * 5, [0.0] * 5, make_annotators(), RNG),
     ValueError, r"annotate: gold_a holds nan at index 0 \(5 non-finite values\)"),
    ("annotate-no-rng", lambda: annotate([0.1], [0.2], make_annotators(), None),
     TypeError, r"rng must be a numpy\.random\.Generator or an int seed.*default_rng\(seed\)"),
    ("agreement-no-pairs", lambda: measured_agreement([], [], *make_annotators()[:2]),
     ValueError, r"measured_agreement needs at least one pair"),
    ("ceiling-no-annotators", lambda: noise_ceiling([0.1], [0.2], []),
     ValueError, r"noise_ceiling needs at least one annotator"),
    ("expected-agreement-no-pairs", lambda: expected_agreement([], [], *make_annotators()[:2]),
     ValueError, r"expected_agreement needs at least one pair"),
    ("degeneracy-of-none", lambda: degeneracy_reasons(None),
     TypeError, r"degeneracy_reasons takes one text \(a string\), got NoneType"),
    ("annotators-from-dict", lambda: make_annotators({"temperatures": [0.1]}),
     TypeError, r"make_annotators\.config must be a AnnotatorPoolConfig, got dict.*\*\*your_dict"),
    ("reviews-bool-count", lambda: generate_reviews(True),
     ValueError, r"n must be a non-negative int, got True"),
    ("tokenizer-no-texts", lambda: train_tokenizer([], 512),
     ValueError, r"train_tokenizer got an empty list of texts"),
    ("tokenizer-one-string", lambda: train_tokenizer("one long review. " * 20, 300),
     TypeError, r"train_tokenizer takes a list of texts; wrap a single one as \[text\]"),
    ("tokenizer-none-text", lambda: train_tokenizer([None, "a"], 300),
     TypeError, r"texts\[0\] is NoneType"),
    ("tokenizer-vocab-string", lambda: train_tokenizer(["a b"], "512"),
     TypeError, r"vocab_size must be an int, got '512'"),
    ("tokenizer-vocab-float", lambda: train_tokenizer(["a b"], 300.5),
     TypeError, r"vocab_size must be an int, got 300\.5"),
    ("vader-one-string", lambda: vader_compound("good"),
     TypeError, r"vader_compound takes a list of texts"),
    ("label-pairs-no-annotators", lambda: label_pairs(["a"], ["x"], ["y"], [], RNG),
     ValueError, r"needs at least one annotator"),
    ("label-pairs-none-completion", lambda: label_pairs(["a"], [None], ["y"], make_annotators(),
                                                        RNG),
     TypeError, r"label_pairs: completions_a\[0\] is NoneType"),
    ("label-pairs-strings", lambda: label_pairs("ab", "xy", "zw", make_annotators(), RNG),
     TypeError, r"label_pairs takes a list of prompts"),
    # seeds and folders
    ("seed-past-numpy-range", lambda: seed_everything(2**32),
     ValueError, r"seed must be an int in \[0, 2\*\*32\)"),
    ("folder-empty-string", lambda: local_folder(""),
     ValueError, r"The model folder must be a path, got ''.*sft_model_path\(\)"),
    ("folder-none", lambda: local_folder(None), ValueError, r"must be a path, got None"),
]  # fmt: skip


@pytest.mark.parametrize(
    "call, error, match",
    cases(FUNCTION_CASES),
)
def test_functions_refuse_what_would_be_silently_wrong(call, error, match):
    with pytest.raises(error, match=match):
        call()


def _build_writing(*names, link=None, manifest=False):
    def build(folder):
        for name in names:
            (folder / name).write_text("x")
        if link:  # (link name, target): an absolute link into the folder or outside it
            os.symlink(link[1] if os.path.isabs(link[1]) else folder / link[1], folder / link[0])
        if manifest:
            (folder / cache.MANIFEST).write_text(json.dumps({"my": "metadata"}))

    return build


def _recursive(folder):
    cache.cached_stage("rec", {}, _recursive, verbose=False)


def _read_a_file_the_stage_never_had(tmp_path):
    path = cache.cached_stage("typo", {}, _build_writing("a.txt"), verbose=False)
    with cache.loading_stage(path):
        (path / "no_such_file.json").read_text()


def _load_broken_json_of_my_own(tmp_path):
    mine = tmp_path / "my_own_data"
    mine.mkdir()
    (mine / "d.json").write_text("{bad")
    with cache.loading_stage(mine):  # not a stage: the error is the reader's, unchanged
        json.loads((mine / "d.json").read_text())


def _empty_model_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    return load_model_and_tokenizer(tmp_path / "empty", GPT2LMHeadModel)


def _a_file(tmp_path):
    (tmp_path / "weights.bin").write_text("x")
    return local_folder(tmp_path / "weights.bin")


CACHE_AND_FOLDER_CASES = [  # (id, call(tmp_path), exception, message pattern)
    ("stage-name-int", lambda tmp: cache.cached_stage(5, {}, _build_writing("a")),
     TypeError, r"A stage name must be a string, got int 5"),
    ("config-int-key", lambda tmp: cache.stage_path("t", {1: "a"}),
     TypeError, r"dict keys must be strings, got 1 in config: .*share a stage"),
    ("config-nested-int-key", lambda tmp: cache.stage_path("t", {"a": {2: "x"}, "b": 1}),
     TypeError, r"got 2 in config\['a'\]"),
    ("build-asks-for-itself", lambda tmp: cache.cached_stage("rec", {}, _recursive),
     RuntimeError, r"The build of stage 'rec' asked for the same stage"),
    ("build-writes-stage-json", lambda tmp: cache.cached_stage(
        "own", {}, _build_writing("a", manifest=True)),
     ValueError, r"wrote a file named stage\.json .* reserved .* metadata\.json"),
    ("build-links-a-file", lambda tmp: cache.cached_stage(
        "link", {}, _build_writing("a", link=("b", "a"))),
     ValueError, r"made a symbolic link b: .*shutil\.copy"),
    ("build-links-a-folder", lambda tmp: cache.cached_stage(
        "linkdir", {}, _build_writing("a", link=("data", str(tmp)))),
     ValueError, r"made a symbolic link data"),
    ("build-none", lambda tmp: cache.cached_stage("nobuild", {}, None),
     TypeError, r"build must be a function build\(folder\), got NoneType"),
    ("build-deletes-its-folder", lambda tmp: cache.cached_stage("gone", {}, shutil.rmtree),
     RuntimeError, r"removed or replaced its folder .* must write its files into"),
    ("load-typo-in-intact-stage", _read_a_file_the_stage_never_had,
     FileNotFoundError, r"no_such_file\.json"),
    ("load-outside-the-cache", _load_broken_json_of_my_own,
     json.JSONDecodeError, r"Expecting property name"),
    ("model-folder-without-config", _empty_model_folder,
     FileNotFoundError, r"holds no config\.json: it is not a folder saved by save_pretrained"),
    ("model-folder-is-a-file", _a_file,
     NotADirectoryError, r"is a file, not a folder"),
]  # fmt: skip


@pytest.mark.parametrize(
    "call, error, match",
    cases(CACHE_AND_FOLDER_CASES),
)
def test_cache_and_folder_mistakes_are_named(tmp_path, monkeypatch, call, error, match):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(error, match=match):
        call(tmp_path)
    leftovers = [p.name for p in (tmp_path / "cache").glob(".*.tmp-*")]
    assert leftovers == []  # a refused build leaves no temporary folder behind


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return torch.allclose(a, b) if a.is_floating_point() else torch.equal(a, b)
    return a == b


LEGITIMATE_CASES = [  # (id, call, expected): inputs that used to be refused or mishandled
    ("causal-mask-numpy-int", lambda: causal_mask(np.int64(4)), causal_mask(4)),
    ("positions-numpy-int", lambda: sinusoidal_positional_encoding(np.int64(8), 16).shape,
     (8, 16)),
    ("multihead-4d-mask", lambda: MultiHeadAttention(8, 2).eval()(
        Q, mask=causal_mask(5)[None, None].expand(2, 1, 5, 5))[1].shape, (2, 2, 5, 5)),
    ("bt-integer-rewards", lambda: bradley_terry_loss([1, 2], [0, 1]),
     bradley_terry_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]))),
    ("bt-margin-list", lambda: bradley_terry_loss(torch.ones(2), torch.zeros(2), margin=[0.5, 1]),
     bradley_terry_loss(torch.ones(2), torch.zeros(2), margin=torch.tensor([0.5, 1.0]))),
    ("gold-score-generator", lambda: gold_score(t for t in ["The film was great.", "Dull."]),
     gold_score(["The film was great.", "Dull."])),
    ("annotate-int-seed", lambda: annotate([0.1], [0.2], make_annotators(), 7)["p_first"].tolist(),
     annotate([0.1], [0.2], make_annotators(), np.random.default_rng(7))["p_first"].tolist()),
    ("annotate-no-pairs", lambda: annotate([], [], make_annotators(), RNG)["p_first"].size, 0),
    ("annotators-numpy-temperatures", lambda: AnnotatorPoolConfig(
        temperatures=np.array([0.1, 0.2])).temperatures, [0.1, 0.2]),
    ("label-pairs-generator", lambda: label_pairs((p for p in ["a"]), ["x"], ["y"],
                                                  make_annotators(), RNG)["prompt"], ["a"]),
    ("reviews-numpy-count", lambda: len(generate_reviews(np.int64(3))), 3),
    ("settings-empty-list", lambda: sample_settings(tiny_hf_gpt2(), _ids_tokenizer(), "ab", []),
     {}),
    ("generate-gpt-without-cache", lambda: generate(tiny_gpt(), IDS, 3, use_cache=False).shape,
     (1, 7)),
    ("greedy-fills-the-context", lambda: tiny_seq2seq().greedy_decode(IDS).shape[1] <= 12, True),
]  # fmt: skip


class _IdsTokenizer:
    """Enough of a tokenizer for sample_settings: ids, an EOS id and decode."""

    eos_token_id = 2

    def __call__(self, text, return_tensors=None):
        return type("Encoding", (), {"input_ids": torch.tensor([[1] + [3] * len(text)])})()

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(map(str, ids.tolist()))


def _ids_tokenizer():
    return _IdsTokenizer()


@pytest.mark.parametrize("call, expected", cases(LEGITIMATE_CASES))
def test_legitimate_inputs_are_accepted(call, expected):
    assert _same(call(), expected)


# ---------------------------------------------------------------------------------------------
# 8. The figures and the benchmark pages (chapters 1, 5, 6 and the back matter)
# ---------------------------------------------------------------------------------------------

HISTORY = [{"step": s, "objective/scores": 0.1 * s, "objective/kl": 0.5 * s, "gold/score": 0.05 * s}
           for s in range(1, 7)]  # fmt: skip
TOKS, W = ["a", "b", "c"], np.full((3, 3), 1 / 3)


def _record(name, kl=1.0):
    return {"method": name, "checkpoints": [{"kl": 0.0, "gold": 0.5, "samples": 0},
                                            {"kl": kl, "gold": 0.6, "samples": 10}]}  # fmt: skip


def _report(name, change):
    """A copy of the committed benchmark report ``name``, changed by ``change(report)``."""
    report = copy.deepcopy(performance.load_benchmark(name))
    change(report)
    return report


def _first_method(**fields):
    return lambda report: report["methods"][0].update(fields)


def _only_dpo(report):
    report["methods"] = [m for m in report["methods"] if m["method"] == "dpo"]


FIGURE_CASES = [  # (id, call, exception, message pattern)
    # the PPO dashboard and the over-optimisation figures (chapter 5)
    ("smooth-none", lambda: smooth([1.0, None, 3.0], 0.5),
     TypeError, r"smooth: values\[1\] is NoneType"),
    ("dashboard-of-one-history", lambda: ppo_dashboard(HISTORY),
     TypeError, r'got a list: for one run pass \{"my run": trainer\.history\}'),
    ("dashboard-metric-string", lambda: ppo_dashboard({"run": HISTORY}, metrics="objective/kl"),
     TypeError, r"ppo_dashboard takes a list of metrics; wrap a single one as \[text\]"),
    ("dashboard-no-known-metric", lambda: ppo_dashboard({"run": [{"step": 1, "foo": 2.0}]}),
     ValueError, r"logged none of the dashboard's metrics .*they logged \['foo', 'step'\]"),
    ("dashboard-no-step", lambda: ppo_dashboard({"run": [{"objective/kl": 1.0}]}),
     ValueError, r"run 'run' logged no \['step'\] at history\[0\]"),
    ("dashboard-metric-none", lambda: ppo_dashboard({"run": [{"step": 1, "objective/kl": None}]}),
     TypeError, r"run 'run' logged objective/kl=None at history\[0\]: a metric must be a number"),
    ("overoptimisation-no-kl", lambda: overoptimisation_figure(
        {"run": [{"step": 1, "objective/scores": 0.1, "gold/score": 0.2}]}),
     ValueError, r"run 'run' logged no \['objective/kl'\] at history\[0\]"),
    ("overoptimisation-gold-stops", lambda: overoptimisation_figure(
        {"run": [*HISTORY, {"step": 7, "objective/scores": 1.0, "objective/kl": 4.0}]}),
     ValueError, r"no \['gold/score'\] at history\[6\] \(pass gold_fn to PPOTrainer\)"),
    ("verdict-no-gold", lambda: overoptimisation_verdict([{"objective/scores": 0.1}] * 4),
     ValueError, r"logged no \['gold/score'\] at history\[0\] \(pass gold_fn to PPOTrainer\)"),
    ("verdict-of-all-runs", lambda: overoptimisation_verdict({"run": HISTORY}),
     TypeError, r"one run's history .*got a dict: pass runs\[name\]"),
    ("gold-vs-kl-dict", lambda: gold_vs_kl_figure({"ppo": _record("ppo")}),
     TypeError, r"takes a list of run records, got a dict: pass list\(runs\.values\(\)\)"),
    ("gold-vs-kl-no-checkpoints", lambda: gold_vs_kl_figure([{"method": "ppo"}]),
     ValueError, r"runs\[0\] lacks \['checkpoints'\]"),
    ("gold-vs-kl-point-without-gold", lambda: gold_vs_kl_figure(
        [{"method": "ppo", "checkpoints": [{"kl": 0.0, "samples": 0}]}]),
     ValueError, r"runs\[0\] \('ppo'\): checkpoints\[0\] lacks \['gold'\]"),
    # the attention explorer and the positional encoding (chapter 1)
    ("attention-no-layers", lambda: attention_figure({"self": []}, (TOKS, TOKS)),
     ValueError, r"'self' has no layers"),
    ("attention-layer-without-heads", lambda: attention_figure({"self": [[]]}, (TOKS, TOKS)),
     ValueError, r"'self' layer 0 has no heads"),
    ("attention-no-columns", lambda: attention_figure({"self": [[W]]}, (TOKS, TOKS), max_cols=0),
     ConfigError, r"attention_figure\.max_cols must be a positive int, got 0"),
    ("attention-negative-columns", lambda: attention_figure({"self": [[W]] * 2}, (TOKS, TOKS),
                                                           max_cols=-1),
     ConfigError, r"attention_figure\.max_cols must be a positive int, got -1"),
    ("positional-one-width", lambda: positional_encoding_figure(d_models=64),
     TypeError, r"d_models must be a list of widths .*for one width pass \(64,\)"),
    # the performance page (back matter) and chapter 6's verdicts, from the committed reports
    ("machine-date-not-iso", lambda: performance.machine_line(
        _report("book_execution", lambda r: r.update(date="yesterday"))),
     ValueError, r"'date' must be an ISO 8601 date .*got 'yesterday'"),
    ("machine-record-empty", lambda: performance.machine_line(
        _report("book_execution", lambda r: r.update(machine={}))),
     ValueError, r"'machine' record lacks \['cores', 'memory_gb', 'python', 'torch', 'cuda'\]"),
    ("execution-seconds-text", lambda: performance.execution_table(
        _report("book_execution", lambda r: r["pages"][0].update(wall_seconds="n/a")), {}),
     ValueError, r"pages\[0\] \('book/[\w/]+\.md'\): wall_seconds must be a finite number, "
                 r"got 'n/a'"),
    ("methods-seeds-count", lambda: performance.methods_table(
        _report("rl_vs_trl", _first_method(seeds=3))),
     ValueError, r"methods\[0\] \('ppo'\): seeds must be the non-empty list .*got 3"),
    ("verdicts-no-seeds", lambda: performance.method_verdicts(
        _report("rl_vs_trl", _first_method(seeds=[]))),
     ValueError, r"methods\[0\] \('ppo'\): seeds must be the non-empty list .*got \[\]"),
    ("verdicts-nan-gain", lambda: performance.method_verdicts(
        _report("rl_vs_trl", _first_method(gold_gain=NAN))),
     ValueError, r"methods\[0\] \('ppo'\): gold_gain must be a finite number, got nan"),
    ("verdicts-only-dpo", lambda: performance.method_verdicts(_report("rl_vs_trl", _only_dpo)),
     ValueError, r"compares the online methods .*this report has only \['dpo'\]"),
    ("verdicts-no-cpu-time", lambda: performance.method_verdicts(
        _report("rl_vs_trl", _first_method(train_cpu_seconds=0.0))),
     ValueError, r"'ppo' has train_cpu_seconds=0\.0, but a training run takes some CPU time"),
    ("binder-range-of-three", lambda: performance.binder_memory_sentence(_report(
        "binder_memory", lambda r: r["pages"][0].update(peak_server_and_kernel_mb_range=[1, 2, 3])
    )),
     ValueError, r"peak_server_and_kernel_mb_range must be \[lowest, highest\] MB"),
    ("binder-range-without-repeats", lambda: performance.binder_memory_sentence(
        _report("binder_memory", lambda r: r["pages"][0].pop("repeats"))),
     ValueError, r"lacks \['repeats'\] \(how many runs its range spans\)"),
    ("targets-table-of-nothing", lambda: performance.targets_table(),
     ValueError, r"targets_table needs targets to list"),
]  # fmt: skip


@pytest.mark.parametrize(
    "call, error, match",
    cases(FIGURE_CASES),
)
def test_figures_and_pages_name_the_mistake(call, error, match):
    with pytest.raises(error, match=match):
        call()


FIGURE_LEGITIMATE_CASES = [  # (id, call, expected): inputs that used to be refused or mishandled
    ("attention-labels-tuple-pair", lambda: len(attention_figure(
        {"self": [[W]]}, (tuple(TOKS), tuple(TOKS))).data), 1),
    ("attention-labels-list-pair", lambda: len(attention_figure(
        {"self": [[W]]}, [TOKS, TOKS]).data), 1),
    ("dashboard-gold-logged-from-step-2", lambda: list(ppo_dashboard(
        {"run": [{"step": 1, "objective/kl": 0.0}, *HISTORY[1:]]}, metrics=["gold/score"]
    ).data[0].x), [2, 3, 4, 5, 6]),
    ("gold-vs-kl-more-runs-than-colours", lambda: len(gold_vs_kl_figure(
        [_record(f"m{i}", kl=1.0 + i) for i in range(9)]).data), 9),
    ("smooth-nan-is-a-gap", lambda: smooth([1.0, NAN, 3.0], 0.0)[2], 3.0),
]  # fmt: skip


@pytest.mark.parametrize("call, expected", cases(FIGURE_LEGITIMATE_CASES))
def test_figures_accept_legitimate_inputs(call, expected):
    assert _same(call(), expected)
