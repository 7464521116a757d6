"""The frontier of chapter 6: Gao et al.'s fits recover known curves, the verdicts follow the data
(one curve vs a moved frontier, dominance), DPO's gold labels, and the committed sweep's shape."""

import math

import numpy as np
import pytest
from datasets import Dataset

from rlhf_lib import checks
from rlhf_lib.beyond_ppo import MethodRunConfig, gold_labelled
from rlhf_lib.frontier import (
    FAMILIES,
    SWEEP,
    against_ppo,
    collapsed,
    collapsed_checkpoints,
    early_stopping,
    efficiency,
    fit,
    fits,
    fits_figure,
    frontier_figure,
    kl_to_reach,
    label_effect,
    method_config,
    of,
    predict,
    verdicts,
)

D = np.linspace(0, 2.5, 11)


@pytest.mark.parametrize("form", ["best_of_n", "rl"])
def test_fit_recovers_the_coefficients_of_an_exact_curve(form):
    truth = {"form": form, "alpha": 0.4, "beta": 0.07}
    gain = predict(truth, D)
    fitted = fit(form, D, gain)
    assert fitted["alpha"] == pytest.approx(0.4, abs=1e-9)
    assert fitted["beta"] == pytest.approx(0.07, abs=1e-9)
    assert fitted["rmse"] < 1e-12


def test_the_rl_form_is_zero_at_zero_and_its_log_term_matches_the_formula():
    fitted = {"form": "rl", "alpha": 0.3, "beta": 0.2, "d_max": 3.0}
    assert predict(fitted, 0.0) == 0.0
    d = 1.7
    assert predict(fitted, d) == pytest.approx(d * (0.3 - 0.2 * math.log(d)))


def test_fit_refuses_what_cannot_fix_two_coefficients():
    with pytest.raises(ValueError, match="two points"):
        fit("rl", [0.0, 1.0], [0.0, 0.1])
    with pytest.raises(ValueError, match="form"):
        fit("linear", D, D)


def test_kl_to_reach_searches_only_the_fitted_range():
    fitted = {"form": "best_of_n", "alpha": 0.5, "beta": 0.1, "d_max": 2.0}
    kl = kl_to_reach(fitted, 0.4)  # 0.5 d - 0.1 d^2 = 0.4 at d = 1 (the smaller root)
    assert kl == pytest.approx(1.0, abs=0.01)
    assert kl_to_reach(fitted, 0.9) is None  # the curve peaks at 0.625


def _run(setting, d, gain, se=0.01, gold0=0.5):
    return {"setting": setting, "checkpoints": [
        {"kl": float(x**2), "gold": gold0 + float(g), "gold_se": se, "samples": 32 * i}
        for i, (x, g) in enumerate(zip(d, gain, strict=True))]}  # fmt: skip


def _report(ppo_shift=0.0, dpo_gain=0.0, d_ends=(3.0, 2.2, 1.4)):
    """PPO at three β on one RL curve (the largest β stops earliest), optionally one β moved;
    best-of-n on a steeper curve; DPO points at a fixed offset from PPO's curve."""
    rl = {"form": "rl", "alpha": 0.25, "beta": 0.08}
    runs = []
    for beta, d_end in zip((0.01, 0.05, 0.2), d_ends, strict=True):
        d = np.linspace(0, d_end, 6)
        gain = predict(rl, d) + (ppo_shift if beta == 0.2 else 0.0) * (d > 0)
        runs.append(_run({"method": "ppo", "beta": beta}, d, gain))
    d = np.linspace(0, 1.5, 6)
    runs.append(_run({"method": "dpo", "dpo_labels": "gold", "dpo_beta": 0.1}, d,
                     predict(rl, d) + dpo_gain * (d > 0)))  # fmt: skip
    bon_d = np.sqrt([0, 0.19, 0.68, 1.33, 2.1, 2.9])
    bon = _run(
        {"method": "best_of_n"},
        bon_d,
        predict({"form": "best_of_n", "alpha": 0.5, "beta": 0.1}, bon_d),
    )
    bon["checkpoints"] = [{**p, "n": 2**i} for i, p in enumerate(bon["checkpoints"])]
    return {"runs": runs, "best_of_n": bon}


def test_one_curve_for_every_beta_reads_as_early_stopping():
    row = early_stopping(_report())["ppo"]
    assert row["one_curve"] and row["kl_falls_with_beta"]
    assert verdicts(_report())["early_stopping"].startswith(
        "For the one RL method the KL coefficient acts like early stopping"
    )
    # one curve, but the largest β ran furthest: not early stopping
    report = _report(d_ends=(1.4, 2.2, 3.0))
    row = early_stopping(report)["ppo"]
    assert row["one_curve"] and not row["kl_falls_with_beta"]
    assert verdicts(report)["early_stopping"].startswith("For not the one RL method")


def test_a_beta_whose_points_sit_above_the_curve_moved_the_frontier():
    row = early_stopping(_report(ppo_shift=0.15))["ppo"]
    assert not row["one_curve"]
    sides = {s["coefficient"]: s["side"] for s in row["settings"]}
    assert sides[0.2] == "above"
    assert (
        "β_PPO = 0.2 lies above the common curve"
        in verdicts(_report(ppo_shift=0.15))["early_stopping"]
    )


@pytest.mark.parametrize(("offset", "word"), [(0.2, "dominates PPO"), (0.0, "Neither"),
                                              (-0.2, "PPO dominates DPO")])  # fmt: skip
