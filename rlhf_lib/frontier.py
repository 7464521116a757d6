"""The gold-vs-KL frontier of chapter 6, and Gao et al.'s functional forms fitted to it.

The DPO paper's controlled-sentiment experiment (Rafailov et al., 2023, Figure 2, left) completes
IMDb review openings with a policy, scores them with a sentiment classifier used as the ground
truth, and plots mean true reward against the KL to the reference for PPO at several target KLs
and DPO at several β. Our world is that experiment in miniature, with the hidden gold preference
as the ground truth. ``benchmarks/frontier.py`` trains every setting of :data:`SWEEP` (each a
:class:`~rlhf_lib.beyond_ppo.MethodRunConfig` at chapter 5's budget, with a different KL
coefficient), adds best-of-n, and writes ``benchmarks/results/frontier.json``. The page draws it
with :func:`frontier_figure` and :func:`fits_figure`, and words what it shows with
:func:`verdicts`.

Gao et al. (2023) fit the gold reward gained over the starting policy, ``R``, as a function of
``d = sqrt(KL)``:

- best-of-n: ``R(d) = d (α − β d)``;
- RL:        ``R(d) = d (α − β log d)``.

Both are linear in ``(α, β)``, so least squares fits them exactly (:func:`fit`). The α and β here
are the paper's names for the two coefficients of a curve, not a KL coefficient.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from rlhf_lib.dashboard import KL_BAND, KL_BAND_COLOUR, RUN_COLOURS
from rlhf_lib.notebook import OKABE_ITO, white_template

if TYPE_CHECKING:
    from rlhf_lib.beyond_ppo import MethodRunConfig

# Every setting of the sweep: chapter 5's budget, one KL coefficient changed. PPO and RLOO charge
# β·k1 in the reward, GRPO adds β·k3 to the loss; DPO's β_DPO scales its implicit reward. A
# setting names MethodRunConfig's fields, and "beta" for the KL coefficient, ppo.kl_coef
# (method_config turns one into its config); benchmarks/results/frontier.json records them so.
SWEEP = (
    *({"method": m, "beta": b} for m in ("ppo", "rloo", "grpo") for b in (0.01, 0.05, 0.2)),
    *({"method": "dpo", "dpo_labels": labels, "dpo_beta": b}
      for labels in ("annotators", "gold") for b in (0.05, 0.1, 0.5)),
)  # fmt: skip
FAMILIES = {
    "ppo": "PPO (ours)",
    "rloo": "RLOO (TRL)",
    "grpo": "GRPO (TRL)",
    "dpo": "DPO (annotators' labels)",
    "dpo_gold": "DPO (gold labels)",
}
RL_FAMILIES = ("ppo", "rloo", "grpo")  # fitted with Gao et al.'s RL form
BEST_OF_N = "best_of_n"
# Gao et al.'s forms, as R(d) = α·d − β·shape(d)
SHAPES = {
    BEST_OF_N: lambda d: d**2,
    "rl": lambda d: np.where(d > 0, d * np.log(np.maximum(d, 1e-300)), 0.0),
}


def method_config(setting: dict, base: MethodRunConfig | None = None) -> MethodRunConfig:
    """The :class:`~rlhf_lib.beyond_ppo.MethodRunConfig` that trains a setting of :data:`SWEEP`:
    ``base`` (chapter 5's budget by default) with the setting's fields, its ``beta`` being the
    KL coefficient ``ppo.kl_coef``."""
    from rlhf_lib.beyond_ppo import MethodRunConfig

    base = MethodRunConfig() if base is None else base
    settings = dict(setting)
    known = {"beta"} | {f.name for f in fields(MethodRunConfig)} - {"ppo", "sft", "reward_model"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"A frontier setting names MethodRunConfig's fields and 'beta' (the KL "
                         f"coefficient), got {unknown}: use some of {sorted(known)}.")  # fmt: skip
    if "beta" in settings:
        settings["ppo"] = replace(base.ppo, kl_coef=settings.pop("beta"))
    return replace(base, **settings)


def family(setting: dict) -> str:
    """The family a setting of :data:`SWEEP` belongs to (a key of :data:`FAMILIES`)."""
    if setting["method"] == "dpo":
        return "dpo_gold" if setting.get("dpo_labels") == "gold" else "dpo"
    return setting["method"]


def coefficient(setting: dict) -> tuple[str, float]:
    """The swept coefficient of a setting and its symbol: ``("β_PPO", 0.05)``, ``("β_DPO",
    0.1)``... (chapter 6 gives each method's β its own name: each weighs a different term)."""
    if setting["method"] == "dpo":
        return "β_DPO", setting["dpo_beta"]
    return f"β_{setting['method'].upper()}", setting["beta"]


def of(k: int, n: int, noun: str = "", plural: str = "") -> str:
    """``k`` of ``n`` in the words a reader expects: "none of the 3 runs", "all 3 runs",
    "2 of the 3 runs", and for ``n = 1`` "the one run" or "not the one run"."""
    noun_s = f" {plural or noun + 's'}" if noun else ""
    if n == 1:
        return f"{'the' if k else 'not the'} one{' ' + noun if noun else ''}"
    if k == 0:
        return f"none of the {n}{noun_s}"
    if k == n:
        return f"all {n}{noun_s}"
    return f"{k} of the {n}{noun_s}"


def gains(run: dict, drop_collapsed: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(d, gain, se)`` of a run's checkpoints: ``d = sqrt(KL)``, the gold gained over its first
    checkpoint (the SFT policy, KL 0) and the standard error of each gold score.
    ``drop_collapsed`` leaves out the checkpoints that :func:`collapsed` flags."""
    points = run["checkpoints"]
    kl = np.maximum([p["kl"] for p in points], 0.0)  # a KL estimate of -1e-9 is 0
    gain = np.array([p["gold"] for p in points]) - points[0]["gold"]
    se = np.array([p.get("gold_se", math.nan) for p in points], dtype=float)
    keep = ~collapsed(gain, se) if drop_collapsed else np.ones(len(points), dtype=bool)
    return np.sqrt(kl)[keep], gain[keep], se[keep]


def collapsed(gain, se) -> np.ndarray:
    """Checkpoints whose gold score fell *below* the SFT policy's by more than twice their
    standard error: the policy has collapsed (it writes what the gold preference punishes), a
    regime Gao et al.'s smooth forms do not describe, so the fits leave such points out (and
    the page counts them)."""
    gain, se = np.asarray(gain, dtype=float), np.nan_to_num(np.asarray(se, dtype=float))
    return gain < -2 * se


def fit(form: str, d, gain) -> dict:
    """Least-squares fit of Gao et al.'s ``form`` (``"best_of_n"`` or ``"rl"``) to points
    ``(d, gain)``: ``{"form", "alpha", "beta", "rmse", "n_points", "d_max"}``."""
    if form not in SHAPES:
        raise ValueError(f"form must be one of {sorted(SHAPES)}, got {form!r}.")
    d, gain = np.asarray(d, dtype=float), np.asarray(gain, dtype=float)
    if d.shape != gain.shape or d.ndim != 1:
        raise ValueError(f"d and gain must be flat and of one length, got {d.shape}, {gain.shape}.")
    if np.count_nonzero(d > 0) < 2:
        raise ValueError("fit needs at least two points with KL > 0 to fix two coefficients.")
    design = np.stack([d, -SHAPES[form](d)], axis=1)
    (alpha, beta), *_ = np.linalg.lstsq(design, gain, rcond=None)
    residual = gain - design @ np.array([alpha, beta])
    return {"form": form, "alpha": float(alpha), "beta": float(beta),
            "rmse": float(np.sqrt(np.mean(residual**2))), "n_points": int(d.size),
            "d_max": float(d.max())}  # fmt: skip


def predict(fitted: dict, d) -> np.ndarray:
    """The fitted curve ``R(d)`` of :func:`fit` at ``d``."""
    d = np.asarray(d, dtype=float)
    return fitted["alpha"] * d - fitted["beta"] * SHAPES[fitted["form"]](d)


def runs_of(report: dict, name: str) -> list[dict]:
    """The runs of one family in a frontier report, by increasing coefficient."""
    runs = [run for run in report["runs"] if family(run["setting"]) == name]
    return sorted(runs, key=lambda run: coefficient(run["setting"])[1])


def pooled(runs: list[dict], drop_collapsed: bool = False):
    """``(d, gain, se)`` of all checkpoints of several runs (their common SFT point once)."""
    parts = [gains(run, drop_collapsed) for run in runs]
    d = np.concatenate([parts[0][0][:1], *(p[0][1:] for p in parts)])
    gain = np.concatenate([parts[0][1][:1], *(p[1][1:] for p in parts)])
    se = np.concatenate([parts[0][2][:1], *(p[2][1:] for p in parts)])
    return d, gain, se


def fits(report: dict) -> dict[str, dict]:
    """Gao et al.'s fits: best-of-n's form to best-of-n, the RL form to each RL family's
    checkpoints pooled over its KL coefficients (collapsed checkpoints left out)."""
    bon = report["best_of_n"]
    result = {BEST_OF_N: fit(BEST_OF_N, *gains(bon)[:2])}
    for name in RL_FAMILIES:
        runs = runs_of(report, name)
        if runs:
            result[name] = fit("rl", *pooled(runs, drop_collapsed=True)[:2])
    return result


def collapsed_checkpoints(report: dict) -> list[dict]:
    """Every checkpoint of the sweep that :func:`collapsed` flags: family, coefficient, KL and
    gold score."""
    rows = []
    for run in report["runs"]:
        d, gain, se = gains(run)
        for index in np.nonzero(collapsed(gain, se))[0]:
            point = run["checkpoints"][index]
            symbol, value = coefficient(run["setting"])
            rows.append({"family": family(run["setting"]), "symbol": symbol,
                         "coefficient": value, "kl": point["kl"],
                         "gold": point["gold"]})  # fmt: skip
    return rows


def kl_to_reach(fitted: dict, target: float) -> float | None:
    """The smallest KL at which a fitted curve reaches ``target`` gold gain, searched up to the
    largest ``d`` it was fitted on (no extrapolation); None if it never does there."""
    d = np.linspace(0, fitted["d_max"], 2001)
    reached = np.nonzero(predict(fitted, d) >= target)[0]
    return float(d[reached[0]] ** 2) if reached.size else None


# ---------------------------------------------------------------------------------------------
# What the data says
# ---------------------------------------------------------------------------------------------


def efficiency(report: dict) -> dict[str, dict]:
    """Gao et al.: RL is far less KL-efficient than best-of-n. For each RL family, every
    checkpoint whose gold gain best-of-n's fitted curve reaches within its measured range: the
    KL the checkpoint spent, over the KL best-of-n needs for the same gain. Returns, per family,
    the median of that ratio, the number of checkpoints compared and the number whose gain
    best-of-n never reaches here."""
    bon = fit(BEST_OF_N, *gains(report["best_of_n"])[:2])
    rows = {}
    for name in RL_FAMILIES:
        runs = runs_of(report, name)
        if not runs:
            continue
        d, gain, _ = pooled(runs, drop_collapsed=True)
        ratios, unreached = [], 0
        for di, gi in zip(d[1:], gain[1:], strict=True):
            kl_bon = kl_to_reach(bon, gi) if gi > 0 else None
            if kl_bon is None:
                unreached += gi > 0
            elif kl_bon > 0:
                ratios.append(di**2 / kl_bon)
        rows[name] = {"median_ratio": float(np.median(ratios)) if ratios else None,
                      "compared": len(ratios), "unreached": unreached}  # fmt: skip
    return rows


def early_stopping(report: dict) -> dict[str, dict]:
    """Gao et al.: a KL penalty acts like early stopping; it does not move the frontier.

    For each RL family: the checkpoints of every coefficient against the one curve fitted to all
    of them. A coefficient whose checkpoints sit, on average, more than twice their standard
    error above or below that curve moved the frontier; otherwise it only stopped earlier or
    later on it (its final KL says where)."""
    rows = {}
    for name in RL_FAMILIES:
        runs = runs_of(report, name)
        if len(runs) < 2:
            continue
        curve = fit("rl", *pooled(runs, drop_collapsed=True)[:2])
        settings = []
        for run in runs:
            d, gain, se = gains(run, drop_collapsed=True)
            residual = gain[1:] - predict(curve, d[1:])
            if residual.size == 0:  # every checkpoint collapsed: nothing to place on the curve
                continue
            noise = float(np.sqrt(np.nanmean(se[1:] ** 2)) / math.sqrt(len(residual)))
            offset = float(residual.mean())
            side = "on" if abs(offset) <= 2 * noise else ("above" if offset > 0 else "below")
            settings.append({"coefficient": coefficient(run["setting"])[1], "offset": offset,
                             "noise": noise, "side": side,
                             "final_kl": run["checkpoints"][-1]["kl"]})  # fmt: skip
        finals = [s["final_kl"] for s in settings]  # by increasing coefficient
        falls = all(a > b for a, b in zip(finals, finals[1:], strict=False))
        rows[name] = {"settings": settings, "kl_falls_with_beta": falls,
                      "one_curve": all(s["side"] == "on" for s in settings)}  # fmt: skip
    return rows


def against_ppo(report: dict, name: str) -> dict:
    """Each checkpoint of a family (after the SFT one) against PPO's fitted curve at the same
    KL, where PPO's checkpoints reach that KL: counts of points above, below and within twice
    the combined noise (the point's standard error and the fit's RMSE)."""
    curve = fit("rl", *pooled(runs_of(report, "ppo"), drop_collapsed=True)[:2])
    counts = {"above": 0, "on": 0, "below": 0, "beyond": 0}
    for run in runs_of(report, name):
        d, gain, se = gains(run)
        for di, gi, si in zip(d[1:], gain[1:], se[1:], strict=True):
            if di > curve["d_max"]:
                counts["beyond"] += 1
                continue
            gap = gi - float(predict(curve, di))
            noise = 2 * math.hypot(si if math.isfinite(si) else 0.0, curve["rmse"])
            counts["on" if abs(gap) <= noise else ("above" if gap > 0 else "below")] += 1
    return counts


def _dominance(counts: dict, name: str) -> str:
    """Dominance as the DPO paper means it: higher gold at every KL. With noisy points, a method
    dominates only if every compared checkpoint lies above the other's fitted frontier."""
    compared = counts["above"] + counts["on"] + counts["below"]
    if compared == 0:
        return f"None of {name}'s checkpoints lies within PPO's range of KL"
    above, on, below = (counts[k] or "none" for k in ("above", "on", "below"))
    where = (f"of its {compared} checkpoints within PPO's range of KL, {above} lie above PPO's "
             f"fitted frontier, {on} on it (within twice the noise) and {below} below")  # fmt: skip
    if counts["above"] == compared:
        return f"{name} dominates PPO here: {where}"
    if counts["below"] == compared:
        return f"PPO dominates {name} here: {where}"
    if counts["above"] == 0 and counts["below"]:
        return f"{name} never beats PPO here: {where}"
    if counts["below"] == 0 and counts["above"]:
        return f"PPO never beats {name} here: {where}"
    return f"Neither {name} nor PPO dominates here: {where}"


def label_effect(report: dict) -> dict:
    """What gold labels change for DPO: at each ``β_DPO`` trained both ways, the final gold
    score with gold labels minus with the annotators' labels, and whether that difference is
    more than twice its standard error. Returns ``{"rows", "sentence"}``."""
    noisy = {coefficient(r["setting"])[1]: r for r in runs_of(report, "dpo")}
    gold = {coefficient(r["setting"])[1]: r for r in runs_of(report, "dpo_gold")}
    rows = []
    for value in sorted(set(noisy) & set(gold)):
        a, b = noisy[value]["checkpoints"][-1], gold[value]["checkpoints"][-1]
        difference = b["gold"] - a["gold"]
        noise = 2 * math.hypot(a.get("gold_se", 0.0), b.get("gold_se", 0.0))
        rows.append({"dpo_beta": value, "annotators": a["gold"], "gold": b["gold"],
                     "difference": difference, "noise": noise,
                     "measured": abs(difference) > noise,
                     "kl_change": b["kl"] - a["kl"]})  # fmt: skip
    if not rows:
        return {"rows": rows, "sentence": "DPO was not trained on both kinds of labels"}
    changes = ", ".join(f"{r['difference']:+.3f} at β_DPO = {r['dpo_beta']:g}" for r in rows)
    measured = [r for r in rows if r["measured"]]
    up = sum(r["difference"] > 0 for r in measured)
    sentence = (f"Gold labels instead of the annotators' changed DPO's final gold score by "
                f"{changes}; {of(len(measured), len(rows), 'difference')} exceed twice their "
                "standard error")  # fmt: skip
    if measured:
        sentence += f" ({up} up, {len(measured) - up} down)"
    kl_changes = ", ".join(f"{r['kl_change']:+.2f}" for r in rows)
    higher = sum(r["kl_change"] > 0 for r in rows)
    sentence += (f". They changed its final KL by {kl_changes} nats: higher at "
                 f"{of(higher, len(rows))}")  # fmt: skip
    return {"rows": rows, "sentence": sentence, "kl_higher": higher, "gold_up": up,
            "gold_down": len(measured) - up}  # fmt: skip


def verdicts(report: dict) -> dict[str, str]:
    """Sentences (capitalised, no final full stop) that word what the frontier shows:
    ``efficiency``, ``early_stopping``, ``dpo`` and ``dpo_gold``."""
    result = {}
    eff = efficiency(report)
    parts, slower, measured = [], 0, 0
    for name, row in eff.items():
        label = FAMILIES[name]
        more = "one more checkpoint" if row["unreached"] == 1 else f"{row['unreached']} more"
        beyond = f"; best-of-n never reaches the gain of {more}" if row["unreached"] else ""
        if row["median_ratio"] is None:
            parts.append(f"{label}: no checkpoint's gain lies within best-of-n's range{beyond}")
            continue
        measured += 1
        slower += row["median_ratio"] > 1
        parts.append(f"{label} spent {row['median_ratio']:.1f}× best-of-n's KL for the same "
                     f"gold gain (median over {row['compared']} checkpoints{beyond})")  # fmt: skip
    if measured and slower == measured:
        head = "As Gao et al. found, RL is less KL-efficient than best-of-n here"
    elif measured and slower == 0:
        head = "Unlike Gao et al.'s finding, RL is more KL-efficient than best-of-n here"
    else:
        head = "The data splits on Gao et al.'s finding that RL is less KL-efficient than best-of-n"
    result["efficiency"] = f"{head}: " + "; ".join(parts)
    stops = early_stopping(report)
    lines = []
    for name, row in stops.items():
        label = FAMILIES[name]
        symbol = f"β_{name.upper()}"
        finals = ", ".join(f"{s['final_kl']:.2f}" for s in row["settings"])
        values = ", ".join(f"{s['coefficient']:g}" for s in row["settings"])
        if not row["one_curve"]:
            lines.append(f"{label}: " + ", ".join(
                f"{symbol} = {s['coefficient']:g} lies {s['side']} the common curve "
                f"({s['offset']:+.3f} on average)"
                for s in row["settings"] if s["side"] != "on"))  # fmt: skip
        elif row["kl_falls_with_beta"]:
            lines.append(f"{label}: every {symbol} lies on one curve, within twice its noise, and "
                         f"a larger one stops sooner on it (final KL {finals} nats for {symbol} "
                         f"= {values})")  # fmt: skip
        else:
            lines.append(f"{label}: every {symbol} lies on one curve, within twice its noise, but "
                         f"a larger one did not always stop sooner (final KL {finals} nats for "
                         f"{symbol} = {values})")  # fmt: skip
    early = sum(row["one_curve"] and row["kl_falls_with_beta"] for row in stops.values())
    head = (f"For {of(early, len(stops), 'RL method')} the KL coefficient acts like early "
            "stopping (one curve, and a larger coefficient stops sooner on it), as Gao et al. "
            "report")  # fmt: skip
    result["early_stopping"] = f"{head}. " + "; ".join(lines)
    for name in ("dpo", "dpo_gold"):
        if runs_of(report, name):
            result[name] = _dominance(against_ppo(report, name), FAMILIES[name])
    return result


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

_COLOURS = dict(zip((*FAMILIES, BEST_OF_N), RUN_COLOURS, strict=False))
_SYMBOLS = ("circle", "square", "triangle-up", "x", "star")


def frontier_figure(report: dict, extra: list[dict] | None = None) -> go.Figure:
    """Gold score against KL for every setting of the sweep, as in the DPO paper's Figure 2: one
    colour per method, one marker per coefficient (smallest first), best-of-n dotted. ``extra``
    records (of :func:`~rlhf_lib.beyond_ppo.load_method_run`, with a ``label``) draw on top as
    thick dashed lines, e.g. the run the page trains live."""
    fig = go.Figure()
    for name, label in FAMILIES.items():
        for index, run in enumerate(runs_of(report, name)):
            symbol, value = coefficient(run["setting"])
            points = run["checkpoints"]
            fig.add_trace(go.Scatter(
                x=[p["kl"] for p in points], y=[p["gold"] for p in points], mode="lines+markers",
                name=f"{label}, {symbol} = {value:g}", legendgroup=name,
                line={"color": _COLOURS[name], "width": 1.5},
                marker={"symbol": _SYMBOLS[index % len(_SYMBOLS)], "size": 7},
                customdata=[p["samples"] for p in points],
                hovertemplate=f"{label}, {symbol} = {value:g}<br>KL %{{x:.2f}} nats<br>"
                              "gold %{y:.3f}<br>%{customdata} samples<extra></extra>",
            ))  # fmt: skip
    bon = report["best_of_n"]["checkpoints"]
    fig.add_trace(go.Scatter(
        x=[p["kl"] for p in bon], y=[p["gold"] for p in bon], mode="lines+markers",
        name="best-of-n", line={"color": _COLOURS[BEST_OF_N], "dash": "dot"},
        marker={"symbol": "diamond"}, customdata=[p["n"] for p in bon],
        hovertemplate="best of %{customdata}<br>KL %{x:.2f} nats<br>gold %{y:.3f}<extra></extra>",
    ))  # fmt: skip
    for run in extra or []:
        points = run["checkpoints"]
        fig.add_trace(go.Scatter(
            x=[p["kl"] for p in points], y=[p["gold"] for p in points], mode="lines+markers",
            name=run["label"], line={"color": OKABE_ITO[6], "width": 3, "dash": "dash"},
            hovertemplate=run["label"] + "<br>KL %{x:.2f} nats<br>gold %{y:.3f}<extra></extra>",
        ))  # fmt: skip
    fig.add_vrect(x0=KL_BAND[0], x1=KL_BAND[1], fillcolor=KL_BAND_COLOUR, opacity=0.08,
                  line_width=0)  # fmt: skip
    # Axes fit the checkpoints that did not collapse; a collapsed one would squeeze the rest
    # into a corner, so it is drawn off the scale and named in a note instead.
    kept = [p for run in report["runs"] for p, bad in zip(
        run["checkpoints"], collapsed(*gains(run)[1:]), strict=True) if not bad]  # fmt: skip
    kept += [*bon, *(p for run in extra or [] for p in run["checkpoints"])]
    golds, kls = [p["gold"] for p in kept], [p["kl"] for p in kept]
    fig.update_yaxes(range=[min(golds) - 0.05, max(golds) + 0.05])
    fig.update_xaxes(range=[-0.3, max(kls) * 1.05 + 0.3])
    off_scale = collapsed_checkpoints(report)
    if off_scale:
        fig.add_annotation(
            text="Off the scale (collapsed): " + "; ".join(
                f"{FAMILIES[c['family']]}, {c['symbol']} = {c['coefficient']:g}: gold "
                f"{c['gold']:.2f} at {c['kl']:.1f} nats" for c in off_scale),
            xref="paper", yref="paper", x=0, y=-0.2, showarrow=False, xanchor="left",
            font={"size": 11},
        )  # fmt: skip
    fig.update_layout(
        title="The gold-vs-KL frontier: every method at several KL coefficients",
        xaxis_title="KL(π ‖ π_ref), nats per review",
        yaxis_title="Mean gold score (hidden preference)",
        template=white_template(),
        height=640,  # the legend lists every run
        margin={"b": 110},
        legend={"font": {"size": 10}},
    )
    return fig


def fits_figure(report: dict) -> go.Figure:
    """Gold gained against ``d = sqrt(KL)``: best-of-n and each RL method's checkpoints (all its
    coefficients pooled, collapsed ones left out as in the fits) as points, Gao et al.'s fitted
    forms as lines over the range fitted."""
    fitted = fits(report)
    fig = go.Figure()
    for name in (*RL_FAMILIES, BEST_OF_N):
        if name not in fitted:
            continue
        if name == BEST_OF_N:
            d, gain, _ = gains(report["best_of_n"])
        else:  # as fitted: collapsed checkpoints left out
            d, gain, _ = pooled(runs_of(report, name), drop_collapsed=True)
        label = "best-of-n" if name == BEST_OF_N else FAMILIES[name]
        colour = _COLOURS[name]
        fig.add_trace(go.Scatter(
            x=d, y=gain, mode="markers", name=f"{label}: measured", legendgroup=name,
            marker={"color": colour, "symbol": "diamond" if name == BEST_OF_N else "circle"},
            hovertemplate=f"{label}<br>d %{{x:.2f}}<br>gold gained %{{y:.3f}}<extra></extra>",
        ))  # fmt: skip
        f = fitted[name]
        grid = np.linspace(0, f["d_max"], 100)
        kind = "bon" if name == BEST_OF_N else "RL"
        shape = f"d(α_{kind} − β_{kind}·" + ("d)" if name == BEST_OF_N else "log d)")
        fig.add_trace(go.Scatter(
            x=grid, y=predict(f, grid), mode="lines", legendgroup=name,
            name=f"{label}: {shape}, α_{kind} = {f['alpha']:.3f}, β_{kind} = {f['beta']:.3f}",
            line={"color": colour, "dash": "dot" if name == BEST_OF_N else "solid"},
            hoverinfo="skip",
        ))  # fmt: skip
    fig.update_layout(
        title="Gold gained against d = √KL, with Gao et al.'s functional forms",
        xaxis_title="d = √KL (KL in nats per review)",
        yaxis_title="Gold score gained over the SFT policy",
        template=white_template(),
        height=480,
        legend={"font": {"size": 10}},
    )
    return fig
