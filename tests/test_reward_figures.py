"""Chapter 4's error breakdown and label-budget figure: hand-made inputs with known answers."""

import copy
import json
import math

import numpy as np
import pytest

from rlhf_lib.annotators import Annotator, noise_ceiling
from rlhf_lib.reward_figures import (
    comparisons_for_gap,
    error_breakdown,
    label_budget_figure,
    load_label_budget,
)

POOL = [Annotator("only", 1.0)]  # one annotator: the ceiling is mean(sigmoid(|Δgold|))

# Four pairs, each built to fall in known slices:
#   0: plain, the reward model (RM) and gold both prefer the labelled winner;
#   1: "not" on the chosen side only; the label went against gold, the RM sided with gold;
#   2: the chosen text is 6 words longer than the rejected one; everyone prefers it;
#   3: "never" on the rejected side only; the label went against gold, so did the RM.
# No text holds an intensifier: that slice is empty.
SPLIT = {
    "prompt": ["p"] * 4,
    "chosen": [" good film", " not good", " a b c d e f g h", " ok"],
    "rejected": [" bad film", " fine film", " a b", " never again"],
    "gold_chosen": [1.0, -0.5, 0.2, 0.0],
    "gold_rejected": [-1.0, 0.5, 0.1, 0.3],
}
R_CHOSEN = [2.0, -1.0, 0.5, 0.4]
R_REJECTED = [0.0, 1.0, 0.0, 0.1]


def breakdown(**options):
    return error_breakdown(SPLIT, R_CHOSEN, R_REJECTED, annotators=POOL, **options)


def ceiling(rows):
    gold_a = np.array(SPLIT["gold_chosen"])[rows]
    gold_b = np.array(SPLIT["gold_rejected"])[rows]
    return noise_ceiling(gold_a, gold_b, POOL)


def test_error_breakdown_all_pairs():
    row = breakdown().loc["all pairs"]
    assert row["pairs"] == 4
    assert row["accuracy"] == pytest.approx(0.75)  # wrong only on pair 1
    assert row["agreement with gold"] == pytest.approx(0.75)  # wrong only on pair 3
    assert row["noise ceiling"] == pytest.approx(ceiling([0, 1, 2, 3]))
    assert row["gap to ceiling"] == pytest.approx(row["noise ceiling"] - 0.75)
    assert row["± s.e."] == pytest.approx(math.sqrt(0.75 * 0.25 / 4))


def test_error_breakdown_feature_slices_and_the_marked_side():
    table = breakdown()
    negation = table[table["by"] == "negation"].iloc[0]
    assert negation["pairs"] == 2  # pairs 1 and 3
    assert negation["accuracy"] == pytest.approx(0.5)
    assert negation["noise ceiling"] == pytest.approx(ceiling([1, 3]))
    # the negated side: chosen in pair 1, rejected in pair 3; the RM picked neither
    assert negation["RM picks marked"] == pytest.approx(0.0)
    assert negation["gold picks marked"] == pytest.approx(0.5)  # gold: "ok" over "never again"
    assert negation["label picks marked"] == pytest.approx(0.5)
    length = table[table["by"] == "length"].iloc[0]
    assert length["pairs"] == 1  # only pair 2 differs by more than 5 words
    assert length["RM picks marked"] == length["gold picks marked"] == 1.0


def test_error_breakdown_an_empty_slice_is_a_row_of_nans():
    intensifier = breakdown()[lambda t: t["by"] == "intensifier"].iloc[0]
    assert intensifier["pairs"] == 0
    assert math.isnan(intensifier["accuracy"]) and math.isnan(intensifier["noise ceiling"])
    assert math.isnan(intensifier["RM picks marked"])


def test_error_breakdown_margin_bins():
    margins = breakdown(margin_bins=2)[lambda t: t["by"] == "gold margin"]
    # |Δgold| = 2.0, 1.0, 0.1, 0.3: the small half is pairs 2 and 3, the large half 0 and 1
    assert margins["pairs"].tolist() == [2, 2]
    assert margins["accuracy"].tolist() == pytest.approx([1.0, 0.5])
    assert margins["noise ceiling"].tolist() == pytest.approx([ceiling([2, 3]), ceiling([0, 1])])
    assert len(breakdown()[lambda t: t["by"] == "gold margin"]) == 4  # quartiles by default


def test_error_breakdown_tied_margins_leave_empty_bins_not_errors():
    tied = {**SPLIT, "gold_chosen": [0.5] * 4, "gold_rejected": [0.0] * 4}
    margins = error_breakdown(tied, R_CHOSEN, R_REJECTED, annotators=POOL)
    margins = margins[margins["by"] == "gold margin"]
    assert margins["pairs"].sum() == 4 and (margins["pairs"] == 0).sum() == 3


