"""Best-of-n (chapter 6): the unbiased estimator against enumerating every n-subset, the KL formula
against its derivation and the exact KL of a discrete policy, a tiny end-to-end run and its
record in the gold-vs-KL figure, bad inputs, and that no stage depends on the module."""

import copy
import itertools
import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tiny_models import review_tokenizer, tiny_gpt2_config
from transformers import GPT2ForSequenceClassification, GPT2LMHeadModel

from rlhf_lib import cache
from rlhf_lib.best_of_n import (
    METHOD,
    NAME,
    BestOfNConfig,
    best_of_n_at_kl,
    best_of_n_curve,
    best_of_n_run,
    best_of_n_weights,
    compare_with_run,
    comparison_sentence,
    equal_kl_checkpoints,
    expected_best_of_n,
    kl_best_of_n,
    summary_sentence,
)
from rlhf_lib.beyond_ppo import METHOD_NAMES, MethodRunConfig
from rlhf_lib.dashboard import gold_vs_kl_figure
from rlhf_lib.evaluation import evaluation_prompts

PROMPTS = ["the film was", "the plot", "what a"]


def brute_force(proxy_row, gold_row, n):
    """Mean gold of the proxy's favourite over every n-subset (ties: the later sample wins)."""
    values = []
    for subset in itertools.combinations(range(len(proxy_row)), n):
        best = max(subset, key=lambda i: (proxy_row[i], i))
        values.append(gold_row[best])
    return sum(values) / len(values)


def test_weights_sum_to_one_and_pick_the_extremes():
    for n_samples in range(1, 9):
        for n in range(1, n_samples + 1):
            w = best_of_n_weights(n_samples, n)
            assert w.sum() == pytest.approx(1.0)
            assert (w >= 0).all() and np.all(np.diff(w) >= 0)  # better ranks weigh more
    assert np.allclose(best_of_n_weights(5, 1), 0.2)  # best of 1: a uniform random sample
    assert np.allclose(best_of_n_weights(5, 5), [0, 0, 0, 0, 1])  # best of all: the top one


def test_estimator_equals_enumerating_every_subset():
    rng = np.random.default_rng(0)
    proxy, gold = rng.normal(size=(4, 7)), rng.normal(size=(4, 7))
    proxy[1, 2] = proxy[1, 5]  # a tie, ranked by position as the docstring says
    for n in range(1, 8):
        expected = [brute_force(proxy[p], gold[p], n) for p in range(4)]
        assert np.allclose(expected_best_of_n(proxy, gold, n), expected)
        # the proxy's own expected maximum never falls as n grows
        if n > 1:
            assert (expected_best_of_n(proxy, proxy, n)
                    >= expected_best_of_n(proxy, proxy, n - 1) - 1e-12).all()  # fmt: skip


def test_curve_points_have_the_record_shape():
    rng = np.random.default_rng(1)
    proxy, gold = rng.normal(size=(3, 8)), rng.normal(size=(3, 8))
    points = best_of_n_curve(proxy, gold, [8, 1, 2, 2])  # sorted, duplicates dropped
    assert [p["n"] for p in points] == [1, 2, 8]
    assert [p["samples"] for p in points] == [3, 6, 24]
    assert points[0]["gold"] == pytest.approx(gold.mean())  # n = 1: the SFT policy itself
    assert points[0]["kl"] == 0.0
    top = np.take_along_axis(gold, proxy.argmax(1)[:, None], 1).mean()
    assert points[-1]["gold"] == pytest.approx(top)  # n = N: each prompt's proxy favourite
    assert points[-1]["gold_se"] > 0


def test_kl_formula_values_and_its_derivation():
    assert kl_best_of_n(1) == 0.0
    assert kl_best_of_n(2) == pytest.approx(math.log(2) - 0.5)
    assert kl_best_of_n(64) == pytest.approx(math.log(64) - 63 / 64)
    assert all(kl_best_of_n(n + 1) > kl_best_of_n(n) for n in range(1, 100))
    # the derivation: U ~ max of n uniforms, density n u^(n-1); KL = E[log(n U^(n-1))]
    u = (np.arange(200_000) + 0.5) / 200_000
    for n in (2, 5, 16):
        density = n * u ** (n - 1)
        assert np.mean(density * np.log(density)) == pytest.approx(kl_best_of_n(n), abs=1e-4)


