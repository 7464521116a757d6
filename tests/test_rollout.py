"""The rollout core every method samples with, PPO's step in parts, and reproducible stages.

- :func:`rlhf_lib.rollout.sample` with a seed leaves the caller's random stream as it was, so a run
  measured at checkpoints trains exactly as it would unmeasured; settings saved with a model do
  not change what is sampled;
- :func:`rlhf_lib.rollout.token_logprobs` on a left-padded batch equals the log-probabilities of
  each sequence computed alone, without padding;
- :func:`rlhf_lib.ppo.token_rewards` and :func:`rlhf_lib.ppo.explained_variance` equal their
  formulas written out;
- a stage built twice from the same config holds the same tensors.
"""

import copy

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny_models import review_tokenizer, tiny_gpt2_config
from transformers import GPT2ForSequenceClassification, GPT2LMHeadModel

from rlhf_lib.evaluation import evaluate_policy
from rlhf_lib.ppo import PPOConfig, PPOTrainer, explained_variance, token_rewards
from rlhf_lib.rollout import sample, sampling_settings, token_logprobs

PROMPTS = ["the film was", "i thought the acting was", "the plot", "what a"]


@pytest.fixture(scope="module")
def tokenizer():
    return review_tokenizer()


@pytest.fixture()
def policy(tokenizer):
    torch.manual_seed(0)
    return GPT2LMHeadModel(tiny_gpt2_config(tokenizer)).eval()