def test_error_breakdown_refuses_bad_inputs_clearly():
    with pytest.raises(ValueError, match="gold_chosen"):
        error_breakdown({k: v for k, v in SPLIT.items() if k != "gold_chosen"},
                        R_CHOSEN, R_REJECTED)  # fmt: skip
    with pytest.raises(ValueError, match="same length"):
        error_breakdown(SPLIT, R_CHOSEN[:3], R_REJECTED[:3], annotators=POOL)
    with pytest.raises(ValueError, match="non-finite"):
        error_breakdown(SPLIT, [float("nan"), 0, 0, 0], R_REJECTED, annotators=POOL)


def results():
    """A report in the schema benchmarks/reward_model.py writes (made-up numbers)."""

    def run(method, comparisons, accuracy):
        return {"method": method, "comparisons": comparisons, "steps": comparisons // 16,
                "texts_forwarded": 2 * comparisons, "accuracy": accuracy,
                "gold_agreement": accuracy + 0.1, "train_seconds": comparisons / 20}  # fmt: skip

    return {
        "date": "2026-11-29T15:00:00+00:00",
        "git": {"commit": "0123456789abcdef"},
        "n_eval": 2000,
        "ceiling": 0.75,
        "annotator_agreement": 0.66,
        "curve": [
            run("pairwise", 400, 0.62),
            run("pairwise", 800, 0.64),
            run("K-wise", 1600, 0.67),
            run("K-wise", 3200, 0.69),
        ],  # fmt: skip
        "default": {
            "comparisons": 9600,
            "k": 4,
            "accuracy_mean": 0.70,
            "accuracy_std": 0.01,
            "gap_mean": 0.05,
            "runs": [{"seed": s} for s in range(3)],
        },  # fmt: skip
        "slope_per_doubling": {"pairwise": 0.02, "K-wise": 0.01},
    }


def test_label_budget_figure_has_both_lines_the_default_and_the_ceiling():
    fig = label_budget_figure(results())
    names = [trace.name for trace in fig.data]
    assert names[:2] == ["pairwise training", "K-wise training"]
    assert "3 seeds" in names[2]
    assert list(fig.data[0].x) == [400, 800] and list(fig.data[1].y) == pytest.approx([67, 69])
    assert fig.data[2].error_y.array == pytest.approx((1.0,))  # the std, in points
    assert fig.layout.xaxis.type == "log"
    (line,) = fig.layout.shapes
    assert line.y0 == line.y1 == pytest.approx(75)  # the noise ceiling, in percent
    hover = fig.data[0].hovertemplate
    assert "steps" in hover and "texts forwarded" in hover and "trained in" in hover
    assert [list(c) for c in fig.data[0].customdata][0] == [25, 800, 20.0]


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda r: r.pop("slope_per_doubling"), "slope_per_doubling"),
        (lambda r: r.pop("ceiling"), "ceiling"),
        (lambda r: r["curve"][1].pop("texts_forwarded"), "texts_forwarded"),
        (lambda r: r["default"].pop("accuracy_std"), "accuracy_std"),
        (lambda r: r["slope_per_doubling"].pop("K-wise"), "K-wise"),
        (lambda r: r["curve"][0].update(method="listwise"), "listwise"),
        (lambda r: r["curve"][0].update(accuracy=float("nan")), "accuracy"),
    ],
)
def test_a_report_with_missing_or_bad_fields_is_refused_by_name(damage, named):
    report = copy.deepcopy(results())
    damage(report)
    with pytest.raises(ValueError, match=named) as caught:
        label_budget_figure(report)
    assert "python benchmarks/reward_model.py" in str(caught.value)


def test_comparisons_for_gap_extrapolates_the_kwise_slope():
    # gap 5 points, 1 point per doubling: 3 points needs 2 doublings of 9600
    assert comparisons_for_gap(results(), 0.03) == pytest.approx(4 * 9600)
    assert comparisons_for_gap(results(), 0.03, "pairwise") == pytest.approx(2 * 9600)
    assert comparisons_for_gap(results(), 0.06) == 9600  # already closer than that
    flat = results()
    flat["slope_per_doubling"]["K-wise"] = -0.001
    assert comparisons_for_gap(flat, 0.03) == math.inf


def test_load_label_budget_says_which_command_writes_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="python benchmarks/reward_model.py"):
        load_label_budget(tmp_path)
    (tmp_path / "reward_model.json").write_text(json.dumps(results()))
    assert load_label_budget(tmp_path)["default"]["comparisons"] == 9600
