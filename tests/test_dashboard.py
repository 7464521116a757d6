"""The reward/KL dashboard: one trace per (metric, run), buttons that switch metric, KL band."""

import pytest

from rlhf_lib.dashboard import (
    KL_BAND,
    RUN_COLOURS,
    dashboard_widget,
    gold_vs_kl_figure,
    overoptimisation_figure,
    ppo_dashboard,
    smooth,
)


def fake_history(n=5, scale=1.0):
    return [
        {"step": s, "objective/scores": scale * s, "objective/kl": 0.5 * s,
         "policy/clipfrac_avg": 0.1}
        for s in range(1, n + 1)
    ]  # fmt: skip


def test_dashboard_structure():
    runs = {"β=0.05": fake_history(), "β=0": fake_history(scale=2)}
    fig = ppo_dashboard(runs)
    metrics = [b.label for b in fig.layout.updatemenus[0].buttons]
    assert metrics == ["objective/scores", "objective/kl", "policy/clipfrac_avg"]
    assert len(fig.data) == len(metrics) * len(runs)
    assert [t.visible for t in fig.data[:2]] == [True, True] and not fig.data[2].visible
    kl_button = fig.layout.updatemenus[0].buttons[1]
    shapes = kl_button.args[1]["shapes"]
    assert (shapes[0]["y0"], shapes[0]["y1"]) == KL_BAND
    assert kl_button.args[0]["visible"] == [False, False, True, True, False, False]
    assert list(fig.data[1].y) == [2.0 * s for s in range(1, 6)]


def test_dashboard_bad_input():
    with pytest.raises(ValueError, match="at least one run"):
        ppo_dashboard({})
    with pytest.raises(ValueError, match="empty history"):
        ppo_dashboard({"a": []})
    with pytest.raises(ValueError, match="no run logged"):
        ppo_dashboard({"a": fake_history()}, metrics=["gold/score"])


def test_smoothing():
    assert smooth([1.0, 1.0, 1.0], 0.9) == [1.0, 1.0, 1.0]
    assert smooth([0.0, 10.0], 0.5) == [0.0, 5.0]
    assert smooth([3.0, 4.0], 0.0) == [3.0, 4.0]
    with pytest.raises(ValueError):
        smooth([1.0], 1.0)


def test_a_bad_step_leaves_a_gap_not_a_line_of_nan():
    nan = float("nan")
    smoothed = smooth([1.0, nan, 3.0, 5.0], 0.5)
    assert smoothed[0] == 1.0 and smoothed[1] != smoothed[1] and smoothed[2:] == [2.0, 3.5]
    assert smooth([1.0, float("inf"), 3.0], 0.0)[1:] == [float("inf"), 3.0]


def test_a_metric_logged_from_a_later_step_is_found():
    history = [{"step": 1, "objective/kl": 0.0}] + [
        {"step": s, "objective/kl": 0.1 * s, "gold/score": 0.2} for s in (2, 3)
    ]
    fig = ppo_dashboard({"run": history})
    assert [b.label for b in fig.layout.updatemenus[0].buttons] == ["objective/kl", "gold/score"]
    assert list(fig.data[1].x) == [2, 3]
    options = dashboard_widget({"run": history}).children[0].children[0].options
    assert list(options) == ["objective/kl", "gold/score"]


def test_more_runs_than_colours_are_all_drawn():
    records = [
        {"method": f"m{i}", "checkpoints": [{"kl": 0.0, "gold": 0.5, "samples": 0},
                                             {"kl": 1.0 + i, "gold": 0.6, "samples": 10}]}
        for i in range(len(RUN_COLOURS) + 2)
    ]  # fmt: skip
    fig = gold_vs_kl_figure(records)
    assert [t.name for t in fig.data] == [r["method"] for r in records]
    assert fig.data[len(RUN_COLOURS)].line.color == RUN_COLOURS[0]  # the colours repeat