def test_a_seeded_sample_leaves_the_callers_random_stream_alone(policy, tokenizer):
    settings = sampling_settings(tokenizer, max_new_tokens=8)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = sample(policy, tokenizer, PROMPTS, settings, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert sample(policy, tokenizer, PROMPTS, settings, seed=5).completions == first.completions
    sample(policy, tokenizer, PROMPTS, settings)  # seed=None: the caller's stream moves on
    assert not torch.equal(torch.random.get_rng_state(), before)


def test_settings_saved_with_a_model_do_not_change_the_samples(policy, tokenizer):
    settings = sampling_settings(tokenizer, max_new_tokens=8)
    plain = sample(policy, tokenizer, PROMPTS * 4, settings, seed=1).completions
    policy.generation_config.repetition_penalty = 5.0
    policy.generation_config.top_k = 2
    assert sample(policy, tokenizer, PROMPTS * 4, settings, seed=1).completions == plain


def test_token_logprobs_of_a_padded_batch_equal_each_sequence_alone(policy, tokenizer):
    rollout = sample(policy, tokenizer, PROMPTS, sampling_settings(tokenizer, 8), seed=0)
    batched = token_logprobs(policy, rollout, temperature=0.7)
    assert rollout.context_length > min(len(tokenizer(p)["input_ids"]) for p in PROMPTS)
    for i in range(len(PROMPTS)):
        real = rollout.attention_mask[i].bool()
        ids = rollout.input_ids[i][real][None]  # this sequence alone, no padding at all
        n_prompt = int(rollout.attention_mask[i, : rollout.context_length].sum())
        with torch.no_grad():
            logits = policy(ids).logits[0, n_prompt - 1 : -1] / 0.7
        alone = logits.log_softmax(-1).gather(-1, ids[0, n_prompt:, None])[:, 0]
        n = int(rollout.mask[i].sum())
        torch.testing.assert_close(batched[i, :n], alone, atol=1e-5, rtol=1e-5)
    part = rollout.select(torch.tensor([2, 0]))
    assert part.completions == [rollout.completions[2], rollout.completions[0]]
    torch.testing.assert_close(token_logprobs(policy, part, 0.7), batched[[2, 0]])


def test_token_rewards_put_the_score_on_the_last_real_token():
    kl = torch.tensor([[0.5, 0.2, 9.0], [0.1, -0.3, 0.4]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    scores = torch.tensor([2.0, -1.0])
    rewards, kl_part = token_rewards(scores, kl, mask, kl_coef=0.1)
    expected = torch.zeros(2, 3)
    for b in range(2):
        for t in range(3):
            if mask[b, t]:
                expected[b, t] = -0.1 * kl[b, t]
        last = int(mask[b].sum()) - 1
        expected[b, last] += scores[b]
    torch.testing.assert_close(rewards, expected)
    torch.testing.assert_close(kl_part.sum(1), -0.1 * (kl * mask).sum(1))
    with pytest.raises(ValueError, match="one score per response"):
        token_rewards(scores[:, None], kl, mask, 0.1)


def test_explained_variance_matches_its_formula():
    gen = torch.Generator().manual_seed(0)
    returns, values = torch.randn(4, 6, generator=gen), torch.randn(4, 6, generator=gen)
    mask = (torch.rand(4, 6, generator=gen) > 0.3).float()
    real = mask.bool().numpy()
    r, v = returns.numpy()[real], values.numpy()[real]
    assert explained_variance(values, returns, mask) == pytest.approx(1 - np.var(r - v) / np.var(r),
                                                                      rel=1e-5)  # fmt: skip
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)


def _ppo(tokenizer, **overrides):
    config = PPOConfig(**({"total_steps": 3, "batch_size": 8, "mini_batch_size": 4,
                           "max_new_tokens": 8} | overrides))  # fmt: skip
    torch.manual_seed(0)
    gpt = tiny_gpt2_config(tokenizer, num_labels=1)
    policy = GPT2LMHeadModel(gpt)
    return PPOTrainer(config, policy, copy.deepcopy(policy), GPT2ForSequenceClassification(gpt),
                      tokenizer, PROMPTS, lambda texts: torch.tensor([float(len(t)) / 10
                                                                      for t in texts]))  # fmt: skip


def test_measuring_a_run_at_checkpoints_does_not_change_its_training(tokenizer, monkeypatch):
    import rlhf_lib.evaluation as evaluation

    monkeypatch.setattr(evaluation, "score_texts", lambda model, tok, texts: np.zeros(len(texts)))
    plain = _ppo(tokenizer)  # each trainer seeds the global stream: run one after the other
    plain.train(progress=False)
    measured = _ppo(tokenizer)
    for _ in range(3):
        measured.step()
        evaluate_policy(measured.policy, measured.ref_policy, tokenizer, PROMPTS, None, None,
                        max_new_tokens=8, seed=0)  # fmt: skip
    drop = ("time/step_seconds",)
    assert [{k: v for k, v in h.items() if k not in drop} for h in plain.history] == [
        {k: v for k, v in h.items() if k not in drop} for h in measured.history
    ]


def test_ppo_has_no_weight_decay_and_logs_explained_variance(tokenizer):
    trainer = _ppo(tokenizer)
    assert all(group["weight_decay"] == 0.0 for group in trainer.optimizer.param_groups)
    assert all(group["eps"] == 1e-5 for group in trainer.optimizer.param_groups)
    assert _ppo(tokenizer, adam_eps=1e-8).optimizer.param_groups[0]["eps"] == 1e-8
    metrics = trainer.step()
    assert np.isfinite(metrics["val/explained_variance"])
    assert _ppo(tokenizer, weight_decay=0.01).optimizer.param_groups[0]["weight_decay"] == 0.01


def test_a_stage_builds_reproducibly_and_restores_the_callers_settings(tmp_path, monkeypatch):
    from rlhf_lib.cache import cached_stage

    monkeypatch.setenv("RLHF_BOOK_CACHE", str(tmp_path))
    seen = []

    def build(folder):
        seen.append((torch.are_deterministic_algorithms_enabled(), torch.get_num_threads(),
                     torch.rand(1).item()))  # fmt: skip
        (folder / "x.txt").write_text("x")

    torch.manual_seed(123)
    before = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    expected_next = torch.rand(1, generator=torch.Generator().manual_seed(123)).item()
    cached_stage("reproducible_test", {"n": 1}, build)
    torch.manual_seed(0)
    assert seen == [(True, 1, torch.rand(1).item())]  # its own stream, seeded with 0
    assert (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()) == before
    torch.manual_seed(123)
    assert torch.rand(1).item() == expected_next


def test_a_reward_model_stage_is_the_same_whatever_ran_before(tmp_path, monkeypatch):
    """The reward model's new score head starts from the stage's own seed, not the caller's
    random stream, and the weights do not depend on the caller's thread count."""
    from datasets import Dataset, DatasetDict

    import rlhf_lib.reward_model as rm
    from rlhf_lib.base_model import BaseModelConfig, make_model
    from rlhf_lib.cache import cached_stage
    from rlhf_lib.reviews import generate_reviews, train_tokenizer

    tiny = BaseModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=128, vocab_size=300)
    reviews = generate_reviews(32, seed=7)
    tok = train_tokenizer([r.text for r in generate_reviews(300, seed=0)], tiny.vocab_size)
    lm = tmp_path / "lm"
    make_model(tiny, tok).save_pretrained(lm)
    tok.save_pretrained(lm)
    rows = [{"prompt": a.prompt, "chosen": a.text[len(a.prompt) :],
             "rejected": b.text[len(b.prompt) :]}
            for a, b in zip(reviews[:16], reviews[16:], strict=True)]  # fmt: skip
    pairs = DatasetDict({"train": Dataset.from_list(rows[:12]),
                         "eval": Dataset.from_list(rows[12:])})  # fmt: skip
    monkeypatch.setattr(rm, "sft_model_path", lambda config=None: lm)
    config = rm.RewardModelConfig(epochs=1, batch_size=4, max_length=128, n_train_probe=4)
    threads = torch.get_num_threads()
    tensors = []
    for build, (seed, n_threads) in {"first": (1, 1), "second": (2, 2)}.items():
        monkeypatch.setenv("RLHF_BOOK_CACHE", str(tmp_path / build))
        torch.manual_seed(seed)  # the caller's random state and threads must not matter
        torch.set_num_threads(n_threads)
        path = cached_stage("rm_twice", config, lambda folder: rm.build_reward_model(
            folder, config, pairs=pairs))  # fmt: skip
        tensors.append(load_file(path / "model.safetensors"))
    torch.set_num_threads(threads)
    assert tensors[0].keys() == tensors[1].keys()
    for name in tensors[0]:
        assert torch.equal(tensors[0][name], tensors[1][name]), name


def test_a_stage_built_twice_holds_the_same_tensors(tmp_path, monkeypatch):
    from rlhf_lib.base_model import BaseModelConfig, make_model
    from rlhf_lib.cache import cached_stage
    from rlhf_lib.reviews import generate_reviews, train_tokenizer
    from rlhf_lib.sft import SFTStageConfig, build_sft_model

    tiny = BaseModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=128, vocab_size=300)
    sft = SFTStageConfig(n_demonstrations=32, max_steps=3, batch_size=8, max_length=128)
    tensors = []
    for build in ("first", "second"):
        monkeypatch.setenv("RLHF_BOOK_CACHE", str(tmp_path / build))
        tok = train_tokenizer([r.text for r in generate_reviews(300, seed=0)], tiny.vocab_size)
        torch.manual_seed(build == "second")  # the caller's random state must not matter
        base = (make_model(tiny, tok), tok)
        path = cached_stage("sft_twice", sft,
                            lambda folder, b=base: build_sft_model(folder, sft, b))  # fmt: skip
        tensors.append(load_file(path / "model.safetensors"))
    assert tensors[0].keys() == tensors[1].keys()
    for name in tensors[0]:
        assert torch.equal(tensors[0][name], tensors[1][name]), name