@pytest.mark.parametrize("n", [2, 4, 16])
def test_kl_formula_bounds_the_exact_kl_of_a_discrete_policy(n):
    """Beirami et al. (2024): with K equally likely completions of distinct rewards, best-of-n
    picks the i-th worst with probability (i/K)^n - ((i-1)/K)^n; its KL is below the formula and
    approaches it as K grows (no single completion keeps any weight)."""
    exact = []
    for k in (2, 10, 10_000):
        cdf = np.arange(k + 1) / k
        p_bon = cdf[1:] ** n - cdf[:-1] ** n
        exact.append(float(np.sum(p_bon * np.log(p_bon * k))))
    assert exact[0] < exact[1] < exact[2] < kl_best_of_n(n)
    assert exact[2] == pytest.approx(kl_best_of_n(n), abs=2e-3)


def record_from(gold_by_n: dict) -> dict:
    return {"method": METHOD, "checkpoints": [
        {"n": n, "samples": 10 * n, "kl": kl_best_of_n(n), "gold": g, "proxy": g + 1,
         "gold_se": 0.01, "proxy_se": 0.01} for n, g in gold_by_n.items()]}  # fmt: skip


def test_interpolation_in_log_n_and_the_comparison_with_a_method():
    record = record_from({1: 0.5, 2: 0.6, 4: 0.7, 8: 0.8})
    assert best_of_n_at_kl(record, kl_best_of_n(4))["gold"] == pytest.approx(0.7)
    halfway = best_of_n_at_kl(record, kl_best_of_n(math.sqrt(8)))  # log n halfway from 2 to 4
    assert halfway["n"] == pytest.approx(math.sqrt(8)) and halfway["gold"] == pytest.approx(0.65)
    assert best_of_n_at_kl(record, kl_best_of_n(9)) is None  # beyond the largest n

    def run(kl, gold, samples=None):
        return {"method": "ppo", "samples": samples,
                "checkpoints": [{"samples": 0, "kl": 0.0, "gold": 0.5},
                                {"samples": None, "kl": kl, "gold": gold}]}  # fmt: skip

    path = run(kl_best_of_n(4), 0.6)
    path["checkpoints"].insert(1, {"samples": 10, "kl": 30.0, "gold": 0.1})  # out of reach
    assert equal_kl_checkpoints(record, path) == [
        {"samples": None, "kl": kl_best_of_n(4), "gold": 0.6, "gain": pytest.approx(0.1),
         "bon_n": pytest.approx(4), "bon_gold": pytest.approx(0.7),
         "bon_gain": pytest.approx(0.2)}]  # fmt: skip

    within = compare_with_run(record, run(kl_best_of_n(4), 0.6))
    assert within["equal_kl"] and within["bon_gold"] == pytest.approx(0.7)
    assert within["gain"] == pytest.approx(0.1) and within["bon_gain"] == pytest.approx(0.2)
    # judged by gains: a method measured on prompts where SFT scores 0.1 higher is not favoured
    shifted = run(kl_best_of_n(4), 0.75)
    shifted["checkpoints"][0]["gold"] = 0.6
    assert compare_with_run(record, shifted)["verdict"] == "higher"
    assert within["verdict"] == "higher" and within["noise"] is None
    sentence = comparison_sentence(within, METHOD_NAMES["ppo"])
    assert sentence.startswith("At PPO (ours)'s final KL of") and "higher than" in sentence

    beyond = compare_with_run(record, run(5.0, 0.9))
    assert not beyond["equal_kl"] and beyond["bon_n"] == 8 and beyond["verdict"] == "lower"
    assert "beyond best-of-n's reach" in comparison_sentence(beyond, "PPO")

    # with the method's final samples, a gap below twice its standard error is "about the same"
    texts = ["I liked this film. It was good.", "The plot was bad. I hated the film."] * 8
    close = compare_with_run(record, run(5.0, 0.79, samples=texts))
    assert close["noise"] > 0.01 and close["verdict"] == "about the same as"
    assert "less than twice its standard error" in comparison_sentence(close, "PPO")


