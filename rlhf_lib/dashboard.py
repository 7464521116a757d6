"""The reward/KL dashboard of Chapter 5: PPO's metrics over steps, several runs overlaid.

:func:`ppo_dashboard` is a pure function that returns one plotly figure. Its buttons choose the
metric (they work on the static website, with no kernel); every run is one line; on the KL panel
the 0–10 nats band is shaded (TRL's rule of thumb for the KL summed over a response).
:func:`dashboard_widget` wraps the same function in ipywidgets for Binder/Colab, adding a metric
picker and smoothing.
"""

from __future__ import annotations

from numbers import Real

import plotly.graph_objects as go

from rlhf_lib import checks
from rlhf_lib.notebook import OKABE_ITO, white_template

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
# Okabe–Ito, for colour-blind readers (was Tableau 10, whose 3rd and 4th runs were green and red).
RUN_COLOURS = OKABE_ITO[:7]
# The band's tint: one hue, paired with no red, under lines of any run colour.
KL_BAND_COLOUR = "#009E73"  # Okabe–Ito bluish green


def smooth(values: list[float], weight: float) -> list[float]:
    """Exponential moving average, as TensorBoard's smoothing slider (weight in [0, 1)).

    A NaN or infinite value stays where it is (a gap in the line) and, as in TensorBoard, does
    not enter the average: otherwise one bad step would turn every later point into NaN.
    """
    if not checks.is_finite_number(weight) or not 0 <= weight < 1:
        raise ValueError(f"smoothing weight must lie in [0, 1), got {weight!r}")
    smoothed, last = [], None
    for index, value in enumerate(values):
        if not isinstance(value, Real) or isinstance(value, bool):
            raise TypeError(
                f"smooth: values[{index}] is {type(value).__name__} ({value!r:.40}), not a "
                "number; a step that did not log a metric should leave it out, not store it."
            )
        if not checks.is_finite_number(value):
            smoothed.append(value)
            continue
        last = value if last is None else weight * last + (1 - weight) * value
        smoothed.append(last)
    return smoothed


def _check_runs(runs: dict[str, list[dict]], where: str, needs: tuple[str, ...] = ()) -> None:
    """``runs`` is ``{name: history}``: at least one run, each a non-empty list of dicts (one per
    PPO step, as ``PPOTrainer.history``) holding ``needs`` in every row."""
    if isinstance(runs, list | tuple):
        raise TypeError(
            f"{where} takes a dict {{name: history}} of runs, got a {type(runs).__name__}: for "
            'one run pass {"my run": trainer.history}.'
        )
    if not isinstance(runs, dict):
        raise TypeError(
            f"{where} takes a dict {{name: history}} of runs, got {type(runs).__name__}."
        )
    if not runs:
        raise ValueError(f"{where} needs at least one run: {{name: PPOTrainer.history}}")
    for name, history in runs.items():
        if not history:
            raise ValueError(f"run {name!r} has an empty history: train it for at least one step")
        if not isinstance(history, list | tuple):
            raise TypeError(
                f"{where}: run {name!r} must be a history (a list of dicts, one per step, as "
                f"PPOTrainer.history), got {type(history).__name__}."
            )
        for index, row in enumerate(history):
            if not isinstance(row, dict):
                raise TypeError(
                    f"{where}: run {name!r} has a {type(row).__name__} at history[{index}], not "
                    "a dict of metrics (one per step, as PPOTrainer.history holds)."
                )
            missing = [key for key in needs if key not in row]
            if missing:
                hint = " (pass gold_fn to PPOTrainer)" if "gold/score" in missing else ""
                raise ValueError(
                    f"{where}: run {name!r} logged no {missing} at history[{index}]{hint}; every "
                    f"step must log {list(needs)}."
                )


def _logged(runs: dict[str, list[dict]]) -> set[str]:
    """Every metric any step of any run logged (one added later, e.g. gold/score, counts)."""
    return {key for history in runs.values() for row in history for key in row}


def _default_metrics(runs: dict[str, list[dict]], where: str) -> list[str]:
    """The dashboard's metrics that the runs logged, in the order of its buttons."""
    logged = _logged(runs)
    metrics = [m for m in DASHBOARD_METRICS if m in logged]
    if not metrics:
        raise ValueError(
            f"{where}: the runs logged none of the dashboard's metrics {list(DASHBOARD_METRICS)}; "
            f"they logged {sorted(logged)}. Pass metrics=[...] to draw those."
        )
    return metrics