def test_log_probs_kept_while_sampling_equal_a_second_forward_pass(policy, tokenizer):
    settings = sampling_settings(tokenizer, max_new_tokens=8, temperature=0.7)
    rollout = sample(policy, tokenizer, PROMPTS, settings, seed=1, keep_logprobs=True)
    assert rollout.policy_logprobs.shape[:2] == rollout.responses.shape
    mask = rollout.mask.bool()
    again = token_logprobs(policy, rollout, temperature=0.7)
    torch.testing.assert_close(rollout.logprobs[mask], again[mask], atol=1e-5, rtol=1e-5)
    part = rollout.select(torch.tensor([3, 1]))
    torch.testing.assert_close(part.logprobs, rollout.logprobs[[3, 1]])
    plain = sample(policy, tokenizer, PROMPTS, settings, seed=1)  # the same samples without
    assert plain.completions == rollout.completions and plain.policy_logprobs is None
    with pytest.raises(ValueError, match="keep_logprobs=True"):
        _ = plain.logprobs


@pytest.mark.parametrize("greedy, temperature", [(False, 1.0), (False, 0.7), (True, 1.0)])
def test_the_sampling_loop_draws_the_tokens_generate_draws(policy, tokenizer, greedy, temperature):
    # our loop against transformers' generate(): same random state, same tokens, same logits
    settings = sampling_settings(tokenizer, max_new_tokens=8, temperature=temperature,
                                 greedy=greedy)  # fmt: skip
    prompts = PROMPTS * 3
    query = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    torch.manual_seed(7)
    reference = policy.generate(**query, generation_config=settings, output_logits=True,
                                return_dict_in_generate=True)  # fmt: skip
    ours = sample(policy, tokenizer, prompts, settings, seed=7, keep_logprobs=True)
    responses = reference.sequences[:, query["input_ids"].shape[1] :]
    assert torch.equal(responses.masked_fill(ours.mask == 0, tokenizer.pad_token_id),
                       ours.responses)  # fmt: skip
    logits = torch.stack(reference.logits, 1).float()
    expected = torch.log_softmax(logits / settings.temperature, -1)
    torch.testing.assert_close(ours.policy_logprobs, expected, atol=1e-5, rtol=1e-5)


