"""The reward model's figures and live explorer (chapter 4), the label-budget benchmark read and
drawn, and the reward model's accuracy broken down by slice of the held-out pairs.

They live apart from :mod:`rlhf_lib.reward_model` so that training never imports them: a
change to a figure keeps the cached reward model (see :mod:`rlhf_lib.cache`).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from rlhf_lib import checks
from rlhf_lib.reward_model import accuracy_history, score_texts


def calibration_figure(tables: dict[str, dict]) -> go.Figure:
    """Reliability diagram: one line per ``name -> calibration_table(...)``."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                             line={"dash": "dash", "color": "grey"}))  # fmt: skip
    for name, t in tables.items():
        fig.add_trace(go.Scatter(
            x=t["predicted"], y=t["observed"], mode="lines+markers", name=name,
            marker={"size": [6 + 14 * (c / max(t["count"])) ** 0.5 for c in t["count"]]},
            customdata=t["count"], hovertemplate="predicted %{x:.2f}<br>observed %{y:.2f}"
            "<br>%{customdata} comparisons<extra></extra>",
        ))  # fmt: skip
    fig.update_layout(title="Calibration: predicted P(chosen) vs how often it was chosen",
                      xaxis_title="predicted P(first is chosen) = σ(r₁ − r₂)",
                      yaxis_title="observed frequency", height=420, width=620)  # fmt: skip
    return fig


def accuracy_over_steps_figure(history: list[dict], ceiling: float | None = None) -> go.Figure:
    """Train vs eval accuracy during training (over-fitting shows as a growing gap)."""
    acc = accuracy_history(history)
    fig = go.Figure()
    for key, name in (("train", "train pairs"), ("eval", "held-out pairs")):
        fig.add_trace(go.Scatter(x=acc["step"], y=acc[key], name=name, mode="lines+markers"))
    if ceiling is not None:
        fig.add_hline(y=ceiling, line_dash="dot", annotation_text="noise ceiling")
    fig.update_layout(title="Reward-model accuracy during training", xaxis_title="step",
                      yaxis_title="accuracy (chosen scored higher)", height=380)  # fmt: skip
    return fig


def reward_vs_gold_figure(texts, rm_scores, gold_scores, groups=None) -> go.Figure:
    """The static reward explorer: reward-model score against hidden gold score, hover = text."""
    texts = checks.require_texts(texts, "reward_vs_gold_figure")
    groups = groups if groups is not None else ["samples"] * len(texts)
    if isinstance(groups, str):
        raise TypeError("reward_vs_gold_figure: groups takes one name per text, not a string.")
    checks.same_length("reward_vs_gold_figure", texts=texts, rm_scores=rm_scores,
                       gold_scores=gold_scores, groups=groups)  # fmt: skip
    fig = go.Figure()
    for g in dict.fromkeys(groups):
        idx = [i for i, x in enumerate(groups) if x == g]
        fig.add_trace(go.Scatter(
            x=[gold_scores[i] for i in idx], y=[rm_scores[i] for i in idx], mode="markers",
            name=str(g), text=["<br>".join(_wrap(texts[i])) for i in idx], marker={"size": 6},
            hovertemplate="gold %{x:.2f} · reward model %{y:.2f}<br>%{text}<extra></extra>",
        ))  # fmt: skip
    fig.update_layout(title="Reward explorer: the proxy (reward model) against the hidden gold",
                      xaxis_title="gold score (guarded VADER; −2 = degenerate)",
                      yaxis_title="reward-model score", height=480)  # fmt: skip
    return fig


def _wrap(text: str, width: int = 60) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if len(line) + len(word) > width:
            lines.append(line)
            line = ""
        line = f"{line} {word}".strip()
    return [*lines, line]


def reward_explorer_widget(model, tokenizer, examples: list[str] | None = None):
    """Live reward explorer (Binder/Colab): type a review, see the reward model's score next to
    the gold score and the reasons the guard refuses it, if any."""
    import ipywidgets as widgets

    from rlhf_lib.annotators import degeneracy_reasons, gold_score

    first = (examples or ["I saw this film on Sunday. The plot was great. I would recommend it."])[
        0
    ]
    box = widgets.Textarea(value=first, layout={"width": "90%"}, continuous_update=False)
    out = widgets.HTML()

    def show(_=None):
        text = box.value.strip()
        rm = float(score_texts(model, tokenizer, [text])[0]) if text else float("nan")
        gold = gold_score([text])[0] if text else float("nan")
        why = ", ".join(degeneracy_reasons(text)) or "none"
        out.value = (f"<b>reward model</b>: {rm:+.2f} &nbsp; <b>gold</b>: {gold:+.2f} "
                     f"&nbsp; <b>guard</b>: {why}")  # fmt: skip

    box.observe(show, names="value")
    show()
    return widgets.VBox([box, out])