def _series(name: str, history: list[dict], metric: str) -> tuple[list, list]:
    """The steps and values of ``metric`` in the rows of one run that logged it (numbers only)."""
    for index, row in enumerate(history):
        value = row.get(metric, 0.0)
        if not isinstance(value, Real) or isinstance(value, bool):
            raise TypeError(
                f"run {name!r} logged {metric}={value!r:.40} at history[{index}]: a metric must "
                "be a number."
            )
    rows = [h for h in history if metric in h]
    return [h.get("step") for h in rows], [h[metric] for h in rows]


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
    _check_runs(runs, "ppo_dashboard", needs=("step",))
    if metrics is not None:
        metrics = checks.require_texts(metrics, "ppo_dashboard", "metrics")
    logged = _logged(runs)
    metrics = metrics or _default_metrics(runs, "ppo_dashboard")
    missing = [m for m in metrics if m not in logged]
    if missing:
        raise ValueError(f"no run logged {missing}; available: {sorted(logged)}")

    fig = go.Figure()
    for m_index, metric in enumerate(metrics):
        for r_index, (name, history) in enumerate(runs.items()):
            steps, values = _series(name, history, metric)
            values = smooth(values, smoothing)
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
                     y1=KL_BAND[1], fillcolor=KL_BAND_COLOUR, opacity=0.12, line_width=0,
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

    _check_runs(runs, "overoptimisation_figure",
                needs=("objective/kl", "objective/scores", "gold/score"))  # fmt: skip
    for name, history in runs.items():
        for key in ("objective/kl", "objective/scores", "gold/score"):
            _series(name, history, key)  # numbers only
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


