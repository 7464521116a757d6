"""The reward/KL dashboard of Chapter 5: PPO's metrics over steps, several runs overlaid.

:func:`ppo_dashboard` is a pure function that returns one plotly figure. Its buttons choose the
metric (they work on the static website, with no kernel); every run is one line; on the KL panel
the 0–10 nats band is shaded (TRL's rule of thumb for the KL summed over a response).
:func:`dashboard_widget` wraps the same function in ipywidgets for Binder/Colab, adding a metric
picker and smoothing.
"""

from __future__ import annotations

import plotly.graph_objects as go

# metric name -> label on the dashboard, in the order of its buttons
DASHBOARD_METRICS = {
    "objective/scores": "Mean reward-model score",
    "objective/kl": "KL to the reference (nats per response)",
    "objective/rlhf_reward": "RLHF reward (score − β·KL)",
    "gold/score": "Mean gold score (hidden preference)",
    "objective/entropy": "Entropy (nats per response)",
    "policy/clipfrac_avg": "Fraction of clipped ratios",
    "policy/approxkl_avg": "Approximate KL between updates",
    "loss/value_avg": "Value loss",
}
KL_BAND = (0.0, 10.0)  # TRL's rule of thumb for the summed per-response KL (the report's band)
RUN_COLOURS = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#9D755D")


def smooth(values: list[float], weight: float) -> list[float]:
    """Exponential moving average, as TensorBoard's smoothing slider (weight in [0, 1))."""
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing weight must lie in [0, 1), got {weight}")
    smoothed, last = [], None
    for value in values:
        last = value if last is None else weight * last + (1 - weight) * value
        smoothed.append(last)
    return smoothed


def _check_runs(runs: dict[str, list[dict]]) -> None:
    if not runs:
        raise ValueError("ppo_dashboard needs at least one run: {name: PPOTrainer.history}")
    for name, history in runs.items():
        if not history:
            raise ValueError(f"run {name!r} has an empty history: train it for at least one step")