# ---------------------------------------------------------------------------------------------
# How many labels? The label-budget benchmark (benchmarks/reward_model.py), read and drawn
# ---------------------------------------------------------------------------------------------

# Published figures the chapter sets its own beside; quoted from the papers, not measured here.
INSTRUCTGPT_RM_ACCURACY = 0.724  # InstructGPT's 6B reward model on held-out comparisons ...
INSTRUCTGPT_AGREEMENT = 0.726  # ... and two of its training labelers agreeing (Ouyang et al.)
STIENNON_POINTS_PER_DOUBLING = 1.1  # RM validation accuracy per doubling of data (Stiennon et al.)

LABEL_BUDGET = "reward_model"  # benchmarks/results/reward_model.json
LABEL_BUDGET_COMMAND = "python benchmarks/reward_model.py"
CURVE_FIELDS = ("method", "comparisons", "steps", "texts_forwarded", "accuracy", "train_seconds")
DEFAULT_FIELDS = ("comparisons", "accuracy_mean", "accuracy_std", "gap_mean")
METHODS = ("pairwise", "K-wise")


def load_label_budget(folder=None) -> dict:
    """The label-budget benchmark's report, read by :func:`rlhf_lib.performance.load_benchmark`
    (``benchmarks/results/reward_model.json`` by default) and checked."""
    from rlhf_lib.performance import load_benchmark

    try:
        results = load_benchmark(LABEL_BUDGET, folder)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"the label-budget benchmark has not been run: run `{LABEL_BUDGET_COMMAND}` from the "
            f"repository root (it trains every reward model of the curve), then commit its JSON "
            f"file. ({err})"
        ) from None
    check_label_budget(results)
    return results


def check_label_budget(results: dict) -> None:
    """Refuse, with one message naming what is missing, a report that is not the output of
    ``benchmarks/reward_model.py``: the figure and the prose read every field below."""
    where = f"expected the output of `{LABEL_BUDGET_COMMAND}`"
    if not isinstance(results, dict):
        raise TypeError(f"the label-budget results must be a dict, got {type(results).__name__}")
    missing = [k for k in ("ceiling", "curve", "default", "slope_per_doubling") if k not in results]
    if missing:
        raise ValueError(
            f"the label-budget results lack {missing} (keys: {sorted(results)}); {where}"
        )
    if not checks.is_finite_number(results["ceiling"]):
        raise ValueError(f"'ceiling' must be a finite number, got {results['ceiling']!r}; {where}")
    curve = results["curve"]
    if not isinstance(curve, list) or not curve:
        raise ValueError(f"'curve' must be a non-empty list of runs; {where}")
    for index, run in enumerate(curve):
        _require_numbers(run, CURVE_FIELDS, f"curve[{index}]", where, text_fields=("method",))
        if run["method"] not in METHODS:
            raise ValueError(f"curve[{index}]: method must be one of {METHODS}, got "
                             f"{run['method']!r}; {where}")  # fmt: skip
    _require_numbers(results["default"], DEFAULT_FIELDS, "'default'", where)
    _require_numbers(results["slope_per_doubling"], METHODS, "'slope_per_doubling'", where)


def _require_numbers(value, fields, name: str, where: str, text_fields=()) -> None:
    """``value`` must be a dict holding every field, each a finite number (but ``text_fields``)."""
    lacking = [f for f in fields if not isinstance(value, dict) or f not in value]
    if lacking:
        raise ValueError(f"{name} lacks {lacking}; {where}")
    bad = [f for f in fields if f not in text_fields and not checks.is_finite_number(value[f])]
    if bad:
        raise ValueError(f"{name}: {bad} must be finite numbers; {where}")


