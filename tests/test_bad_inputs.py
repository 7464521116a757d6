"""A careless reader's tour (issue 12, parts 3-6): every mistake gets a clear error at once.

One row per mistake: the call, the exception it must raise and a pattern its message must match
(the field it names, or the fix it suggests). Configs fail when built, before any model loads;
models, trainers and data checks fail before torch, transformers or TRL see the bad input. Only
tiny models built from configs are used; no stage is built.
"""

import copy
import math
import time
import warnings

import pytest
import torch
from datasets import Dataset
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

from rlhf_lib import beyond_ppo, ppo
from rlhf_lib.annotators import Annotator, AnnotatorPoolConfig
from rlhf_lib.attention import (
    MultiHeadAttention,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
)
from rlhf_lib.base_model import BaseModelConfig, make_model
from rlhf_lib.beyond_ppo import MethodRunConfig, evaluate_policy, grpo_advantages, rloo_advantages
from rlhf_lib.checks import ConfigError
from rlhf_lib.decoding import generate
from rlhf_lib.gpt import GPT, GPTConfig, LLaMA, LLaMAConfig
from rlhf_lib.ppo import PPOConfig, PPOTrainer
from rlhf_lib.preferences import PreferenceConfig
from rlhf_lib.reviews import generate_reviews, load_model_and_tokenizer, train_tokenizer
from rlhf_lib.reward_model import (
    PreferenceDataError,
    RewardModelConfig,
    check_preference_inputs,
    make_trainer,
    reward_model_from_sft,
    score_texts,
)
from rlhf_lib.rlhf_run import RLHFRunConfig
from rlhf_lib.sft import SFTStageConfig, sample_completions
from rlhf_lib.transformer import Seq2SeqTransformer, TransformerConfig
from rlhf_lib.translation import TranslationConfig

NAN, INF = math.nan, math.inf
PROMPTS = ["the film was", "i thought the acting", "the plot", "what a"]

# ---------------------------------------------------------------------------------------------
# 3. Every config is checked when it is built
# ---------------------------------------------------------------------------------------------

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
    # GRPO / RLOO / DPO runs (chapter 6)
    ("method-negative-beta", MethodRunConfig, {"beta": -0.1},
     r"MethodRunConfig\.beta must be a finite number >= 0, got -0\.1"),
    ("method-negative-dpo-beta", MethodRunConfig, {"dpo_beta": -1.0},
     r"MethodRunConfig\.dpo_beta must be a finite number > 0"),
    ("method-zero-epochs", MethodRunConfig, {"epochs": 0},
     r"MethodRunConfig\.epochs must be a positive int, got 0"),
    ("method-lr-nan", MethodRunConfig, {"learning_rate": NAN}, r"MethodRunConfig\.learning_rate"),
    ("method-grpo-group-of-one", MethodRunConfig, {"method": "grpo", "group_size": 1},
     r"group_size=1 is too small for grpo.*group_size >= 2"),
    ("method-rloo-group-of-one", MethodRunConfig, {"method": "rloo", "group_size": 1},
     r"group_size >= 2"),
    ("method-partial-rollout", MethodRunConfig, {"n_samples": 1000},
     r"n_samples=1000 must be divisible by rollout_size=32.*use n_samples=992 or 1024"),
    ("method-uneven-minibatch", MethodRunConfig, {"mini_batch_size": 12},
     r"rollout_size=32 must be divisible by mini_batch_size=12.*use rollout_size=24 or 36"),
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
    ("gpt-zero-heads", GPTConfig, {"n_head": 0}, r"GPTConfig\.n_head must be a positive int"),
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
]  # fmt: skip


@pytest.mark.parametrize(
    "make, error, match",
    [pytest.param(make, error, match, id=case) for case, make, error, match in PPO_CASES],
)
def test_ppo_trainer_refuses_misuse(tokenizers, make, error, match):
    with pytest.raises(error, match=match):
        make(*tokenizers)


def test_ppo_pads_prompts_on_the_left_without_changing_the_tokenizer(tokenizers):
    right = copy.deepcopy(tokenizers[0])
    right.padding_side = "right"
    trainer = ppo_trainer(right)
    input_ids, attention_mask, ctx, _ = trainer.generate(PROMPTS)
    assert (attention_mask[:, ctx - 1] == 1).all()  # the token before each response is real
    assert (input_ids[:, ctx - 1] != right.pad_token_id).all()
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
]  # fmt: skip


@pytest.mark.parametrize(
    "call, error, match",
    [pytest.param(call, error, match, id=case) for case, call, error, match in DATA_CASES],
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
]  # fmt: skip


@pytest.mark.parametrize(
    "call, error, match",
    [pytest.param(call, error, match, id=case) for case, call, error, match in SAMPLING_CASES],
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
    [pytest.param(call, error, match, id=case) for case, call, error, match in TOKEN_CASES],
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
    [pytest.param(call, error, match, id=case) for case, call, error, match in ATTENTION_CASES],
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