def test_the_summary_separates_a_contradiction_from_an_open_question():
    def row(verdict, equal_kl):
        return {"verdict": verdict, "equal_kl": equal_kl}

    assert summary_sentence([row("higher", False), row("about the same as", True)]).startswith(
        "This is consistent with Gao et al."
    )
    assert "cannot say" in summary_sentence([row("higher", True), row("lower", False)])
    assert summary_sentence([row("lower", True), row("lower", False)]).startswith(
        "Unlike in Gao et al.'s fits, 1 of the 2 methods"
    )
    with pytest.raises(ValueError, match="at least one row"):
        summary_sentence([])


class LengthReward(torch.nn.Module):
    """A stand-in reward model with a parameter. score_texts reads .logits and .config, which
    holds what a transformers classifier's config holds: its context length and the pad id by
    which it finds the last real token of a padded batch (score_texts refuses a model without
    one, so a stand-in without it would not be scored)."""

    def __init__(self, pad_token_id: int):
        super().__init__()
        self.config = SimpleNamespace(n_positions=64, pad_token_id=pad_token_id)
        self.scale = torch.nn.Parameter(torch.tensor(0.1))

    def forward(self, input_ids, attention_mask):
        return type("Output", (), {"logits": self.scale * attention_mask.sum(1, keepdim=True)})()


@pytest.fixture(scope="module")
def tiny():
    tokenizer = review_tokenizer()
    torch.manual_seed(0)
    config = tiny_gpt2_config(tokenizer, num_labels=1)
    return GPT2LMHeadModel(config).eval(), GPT2ForSequenceClassification(config).eval(), tokenizer


def test_tiny_end_to_end_run_leaves_the_caller_untouched(tiny):
    policy, reward_model, tokenizer = tiny
    policy.train()  # the caller's mode comes back; sampling itself runs in eval mode
    tokenizer_state = copy.deepcopy(tokenizer.__dict__.get("init_kwargs"))
    padding_side = tokenizer.padding_side
    torch.manual_seed(123)
    rng_state = torch.get_rng_state()
    config = BestOfNConfig(n_samples=8, max_new_tokens=6, seed=3)
    record = best_of_n_run(policy, tokenizer, reward_model, tokenizer, config, prompts=PROMPTS)

    assert torch.equal(torch.get_rng_state(), rng_state)
    assert policy.training and not reward_model.training
    assert tokenizer.padding_side == padding_side
    assert tokenizer.__dict__.get("init_kwargs") == tokenizer_state
    assert record["method"] == METHOD
    assert [p["n"] for p in record["checkpoints"]] == [1, 2, 4, 8]
    assert [p["samples"] for p in record["checkpoints"]] == [3, 6, 12, 24]
    assert record["checkpoints"][0]["kl"] == 0.0
    proxy = np.array(record["scores"]["proxy"])
    assert proxy.shape == (3, 8)
    assert record["checkpoints"][-1]["proxy"] == pytest.approx(proxy.max(1).mean(), rel=1e-5)
    proxies = [p["proxy"] for p in record["checkpoints"]]
    assert proxies == sorted(proxies)
    assert all(s.startswith(p) for s, p in zip(record["samples"], PROMPTS, strict=True))
    assert [t[: len(p)] for t, p in zip(record["sft_samples"], PROMPTS, strict=True)] == PROMPTS
    assert 0 < record["distinct_fraction"] <= 1 and record["wall_seconds"] > 0

    policy.eval()
    again = best_of_n_run(policy, tokenizer, reward_model, tokenizer, config, prompts=PROMPTS)
    assert again["scores"] == record["scores"]  # the seed decides the samples
    other = best_of_n_run(
        policy, tokenizer, LengthReward(tokenizer.pad_token_id), tokenizer, config, prompts=PROMPTS
    )
    assert other["scores"]["gold"] == record["scores"]["gold"]  # same samples, other proxy