def label_budget_figure(results: dict) -> go.Figure:
    """Held-out accuracy against the number of labelled comparisons (log axis): one line for
    pairwise training, one for K-wise, the default's mean ± std over seeds, the noise ceiling."""
    check_label_budget(results)
    fig = go.Figure()
    for method in METHODS:
        runs = sorted((r for r in results["curve"] if r["method"] == method),
                      key=lambda r: r["comparisons"])  # fmt: skip
        if not runs:
            continue
        fig.add_trace(go.Scatter(
            x=[r["comparisons"] for r in runs], y=[100 * r["accuracy"] for r in runs],
            mode="lines+markers", name=f"{method} training",
            customdata=[[r["steps"], r["texts_forwarded"], r["train_seconds"]] for r in runs],
            hovertemplate="%{x} comparisons: %{y:.1f}%<br>%{customdata[0]} steps, "
            "%{customdata[1]:,} texts forwarded<br>trained in %{customdata[2]:.0f} s"
            f"<extra>{method}</extra>",
        ))  # fmt: skip
    default = results["default"]
    seeds = len(default.get("runs", [])) or "several"
    std = 100 * default["accuracy_std"]
    fig.add_trace(go.Scatter(
        x=[default["comparisons"]], y=[100 * default["accuracy_mean"]], mode="markers",
        name=f"the book's reward model (K = {default.get('k', 4)}): mean ± std of {seeds} seeds",
        marker={"size": 11, "symbol": "diamond"},
        error_y={"type": "data", "array": [std], "visible": True},
        hovertemplate=f"%{{x}} comparisons: %{{y:.1f}}% ± {std:.1f}<extra>default</extra>",
    ))  # fmt: skip
    fig.add_hline(y=100 * results["ceiling"], line_dash="dot", annotation_text="noise ceiling",
                  annotation_position="bottom right")  # fmt: skip
    fig.update_layout(title="Held-out accuracy against the number of labelled comparisons",
                      xaxis={"type": "log", "title": "labelled comparisons (log scale)"},
                      yaxis_title="held-out accuracy (%)", height=420,
                      legend={"orientation": "h", "y": -0.25})  # fmt: skip
    return fig


def comparisons_for_gap(results: dict, gap: float, method: str = "K-wise") -> float:
    """How many comparisons would bring the default to ``gap`` below the noise ceiling, if
    accuracy kept rising by ``slope_per_doubling[method]`` per doubling (an extrapolation):
    the default's own count if it is already that close, ``inf`` if the slope is not positive."""
    check_label_budget(results)
    default, slope = results["default"], results["slope_per_doubling"][method]
    if default["gap_mean"] <= gap:
        return float(default["comparisons"])
    if slope <= 0:
        return float("inf")
    return default["comparisons"] * 2 ** ((default["gap_mean"] - gap) / slope)


# ---------------------------------------------------------------------------------------------
# Where the reward model errs: accuracy by slice of the held-out pairs
# ---------------------------------------------------------------------------------------------

NEGATION = re.compile(r"\b(?:not|no|never)\b|n't", re.IGNORECASE)
INTENSIFIER = re.compile(r"\b(?:very|really|so|extremely|absolutely|totally)\b", re.IGNORECASE)
LENGTH_WORDS = 5  # a length difference above this many words counts as "one text is longer"
MEASURES = ("accuracy", "± s.e.", "agreement with gold", "noise ceiling", "gap to ceiling")