def ppo_dashboard(
    runs: dict[str, list[dict]],
    metrics: list[str] | None = None,
    smoothing: float = 0.0,
    title: str = "PPO training",
) -> go.Figure:
    """One figure of PPO metrics over steps: ``runs`` maps a run's name to its history.

    Buttons switch between ``metrics`` (default: those of :data:`DASHBOARD_METRICS` that the runs
    logged). On the KL view the band 0–10 nats is shaded.
    """
    _check_runs(runs)
    logged = set().union(*(history[0].keys() for history in runs.values()))
    metrics = metrics or [m for m in DASHBOARD_METRICS if m in logged]
    missing = [m for m in metrics if m not in logged]
    if missing:
        raise ValueError(f"no run logged {missing}; available: {sorted(logged)}")

    fig = go.Figure()
    for m_index, metric in enumerate(metrics):
        for r_index, (name, history) in enumerate(runs.items()):
            steps = [h["step"] for h in history if metric in h]
            values = smooth([h[metric] for h in history if metric in h], smoothing)
            fig.add_trace(
                go.Scatter(
                    x=steps, y=values, mode="lines", name=name, legendgroup=name,
                    visible=m_index == 0, showlegend=True,
                    line=dict(color=RUN_COLOURS[r_index % len(RUN_COLOURS)], width=2),
                    hovertemplate=f"{name}<br>step %{{x}}<br>%{{y:.3f}}<extra></extra>",
                )
            )  # fmt: skip

    def band(metric):
        if metric != "objective/kl":
            return []
        return [dict(type="rect", xref="paper", x0=0, x1=1, yref="y", y0=KL_BAND[0],
                     y1=KL_BAND[1], fillcolor="#54A24B", opacity=0.12, line_width=0,
                     layer="below")]  # fmt: skip

    n_runs = len(runs)
    buttons = []
    for m_index, metric in enumerate(metrics):
        visible = [i // n_runs == m_index for i in range(len(metrics) * n_runs)]
        label = DASHBOARD_METRICS.get(metric, metric)
        buttons.append(
            dict(label=metric, method="update",
                 args=[{"visible": visible}, {"shapes": band(metric), "yaxis.title.text": label}])
        )  # fmt: skip
    first = metrics[0]
    fig.update_layout(
        title=title,
        shapes=band(first),
        xaxis_title="PPO step",
        yaxis_title=DASHBOARD_METRICS.get(first, first),
        # one metric needs no menu (the live widget has its own, which must not disagree)
        updatemenus=[dict(type="dropdown", buttons=buttons, x=1.0, xanchor="right", y=1.15)]
        if len(metrics) > 1
        else [],
        height=420,
        margin=dict(t=80),
        legend=dict(orientation="h", y=-0.2),
    )
    return fig


def overoptimisation_figure(runs: dict[str, list[dict]], smoothing: float = 0.7) -> go.Figure:
    """Proxy (reward-model) and gold score against √KL, one line per run (Gao et al., 2022).

    Each PPO step of each run is one faint point: its mean KL to the reference (x, as √KL, the
    scale on which Gao et al. found the gold reward to follow a simple curve) and its mean score
    over one batch. The line through them is their exponential moving average along the run
    (``smoothing``), which shows the trend through the batch-to-batch noise. A negative KL
    estimate is drawn at √0.
    """
    from plotly.subplots import make_subplots

    _check_runs(runs)
    for name, history in runs.items():
        if "gold/score" not in history[0]:
            raise ValueError(f"run {name!r} logged no gold/score: pass gold_fn to PPOTrainer")
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "proxy: reward-model score", "gold: hidden preference score"))  # fmt: skip
    for index, (name, history) in enumerate(runs.items()):
        x = [max(h["objective/kl"], 0.0) ** 0.5 for h in history]
        colour = RUN_COLOURS[index % len(RUN_COLOURS)]
        for col, key in ((1, "objective/scores"), (2, "gold/score")):
            y = [h[key] for h in history]
            fig.add_trace(
                go.Scatter(
                    x=x, y=y, mode="markers", name=name, legendgroup=name, showlegend=False,
                    marker=dict(size=5, color=colour, opacity=0.35),
                    hovertemplate=f"{name}<br>√KL %{{x:.2f}}<br>score %{{y:.3f}}<extra></extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
            fig.add_trace(
                go.Scatter(
                    x=smooth(x, smoothing), y=smooth(y, smoothing), mode="lines", name=name,
                    legendgroup=name, showlegend=col == 1, line=dict(color=colour, width=3),
                    hoverinfo="skip",
                ),
                row=1, col=col,
            )  # fmt: skip
    fig.update_xaxes(title_text="√KL to the reference (√nats)")
    fig.update_layout(
        height=420, title="Reward over-optimisation", legend=dict(orientation="h", y=-0.25)
    )
    return fig


def dashboard_widget(runs: dict[str, list[dict]]):
    """Live version (Binder/Colab): pick a metric and a smoothing weight; redraws the figure."""
    import ipywidgets as widgets

    from rlhf_lib.notebook import show_in_output

    _check_runs(runs)
    logged = set().union(*(history[0].keys() for history in runs.values()))
    options = [m for m in DASHBOARD_METRICS if m in logged]
    metric = widgets.Dropdown(options=options, description="metric")
    weight = widgets.FloatSlider(
        0.0, min=0.0, max=0.95, step=0.05, description="smoothing", continuous_update=False
    )
    output = widgets.Output()

    def redraw(_=None):
        show_in_output(output, ppo_dashboard(runs, [metric.value], smoothing=weight.value))

    metric.observe(redraw, "value")
    weight.observe(redraw, "value")
    redraw()
    return widgets.VBox([widgets.HBox([metric, weight]), output])


def gold_vs_kl_figure(runs: list[dict], y: str = "gold"):
    """Gold score (or ``y="proxy"``) against KL to the SFT policy, one curve per method.

    ``runs`` are records of :func:`load_method_run` (or the benchmark's ``methods``): each has a
    ``method`` and its ``checkpoints``. Every curve starts at the SFT policy (KL 0); hover shows
    how many samples the method had used.
    """
    from rlhf_lib.beyond_ppo import METHOD_NAMES

    if not runs:
        raise ValueError("gold_vs_kl_figure needs at least one run record")
    if y not in ("gold", "proxy"):
        raise ValueError(f"y must be 'gold' or 'proxy', got {y!r}")
    fig = go.Figure()
    for colour, run in zip(RUN_COLOURS, runs, strict=False):
        points = run["checkpoints"]
        fig.add_trace(go.Scatter(
            x=[p["kl"] for p in points], y=[p[y] for p in points], mode="lines+markers",
            name=METHOD_NAMES.get(run["method"], run["method"]), line={"color": colour},
            customdata=[p["samples"] for p in points],
            hovertemplate="KL %{x:.2f} nats<br>" + y + " %{y:.3f}<br>%{customdata} samples",
        ))  # fmt: skip
    fig.add_vrect(x0=KL_BAND[0], x1=KL_BAND[1], fillcolor="green", opacity=0.06, line_width=0)
    label = "Mean gold score (hidden preference)" if y == "gold" else "Mean reward-model score"
    fig.update_layout(
        title=f"{label.split(' (')[0]} against KL to the SFT policy, held-out prompts",
        xaxis_title="KL(π ‖ π_SFT), nats per review",
        yaxis_title=label,
        template="plotly_white",
        height=420,
        legend={"orientation": "h", "y": -0.2},
    )
    return fig