def test_the_figure_draws_best_of_n_beside_the_methods(tiny):
    policy, reward_model, tokenizer = tiny
    config = BestOfNConfig(n_samples=4, max_new_tokens=4)
    record = best_of_n_run(policy, tokenizer, reward_model, tokenizer, config, prompts=PROMPTS)
    ppo = {"method": "ppo", "checkpoints": [
        {"samples": 0, "kl": 0.0, "gold": 0.1, "proxy": 0.0},
        {"samples": 960, "kl": 2.0, "gold": 0.5, "proxy": 1.0}]}  # fmt: skip
    fig = gold_vs_kl_figure([ppo, record])
    assert [t.name for t in fig.data] == [METHOD_NAMES["ppo"], NAME]
    curve = fig.data[1]
    assert list(curve.x) == [kl_best_of_n(n) for n in (1, 2, 4)]
    assert [row[0] for row in curve.customdata] == [1, 2, 4]
    assert "best of %{customdata[0]}" in curve.hovertemplate and curve.line.dash == "dot"
    assert list(gold_vs_kl_figure([record], y="proxy").data[0].y) == [
        p["proxy"] for p in record["checkpoints"]]  # fmt: skip


def test_page_settings_match_the_methods_evaluation():
    base = MethodRunConfig()
    config = BestOfNConfig.matching(base)
    assert (config.max_new_tokens, config.seed) == (base.eval_max_new_tokens, base.seed)
    assert config.n_values == [1, 2, 4, 8, 16, 32, 64]
    assert config.n_prompts <= base.n_eval_prompts
    # the first n of the held-out prompts are the first n the methods are measured on
    assert evaluation_prompts(config.n_prompts) == evaluation_prompts(base.n_eval_prompts)[
        : config.n_prompts]  # fmt: skip
    assert BestOfNConfig(n_samples=6).n_values == [1, 2, 4, 6]


@pytest.mark.parametrize("ns, error", [([0], "ints in \\[1, 8\\]"), ([9], "ints in \\[1, 8\\]"),
                                       ([2.0], "ints in"), ([True], "ints in"),
                                       ([], "empty"), (4, "list of ints")])  # fmt: skip
def test_bad_n_values_say_what_to_do(ns, error):
    with pytest.raises((ValueError, TypeError), match=error):
        BestOfNConfig(n_samples=8, ns=ns)


def test_other_bad_inputs_fail_early(tiny):
    policy, reward_model, tokenizer = tiny
    with pytest.raises(ValueError, match="n_samples"):
        BestOfNConfig(n_samples=0)
    with pytest.raises(ValueError, match="n >= 1"):
        kl_best_of_n(0)
    with pytest.raises(ValueError, match="n >= 1"):
        kl_best_of_n(float("nan"))
    with pytest.raises(ValueError, match="ints in \\[1, 4\\]"):
        best_of_n_weights(4, 5)
    with pytest.raises(ValueError, match="NaN"):
        expected_best_of_n([[0.0, float("nan")]], [[0.0, 1.0]], 1)
    with pytest.raises(ValueError, match="same shape"):
        expected_best_of_n([[0.0, 1.0]], [[0.0, 1.0, 2.0]], 1)
    with pytest.raises(ValueError, match="2-D"):
        expected_best_of_n([0.0, 1.0], [0.0, 1.0], 1)
    with pytest.raises(TypeError, match="BestOfNConfig"):
        best_of_n_run(policy, tokenizer, reward_model, tokenizer, {"n_samples": 4})
    with pytest.raises(TypeError, match="list of prompts"):
        best_of_n_run(policy, tokenizer, reward_model, tokenizer, BestOfNConfig(n_samples=2),
                      prompts="the film was")  # fmt: skip
    with pytest.raises(ValueError, match="smallest n"):
        best_of_n_at_kl(record_from({2: 0.6, 4: 0.7}), 0.0)


def test_no_stage_depends_on_best_of_n():
    """Best-of-n is measured on the page; editing it must retrain nothing."""
    library = Path(cache.__file__).parent
    stages = [path.stem for path in library.glob("*.py") if path.stem != "cache"
              and re.search(r"\bcached_stage\(", path.read_text())]  # fmt: skip
    assert "beyond_ppo" in stages and "sft" in stages
    for stage in stages:
        deps = {name.split(".")[-1] for name in cache.module_dependencies(f"rlhf_lib.{stage}")}
        assert "best_of_n" not in deps, f"rlhf_lib.{stage} imports rlhf_lib.best_of_n"