def test_sampling_refuses_settings_its_loop_would_ignore(policy, tokenizer):
    settings = sampling_settings(tokenizer, max_new_tokens=8)
    settings.top_k = 5
    with pytest.raises(ValueError, match=r"(?s)ancestral sampling.*top_k.*sampling_settings"):
        sample(policy, tokenizer, PROMPTS, settings)


def test_a_trimmed_minibatch_drops_only_padding_and_keeps_its_log_probs(policy, tokenizer):
    eos = tokenizer.eos_token_id
    rollout = sample(policy, tokenizer, PROMPTS, sampling_settings(tokenizer, 8), seed=0)
    # end two responses early, so the minibatch of those two has padding columns on the right
    ids = rollout.input_ids.clone()
    ids[[0, 2], rollout.context_length + 2] = eos
    ids[[0, 2], rollout.context_length + 3 :] = tokenizer.pad_token_id
    attention = rollout.attention_mask.clone()
    attention[[0, 2], rollout.context_length + 3 :] = 0
    rollout.input_ids, rollout.attention_mask = ids, attention
    part = rollout.select(torch.tensor([2, 0]))
    trimmed, n = part.trimmed()
    assert n == 3 and trimmed.responses.shape[1] == 3
    dropped_prompt = part.context_length - trimmed.context_length
    assert dropped_prompt > 0  # prompts 0 and 2 are both shorter than the longest, prompt 1
    assert not part.attention_mask[:, :dropped_prompt].any()
    assert not part.attention_mask[:, part.context_length + n :].any()
    torch.testing.assert_close(token_logprobs(policy, trimmed, 0.7),
                               token_logprobs(policy, part, 0.7)[:, :n],
                               atol=1e-5, rtol=1e-5)  # fmt: skip