def overoptimisation_verdict(history: list[dict]) -> str:
    """What one PPO run's gold score did after its peak, measured against step-to-step noise.

    The gold score of a step is a mean over that rollout's samples, so it jitters. The noise is
    estimated as the standard deviation of step-to-step changes over the second half of the run,
    divided by √2 (the change of two independent draws has √2 times their spread). A fall larger
    than twice that is reported as a fall; a smaller one as within noise. Over-optimisation is
    gold falling while the proxy rises: a fall of gold while the proxy did not rise is said to be
    none.
    """
    if not isinstance(history, list | tuple):
        pick = ": pass runs[name] for the run to judge" if isinstance(history, dict) else ""
        raise TypeError(
            "overoptimisation_verdict takes one run's history (a list of steps, as "
            f"PPOTrainer.history), got a {type(history).__name__}{pick}."
        )
    if len(history) < 4:
        raise ValueError(f"a verdict needs at least 4 logged steps, got {len(history)}")
    keys = ("gold/score", "objective/scores")
    _check_runs({"the run": history}, "overoptimisation_verdict", needs=keys)
    for key in keys:
        _series("the run", history, key)  # numbers only
    gold = [float(h["gold/score"]) for h in history]
    proxy = [float(h["objective/scores"]) for h in history]
    peak = max(range(len(gold)), key=gold.__getitem__)
    tail = gold[len(gold) // 2 :]
    changes = [b - a for a, b in zip(tail, tail[1:], strict=False)]
    mean = sum(changes) / len(changes)
    noise = (sum((c - mean) ** 2 for c in changes) / len(changes)) ** 0.5 / 2**0.5
    fall, rise = gold[peak] - gold[-1], proxy[-1] - proxy[peak]
    if peak == len(gold) - 1:
        return f"gold did not fall: it peaked at the last step ({gold[peak]:.2f})"
    where = f"after its peak of {gold[peak]:.2f} at step {peak + 1} of {len(gold)}"
    proxy_did = f"the proxy {'rose' if rise >= 0 else 'fell'} {abs(rise):.2f}"
    if fall > 2 * noise:
        if rise > 0:
            return f"gold fell {fall:.2f} {where} while {proxy_did}"
        also = f"also fell {-rise:.2f}" if rise < 0 else "did not move"
        return (f"gold fell {fall:.2f} {where} while the proxy {also}: not over-optimisation, "
                "which is gold falling while the proxy rises")  # fmt: skip
    return (f"gold did not fall beyond step-to-step noise (±{noise:.2f}) {where}: it ended "
            f"{fall:.2f} lower while {proxy_did}")  # fmt: skip


def dashboard_widget(runs: dict[str, list[dict]]):
    """Live version (Binder/Colab): pick a metric and a smoothing weight; redraws the figure."""
    import ipywidgets as widgets

    from rlhf_lib.notebook import show_in_output

    _check_runs(runs, "dashboard_widget", needs=("step",))
    options = _default_metrics(runs, "dashboard_widget")
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
    """Gold score (or ``y="proxy"``) against KL to the SFT policy (the reference π_ref), one
    curve per method.

    ``runs`` are records of :func:`load_method_run` (or the benchmark's ``methods``): each has a
    ``method`` and its ``checkpoints``. Every curve starts at the SFT policy (KL 0); hover shows
    how many samples the method had used. A record of :func:`rlhf_lib.best_of_n.best_of_n_run`
    draws as a dotted "best-of-n" curve, one diamond per ``n`` (hover shows ``n``).
    """
    from rlhf_lib.best_of_n import METHOD as BEST_OF_N
    from rlhf_lib.best_of_n import NAME as BEST_OF_N_NAME
    from rlhf_lib.beyond_ppo import METHOD_NAMES

    names = {**METHOD_NAMES, BEST_OF_N: BEST_OF_N_NAME}

    if isinstance(runs, dict):
        raise TypeError(
            "gold_vs_kl_figure takes a list of run records, got a dict: pass list(runs.values())."
        )
    runs = list(runs)  # checked, then drawn: a generator would be used up by the checks
    if not runs:
        raise ValueError("gold_vs_kl_figure needs at least one run record")
    if y not in ("gold", "proxy"):
        raise ValueError(f"y must be 'gold' or 'proxy', got {y!r}")
    for index, run in enumerate(runs):
        _check_record(run, index, y, BEST_OF_N)
    fig = go.Figure()
    for index, run in enumerate(runs):
        colour = RUN_COLOURS[index % len(RUN_COLOURS)]  # more runs than colours: they repeat
        points = run["checkpoints"]
        hover = "KL %{x:.2f} nats<br>" + y + " %{y:.3f}<br>"
        style = {"line": {"color": colour}, "customdata": [p["samples"] for p in points],
                 "hovertemplate": hover + "%{customdata} samples"}  # fmt: skip
        if run["method"] == BEST_OF_N:  # no training: a point is one n, sampled at inference
            style = {"line": {"color": colour, "dash": "dot"}, "marker": {"symbol": "diamond"},
                     "customdata": [[p["n"], p["samples"]] for p in points],
                     "hovertemplate": "best of %{customdata[0]}<br>" + hover
                                      + "%{customdata[1]} samples"}  # fmt: skip
        fig.add_trace(go.Scatter(
            x=[p["kl"] for p in points], y=[p[y] for p in points], mode="lines+markers",
            name=names.get(run["method"], run["method"]), **style,
        ))  # fmt: skip
    fig.add_vrect(
        x0=KL_BAND[0], x1=KL_BAND[1], fillcolor=KL_BAND_COLOUR, opacity=0.08, line_width=0
    )
    label = "Mean gold score (hidden preference)" if y == "gold" else "Mean reward-model score"
    fig.update_layout(
        title=f"{label.split(' (')[0]} against KL to the SFT policy, held-out prompts",
        xaxis_title="KL(π ‖ π_ref), nats per review",
        yaxis_title=label,
        template=white_template(),
        height=420,
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def _check_record(run, index: int, y: str, best_of_n: str) -> None:
    """``runs[index]`` of :func:`gold_vs_kl_figure` is a method record with checkpoints to draw."""
    where = f"gold_vs_kl_figure: runs[{index}]"
    if not isinstance(run, dict):
        raise TypeError(
            f"{where} is a {type(run).__name__}, not a run record (a dict of load_method_run or "
            "best_of_n_run, or one of the benchmark's 'methods')."
        )
    missing = [key for key in ("method", "checkpoints") if key not in run]
    if missing:
        raise ValueError(
            f"{where} lacks {missing}: a record of load_method_run or best_of_n_run has a "
            "'method' and its 'checkpoints'."
        )
    points = run["checkpoints"]
    if not isinstance(points, list | tuple) or not points:
        raise ValueError(f"{where} ({run['method']!r}) has no checkpoints to draw.")
    needs = ("kl", y, "samples", *(("n",) if run["method"] == best_of_n else ()))
    for p_index, point in enumerate(points):
        lacking = [key for key in needs if not isinstance(point, dict) or key not in point]
        if lacking:
            raise ValueError(
                f"{where} ({run['method']!r}): checkpoints[{p_index}] lacks {lacking}; each "
                f"checkpoint needs {list(needs)}."
            )