def test_one_metric_has_no_menu_of_its_own():
    fig = ppo_dashboard({"run": fake_history()}, ["objective/kl"])
    assert not fig.layout.updatemenus
    assert fig.layout.yaxis.title.text.startswith("KL")


def test_widget_builds():
    box = dashboard_widget({"run": fake_history()})
    assert len(box.children) == 2


def test_overoptimisation_figure():
    runs = {
        "β=0": [dict(h, **{"gold/score": 0.1}) for h in fake_history()],
        "β=0.1": [dict(h, **{"gold/score": 0.2}) for h in fake_history()],
    }
    fig = overoptimisation_figure(runs)
    assert len(fig.data) == 8  # points and trend line, proxy and gold, for each run
    assert list(fig.data[0].x) == [(0.5 * s) ** 0.5 for s in range(1, 6)]  # raw points
    assert fig.data[2].xaxis == "x2" and list(fig.data[6].y) == [0.2] * 5  # β=0.1 gold points
    assert list(fig.data[1].y) == smooth(list(fig.data[0].y), 0.7)  # the trend line
    with pytest.raises(ValueError, match="gold"):
        overoptimisation_figure({"no gold": fake_history()})


def _history(gold, proxy):
    return [{"gold/score": g, "objective/scores": p} for g, p in zip(gold, proxy, strict=True)]


def test_overoptimisation_verdict_compares_the_fall_with_step_noise():
    from rlhf_lib.dashboard import overoptimisation_verdict

    rising = _history([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0, 1, 2, 3, 4, 5])
    verdict = overoptimisation_verdict(rising)
    assert verdict == "gold did not fall: it peaked at the last step (0.60)"
    collapse = _history([0.5, 0.8, 0.9, 0.7, 0.71, 0.69, 0.7, 0.2], [0, 1, 2, 3, 4, 5, 6, 7])
    assert overoptimisation_verdict(collapse).startswith(
        "gold fell 0.70 after its peak of 0.90 at step 3 of 8 while the proxy rose 5.00"
    )
    jitter = _history([0.5, 0.9, 0.88, 0.9, 0.86, 0.9, 0.86, 0.89], [0, 1, 2, 3, 4, 5, 6, 5])
    verdict = overoptimisation_verdict(jitter)
    assert verdict.startswith("gold did not fall beyond step-to-step noise")
    assert verdict.endswith("it ended 0.01 lower while the proxy rose 4.00")
    with pytest.raises(ValueError, match="at least 4 logged steps"):
        overoptimisation_verdict(rising[:3])


def test_a_gold_fall_with_a_falling_proxy_is_not_over_optimisation():
    from rlhf_lib.dashboard import overoptimisation_verdict

    both_fall = _history([0.5, 0.8, 0.9, 0.7, 0.71, 0.69, 0.7, 0.2], [0, 1, 2, 3, 4, 5, 6, 1.5])
    verdict = overoptimisation_verdict(both_fall)
    assert verdict.startswith(
        "gold fell 0.70 after its peak of 0.90 at step 3 of 8 while the proxy also fell 0.50"
    )
    assert "not over-optimisation" in verdict
    flat = _history([0.5, 0.8, 0.9, 0.7, 0.71, 0.69, 0.7, 0.2], [0, 1, 2, 2, 2, 2, 2, 2])
    assert "the proxy did not move: not over-optimisation" in overoptimisation_verdict(flat)
    rising = _history([0.5, 0.8, 0.9, 0.7, 0.71, 0.69, 0.7, 0.2], [0, 1, 2, 3, 4, 5, 6, 7])
    assert "not over-optimisation" not in overoptimisation_verdict(rising)


def test_the_gold_vs_kl_axis_names_the_reference_policy():
    records = [{"method": "m", "checkpoints": [{"kl": 0.0, "gold": 0.5, "samples": 0}]}]
    assert gold_vs_kl_figure(records).layout.xaxis.title.text.startswith("KL(π ‖ π_ref)")