def error_breakdown(split, r_chosen, r_rejected, annotators=None, margin_bins: int = 4):
    """The reward model's accuracy by slice of a preference split, next to what is possible.

    ``split`` has columns ``chosen``, ``rejected``, ``gold_chosen`` and ``gold_rejected`` (a
    preference split of :mod:`rlhf_lib.preferences`, or a dict of lists); ``r_chosen`` and
    ``r_rejected`` are the reward model's scores of its pairs. The slices: every pair; the
    quantile bins of the gold margin ``|gold_chosen - gold_rejected|``; and three features that
    mark one side of a pair, the *marked* side: one text longer by more than
    :data:`LENGTH_WORDS` words (the longer one), a negation on one side only, an intensifier on
    one side only. A row holds the slice's pair count, the accuracy (the reward model ranks the
    labelled winner first) with its standard error, the agreement with gold, the expected noise
    ceiling (:func:`rlhf_lib.annotators.noise_ceiling` over the slice) and the gap to it; feature
    rows add how often the reward model, the gold preference and the labels pick the marked side.
    An empty slice is a row with count 0 and NaN elsewhere.
    """
    from rlhf_lib.annotators import make_annotators, noise_ceiling

    columns = split.column_names if hasattr(split, "column_names") else list(split)
    missing = [
        c for c in ("chosen", "rejected", "gold_chosen", "gold_rejected") if c not in columns
    ]
    if missing:
        raise ValueError(f"error_breakdown: the split lacks columns {missing} (it has {columns}); "
                         "pass a preference split with its hidden gold scores.")  # fmt: skip
    if not checks.is_int(margin_bins) or margin_bins < 1:
        raise ValueError(
            f"error_breakdown: margin_bins must be a positive int, got {margin_bins!r}"
        )
    chosen, rejected = list(split["chosen"]), list(split["rejected"])
    r_c = checks.finite_numbers(r_chosen, "error_breakdown: r_chosen")
    r_r = checks.finite_numbers(r_rejected, "error_breakdown: r_rejected")
    g_c = checks.finite_numbers(split["gold_chosen"], "error_breakdown: gold_chosen")
    g_r = checks.finite_numbers(split["gold_rejected"], "error_breakdown: gold_rejected")
    checks.same_length("error_breakdown", pairs=chosen, r_chosen=r_c, r_rejected=r_r)
    annotators = annotators if annotators is not None else make_annotators()

    rm_right, gold_right = r_c > r_r, g_c > g_r  # ties count as the rejected side, as elsewhere

    def row(name, by, sel, marked_chosen=None):
        n = int(sel.sum())
        out = {"slice": name, "by": by, "pairs": n}
        if n == 0:
            out.update(dict.fromkeys(MEASURES, float("nan")))
        else:
            acc = float(rm_right[sel].mean())
            ceiling = noise_ceiling(g_c[sel], g_r[sel], annotators)
            out.update({"accuracy": acc, "± s.e.": (acc * (1 - acc) / n) ** 0.5,
                        "agreement with gold": float((rm_right == gold_right)[sel].mean()),
                        "noise ceiling": ceiling, "gap to ceiling": ceiling - acc})  # fmt: skip
        if marked_chosen is not None:  # which side of each selected pair has the feature
            m = marked_chosen[sel]
            picks = {"RM picks marked": rm_right[sel] == m,
                     "gold picks marked": gold_right[sel] == m,
                     "label picks marked": m}  # fmt: skip
            out.update({k: float(v.mean()) if n else float("nan") for k, v in picks.items()})
        return out

    rows = [row("all pairs", "all", np.ones(len(chosen), dtype=bool))]
    margin = np.abs(g_c - g_r)
    quantiles = np.linspace(0, 1, margin_bins + 1)
    edges = np.quantile(margin, quantiles) if margin.size else np.zeros(margin_bins + 1)
    # bin b holds edges[b] <= margin < edges[b + 1]; the last bin also holds the largest margin.
    # Tied margins can make two edges equal, and the bin between them empty.
    bins = np.clip(np.searchsorted(edges, margin, side="right") - 1, 0, margin_bins - 1)
    for b in range(margin_bins):
        close = "]" if b == margin_bins - 1 else ")"
        name = f"|Δgold| in [{edges[b]:.2f}, {edges[b + 1]:.2f}{close}"
        rows.append(row(name, "gold margin", bins == b))
    words_c = np.array([len(t.split()) for t in chosen])
    words_r = np.array([len(t.split()) for t in rejected])
    for name, c_has, r_has, by in (
        (f"one text longer by > {LENGTH_WORDS} words", words_c - words_r > LENGTH_WORDS,
         words_r - words_c > LENGTH_WORDS, "length"),
        ("a negation on one side only", *_marks(NEGATION, chosen, rejected), "negation"),
        ("an intensifier on one side only", *_marks(INTENSIFIER, chosen, rejected), "intensifier"),
    ):  # fmt: skip
        rows.append(row(name, by, c_has ^ r_has, marked_chosen=c_has))
    return pd.DataFrame(rows).set_index("slice")


def _marks(pattern, chosen, rejected):
    """Whether each chosen and each rejected text matches ``pattern``, as two bool arrays."""
    return tuple(np.array([bool(pattern.search(t)) for t in texts], dtype=bool)
                 for texts in (chosen, rejected))  # fmt: skip