def test_dpo_against_ppo_follows_the_points(offset, word):
    counts = against_ppo(_report(dpo_gain=offset), "dpo_gold")
    assert sum(counts.values()) == 5
    assert word in verdicts(_report(dpo_gain=offset))["dpo_gold"]


def test_best_of_n_steeper_than_rl_reads_as_gao_et_al():
    rows = efficiency(_report())
    assert rows["ppo"]["median_ratio"] > 1 and rows["ppo"]["compared"] > 0
    assert verdicts(_report())["efficiency"].startswith("As Gao et al. found")
    assert set(fits(_report())) == {"best_of_n", "ppo"}


def test_figures_draw_every_run_and_every_fit():
    report = _report()
    assert len(frontier_figure(report).data) == len(report["runs"]) + 1
    assert len(fits_figure(report).data) == 4  # points and curve for PPO and best-of-n


def test_gold_labels_follow_the_gold_score_and_keep_ties():
    split = Dataset.from_dict({
        "prompt": ["a", "b", "c"], "chosen": ["x1", "y1", "z1"], "rejected": ["x2", "y2", "z2"],
        "gold_chosen": [0.9, 0.2, 0.5], "gold_rejected": [0.1, 0.8, 0.5],
    })  # fmt: skip
    relabelled = gold_labelled(split)
    assert relabelled.column_names == ["prompt", "chosen", "rejected"]
    assert relabelled["chosen"] == ["x1", "y2", "z1"]
    assert relabelled["rejected"] == ["x2", "y1", "z2"]


def test_the_sweep_is_valid_configs_of_every_family():
    for setting in SWEEP:
        config = method_config(setting)
        assert config.method == setting["method"]
        # "beta" is the KL coefficient, PPOConfig's kl_coef; the rest of the budget is chapter 5's
        assert config.ppo.kl_coef == setting.get("beta", MethodRunConfig().ppo.kl_coef)
        assert config.dpo_beta == setting.get("dpo_beta", MethodRunConfig().dpo_beta)
        assert config.n_samples == MethodRunConfig().n_samples
    assert {s.get("dpo_labels", s["method"]) for s in SWEEP} >= {"ppo", "rloo", "grpo", "gold"}
    assert set(FAMILIES) == {"ppo", "rloo", "grpo", "dpo", "dpo_gold"}
    with pytest.raises(checks.ConfigError, match="dpo_labels"):
        MethodRunConfig(method="dpo", dpo_labels="oracle")


def test_a_setting_changes_its_base_and_names_only_known_fields():
    from rlhf_lib.ppo import PPOConfig

    base = MethodRunConfig(ppo=PPOConfig(total_steps=3, seed=2), n_eval_prompts=16)
    config = method_config({"method": "rloo", "beta": 0.2}, base)
    assert (config.method, config.ppo.kl_coef) == ("rloo", 0.2)
    assert (config.ppo.total_steps, config.seed, config.n_eval_prompts) == (3, 2, 16)
    assert base.ppo.kl_coef == 0.05  # the base is left as it was
    with pytest.raises(ValueError, match=r"got \['kl_coef'\]: use some of \['beta'"):
        method_config({"method": "ppo", "kl_coef": 0.1})


def test_label_effect_compares_each_beta_trained_both_ways():
    report = _report()
    d = np.linspace(0, 1.0, 6)
    report["runs"].append(
        _run(
            {"method": "dpo", "dpo_labels": "annotators", "dpo_beta": 0.1},
            d,
            predict({"form": "rl", "alpha": 0.25, "beta": 0.08}, d) - 0.2,
        )
    )
    effect = label_effect(report)
    (row,) = effect["rows"]
    assert row["dpo_beta"] == 0.1 and row["measured"] and row["difference"] > 0
    assert "the one difference exceed twice" in effect["sentence"]
    assert "(1 up, 0 down)" in effect["sentence"]


def test_a_collapsed_checkpoint_is_counted_and_left_out_of_the_fits():
    report = _report()
    clean = fits(report)["ppo"]
    report["runs"][0]["checkpoints"].append({"kl": 20.0, "gold": -0.6, "gold_se": 0.1,
                                             "samples": 999})  # fmt: skip
    assert collapsed_checkpoints(report) == [
        {"family": "ppo", "symbol": "β_PPO", "coefficient": 0.01, "kl": 20.0, "gold": -0.6}
    ]
    assert fits(report)["ppo"]["alpha"] == pytest.approx(clean["alpha"])
    assert early_stopping(report)["ppo"]["one_curve"]
    # a dip within twice its standard error is noise, not a collapse
    assert not collapsed([-0.05], [0.03])[0] and collapsed([-0.07], [0.03])[0]


def test_the_committed_sweep_covers_every_setting_and_records_its_commit():
    from rlhf_lib.performance import load_benchmark

    report = load_benchmark("frontier")
    assert [run["setting"] for run in report["runs"]] == list(SWEEP)
    assert report["git"]["commit"], "the sweep must record the commit it measured"
    for run in report["runs"]:
        points = run["checkpoints"]
        assert points[0]["kl"] == pytest.approx(0.0, abs=1e-6) and len(points) >= 3
        assert all(p["gold_se"] > 0 for p in points)
    assert {p["n"] for p in report["best_of_n"]["checkpoints"]} >= {1, 64}
    assert set(verdicts(report)) == {"efficiency", "early_stopping", "dpo", "dpo_gold"}


def test_counts_read_as_words():
    assert of(0, 3, "run") == "none of the 3 runs"
    assert of(3, 3, "run") == "all 3 runs"
    assert of(2, 3, "run") == "2 of the 3 runs"
    assert of(1, 1, "run") == "the one run" and of(0, 1) == "not the one"
