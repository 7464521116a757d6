"""The reward model's figures and live explorer (chapter 4).

They live apart from :mod:`rlhf_lib.reward_model` so that training never imports them: a
change to a figure keeps the cached reward model (see :mod:`rlhf_lib.cache`).
"""

from __future__ import annotations

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
