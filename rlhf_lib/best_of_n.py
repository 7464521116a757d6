"""Best-of-n against the reward model: optimisation with no training at all (chapter 6).

Best-of-n (rejection sampling) samples ``n`` completions of a prompt from the SFT policy and keeps
the one the reward model (the proxy) scores highest. It is the baseline of Gao et al.'s study of
reward-model over-optimisation (2023), the method Stiennon et al. (2020) compared RL with, and it
needs no gradient step: only sampling and scoring. The chapter draws it on the same gold-vs-KL
axes as PPO, GRPO, RLOO and DPO (:func:`rlhf_lib.dashboard.gold_vs_kl_figure`).

How one run measures it:

1. Sample ``N = n_samples`` completions of each held-out prompt from the SFT policy, with exactly
   the settings of :func:`rlhf_lib.evaluation.evaluate_policy` (ancestral sampling at temperature
   1, no top-k or top-p, up to ``eval_max_new_tokens`` new tokens) on the first ``n_prompts`` of
   the same held-out prompts (:func:`rlhf_lib.evaluation.evaluation_prompts`).
2. Score every completion with the reward model (proxy) and the hidden gold preference.
3. For each ``n`` in ``ns``, the expected gold and proxy score of the proxy's favourite among
   ``n`` samples, estimated without bias from all ``N`` (:func:`expected_best_of_n`), and the KL
   to the SFT policy by the analytic formula ``log n - (n - 1)/n`` (:func:`kl_best_of_n`).

This module is not a stage (it trains nothing and runs in seconds), and no stage imports it.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from rlhf_lib import checks

METHOD = "best_of_n"  # the record's "method", beside beyond_ppo.METHODS
NAME = "best-of-n"  # how figures and tables name it (beyond_ppo.METHOD_NAMES names the others)


@dataclass
class BestOfNConfig:
    """One best-of-n measurement. The defaults keep it under half a minute on 2 CPU cores and
    match the methods' held-out evaluation (:class:`rlhf_lib.beyond_ppo.MethodRunConfig`)."""

    n_prompts: int = 32  # the first 32 of the methods' held-out prompts: 32 × 64 = 2048 samples
    n_samples: int = 64  # N per prompt; the largest n. log 64 - 63/64 ≈ 3.2 nats of KL
    ns: tuple[int, ...] | None = None  # the n to report; None: 1, 2, 4, ..., n_samples
    max_new_tokens: int = 40  # as MethodRunConfig.eval_max_new_tokens: a review is not cut
    seed: int = 0  # sampling seed (the caller's random state is left untouched)
    batch_size: int = 256  # completions per generate() and per reward-model call

    def __post_init__(self):
        checks.ints(self, "n_prompts", "n_samples", "max_new_tokens", "batch_size")
        checks.ints(self, "seed", minimum=0)
        if self.ns is not None:
            self.ns = tuple(check_ns(self.ns, self.n_samples, "BestOfNConfig.ns"))

    @classmethod
    def matching(cls, method_config, **overrides) -> BestOfNConfig:
        """A config that samples as a :class:`~rlhf_lib.beyond_ppo.MethodRunConfig`'s held-out
        evaluation does (its ``eval_max_new_tokens`` and ``seed``), with ``overrides``."""
        settings = {"max_new_tokens": method_config.eval_max_new_tokens,
                    "seed": method_config.seed}  # fmt: skip
        return cls(**{**settings, **overrides})

    @property
    def n_values(self) -> list[int]:
        """The ``n`` reported: ``ns``, or the powers of two up to ``n_samples`` (and it)."""
        if self.ns is not None:
            return list(self.ns)
        powers = [2**k for k in range(self.n_samples.bit_length()) if 2**k <= self.n_samples]
        return sorted({*powers, self.n_samples})


def check_ns(ns, n_samples: int, name: str = "ns") -> list[int]:
    """``ns`` as a sorted list of distinct ints in ``[1, n_samples]``, or a ValueError."""
    if isinstance(ns, (int, str)) or not hasattr(ns, "__iter__"):
        raise TypeError(f"{name} must be a list of ints such as [1, 2, 4, 8], got {ns!r}.")
    ns = list(ns)
    if not ns:
        raise ValueError(f"{name} is empty: give at least one n, such as [1, 2, 4, 8].")
    for n in ns:
        if not checks.is_int(n) or not 1 <= n <= n_samples:
            raise ValueError(
                f"{name} must hold ints in [1, {n_samples}] (best-of-n picks among n of the "
                f"{n_samples} samples of each prompt), got {n!r}. Raise n_samples to report a "
                "larger n."
            )
    return sorted({int(n) for n in ns})


# ---------------------------------------------------------------------------------------------
# The two formulas
# ---------------------------------------------------------------------------------------------


def kl_best_of_n(n) -> float:
    """``KL(π_bon ‖ π) = log n - (n - 1)/n`` nats per completion (``n = 1``: 0).

    The analytic formula Stiennon et al. (2020) and Gao et al. (2023) use. If the reward of a
    sample is continuous (no completion has a probability of its own worth counting), the best
    of ``n`` has density ``n F(r)^(n-1)`` times the base policy's, where ``F`` is the CDF of the
    reward under the base policy; ``F(r)`` of the chosen sample is the largest of ``n`` uniform
    numbers, so ``KL = log n + (n - 1) E[log U_max] = log n - (n - 1)/n``. Beirami et al. (2024)
    show that for a distribution with atoms (completions that can repeat) it is an upper bound on
    the true KL, which it approaches as every completion's probability goes to 0.
    ``n`` may be a float (for interpolation); it must be >= 1.
    """
    if not checks.is_finite_number(n) or n < 1:
        raise ValueError(f"best-of-n needs n >= 1 (a finite number), got {n!r}.")
    return float(math.log(n) - (n - 1) / n)


def best_of_n_weights(n_samples: int, n: int) -> np.ndarray:
    """``w[i] = C(i, n-1) / C(N, n)``, ``i = 0 .. N-1``: the probability that the sample ranked
    ``i``-th from the bottom (0-based) of ``N`` is the highest of a uniformly random ``n``-subset
    (it is, in the ``C(i, n-1)`` subsets that hold it and ``n - 1`` of the ``i`` below it). The
    weights sum to 1 (the hockey-stick identity)."""
    if not checks.is_int(n_samples) or n_samples < 1:
        raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}.")
    check_ns([n], n_samples, "n")
    total = math.comb(n_samples, n)
    return np.array([math.comb(i, n - 1) / total for i in range(n_samples)])


def _scores(values, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(
            f"{name} must be a 2-D array [prompts, samples] (N samples of each prompt), got shape "
            f"{values.shape}."
        )
    if not np.isfinite(values).all():
        raise ValueError(
            f"{name} holds {int((~np.isfinite(values)).sum())} NaN or infinite scores: check the "
            "reward model (a NaN usually means a diverged model or an empty text)."
        )
    return values


def expected_best_of_n(proxy, values, n: int) -> np.ndarray:
    """For each prompt, the expected ``values`` (e.g. gold scores) of the sample with the highest
    ``proxy`` among ``n`` drawn at random from the ``N`` samples of that prompt.

    ``proxy`` and ``values`` are ``[prompts, N]``. Averaging over all ``C(N, n)`` subsets instead
    of drawing one makes it an unbiased estimate of best-of-``n``'s expected value with the least
    variance: sort each prompt's samples by proxy and weigh the ``i``-th by
    :func:`best_of_n_weights`. Equal proxy scores are ranked by position (later ranks higher),
    which matters only for distinct texts with bit-identical scores.
    """
    proxy, values = _scores(proxy, "proxy"), _scores(values, "values")
    if proxy.shape != values.shape:
        raise ValueError(
            f"proxy {proxy.shape} and values {values.shape} must have the same shape: one score "
            "of each kind for every sample."
        )
    order = np.argsort(proxy, axis=1, kind="stable")  # ascending: the last is the proxy's best
    ranked = np.take_along_axis(values, order, axis=1)
    return ranked @ best_of_n_weights(proxy.shape[1], n)


def best_of_n_curve(proxy, gold, ns) -> list[dict]:
    """One point per ``n``: ``{"n", "samples", "kl", "gold", "proxy", "gold_se", "proxy_se"}``.

    ``gold`` and ``proxy`` are means over prompts of :func:`expected_best_of_n`, ``*_se`` their
    standard errors across prompts (NaN for one prompt), ``kl`` is :func:`kl_best_of_n` and
    ``samples`` the completions best-of-``n`` draws for these prompts (``n × prompts``).
    """
    proxy, gold = _scores(proxy, "proxy"), _scores(gold, "gold")
    n_prompts, n_samples = proxy.shape
    points = []
    for n in check_ns(ns, n_samples):
        row = {"n": n, "samples": n * n_prompts, "kl": kl_best_of_n(n)}
        for key, values in (("gold", gold), ("proxy", proxy)):
            per_prompt = expected_best_of_n(proxy, values, n)
            row[key] = float(per_prompt.mean())
            row[f"{key}_se"] = (float(per_prompt.std(ddof=1) / math.sqrt(n_prompts))
                                if n_prompts > 1 else float("nan"))  # fmt: skip
        points.append(row)
    return points


# ---------------------------------------------------------------------------------------------
# One run: sample, score, estimate
# ---------------------------------------------------------------------------------------------


def sample_and_score(policy, tokenizer, reward_model, rm_tokenizer, prompts, n_samples: int,
                     max_new_tokens: int = 40, seed: int = 0, batch_size: int = 256,
                     desc: str | None = None) -> dict:  # fmt: skip
    """``n_samples`` completions of every prompt, scored: ``{"texts", "proxy", "gold"}``, texts a
    list per prompt, scores ``[prompts, n_samples]`` arrays.

    Sampling is :func:`rlhf_lib.sft.sample_completions` (the held-out evaluation's settings),
    seeded inside :func:`torch.random.fork_rng`, so the caller's random state is unchanged; the
    models are put in eval mode for the call and then back as they were.
    """
    from rlhf_lib.annotators import gold_score
    from rlhf_lib.reward_model import score_texts
    from rlhf_lib.sft import sample_completions

    prompts = checks.require_texts(prompts, "sample_and_score", "prompts")
    if not prompts:
        raise ValueError("sample_and_score needs at least one prompt.")
    if not checks.is_int(n_samples) or n_samples < 1:
        raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}.")
    repeated = [p for p in prompts for _ in range(n_samples)]  # a prompt's samples side by side
    modes = [(m, m.training) for m in (policy, reward_model) if isinstance(m, torch.nn.Module)]
    for model, _ in modes:
        model.eval()  # dropout would change the distribution being measured
    try:
        with torch.random.fork_rng():
            completions = sample_completions(policy, tokenizer, repeated, temperature=1.0,
                                             max_new_tokens=max_new_tokens, batch_size=batch_size,
                                             seed=seed, desc=desc)  # fmt: skip
        texts = [p + c for p, c in zip(repeated, completions, strict=True)]
        proxy = score_texts(reward_model, rm_tokenizer, texts, batch_size=batch_size)
    finally:
        for model, was_training in modes:
            model.train(was_training)
    gold = np.asarray(gold_score(texts), dtype=float)
    shape = (len(prompts), n_samples)
    return {
        "texts": [texts[i * n_samples : (i + 1) * n_samples] for i in range(len(prompts))],
        "proxy": _scores(np.asarray(proxy, dtype=float).reshape(shape), "reward-model scores"),
        "gold": gold.reshape(shape),
    }


def best_of_n_run(policy, tokenizer, reward_model, rm_tokenizer,
                  config: BestOfNConfig | None = None, prompts=None) -> dict:  # fmt: skip
    """Best-of-n of ``policy`` (the SFT policy) against ``reward_model``, as a method record.

    ``prompts`` defaults to the first ``config.n_prompts`` of the methods' held-out prompts. The
    record has the shape of :func:`rlhf_lib.beyond_ppo.load_method_run`'s, so
    :func:`rlhf_lib.dashboard.gold_vs_kl_figure` draws it beside them: ``method``, ``config``,
    ``checkpoints`` (one per ``n``, see :func:`best_of_n_curve`), ``samples`` (each prompt's
    best-of-``N`` review), ``sft_samples`` (each prompt's first review: a plain SFT sample),
    ``wall_seconds`` / ``cpu_seconds`` (sampling and scoring),
    ``distinct_fraction`` (the share of each prompt's ``N`` reviews that are distinct, the regime
    in which :func:`kl_best_of_n` is close to the true KL) and the raw ``scores``.
    """
    config = config or BestOfNConfig()
    if not isinstance(config, BestOfNConfig):
        raise TypeError(f"config must be a BestOfNConfig, got {type(config).__name__}.")
    if prompts is None:
        from rlhf_lib.evaluation import evaluation_prompts

        prompts = evaluation_prompts(config.n_prompts)
    prompts = checks.require_texts(prompts, "best_of_n_run", "prompts")
    wall, cpu = time.perf_counter(), time.process_time()
    scored = sample_and_score(policy, tokenizer, reward_model, rm_tokenizer, prompts,
                              config.n_samples, config.max_new_tokens, config.seed,
                              config.batch_size, desc="best-of-n: sampling")  # fmt: skip
    points = best_of_n_curve(scored["proxy"], scored["gold"], config.n_values)
    best = scored["proxy"].argmax(1)
    return {
        "method": METHOD,
        "config": asdict(config),
        "checkpoints": points,
        "samples": [texts[i] for texts, i in zip(scored["texts"], best, strict=True)],
        "sft_samples": [texts[0] for texts in scored["texts"]],  # best of 1: a plain SFT review
        "wall_seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
        "distinct_fraction": float(np.mean([len(set(t)) / len(t) for t in scored["texts"]])),
        "scores": {"proxy": scored["proxy"].tolist(), "gold": scored["gold"].tolist()},
    }


# ---------------------------------------------------------------------------------------------
# Best-of-n beside a trained method
# ---------------------------------------------------------------------------------------------


def _n_at_kl(kl: float) -> float:
    """The (real) ``n >= 1`` at which :func:`kl_best_of_n` equals ``kl`` (it grows with n)."""
    low, high = 0.0, 1.0  # bisection on log n
    while kl_best_of_n(math.exp(high)) < kl:
        high *= 2
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if kl_best_of_n(math.exp(mid)) < kl else (low, mid)
    return math.exp((low + high) / 2)


def best_of_n_at_kl(record: dict, kl: float) -> dict | None:
    """Best-of-n's point at ``kl`` nats, interpolated linearly in ``log n`` between the measured
    ``n``: ``{"n", "kl", "gold", "proxy"}`` (``n`` real-valued), or None if ``kl`` is beyond
    the largest ``n`` measured."""
    points = sorted(record["checkpoints"], key=lambda p: p["n"])
    if not checks.is_finite_number(kl) or kl < 0:
        raise ValueError(f"kl must be a finite number >= 0, got {kl!r}.")
    if kl < points[0]["kl"]:
        raise ValueError(
            f"KL {kl:.3f} is below best-of-{points[0]['n']}'s {points[0]['kl']:.3f}, the smallest "
            "n measured: include n = 1 (KL 0) in BestOfNConfig.ns."
        )
    if kl > points[-1]["kl"]:
        return None
    n = min(max(_n_at_kl(kl), points[0]["n"]), points[-1]["n"])
    log_ns = [math.log(p["n"]) for p in points]
    return {"n": n, "kl": kl,
            **{key: float(np.interp(math.log(n), log_ns, [p[key] for p in points]))
               for key in ("gold", "proxy")}}  # fmt: skip


def equal_kl_checkpoints(record: dict, run: dict) -> list[dict]:
    """Every checkpoint of ``run`` after the SFT one whose KL best-of-n reaches, beside
    best-of-n's point at that KL: ``{"samples", "kl", "gold", "gain", "bon_n", "bon_gold",
    "bon_gain"}``; each gain is over its own SFT start (see :func:`compare_with_run`)."""
    rows = []
    bon_start = min(record["checkpoints"], key=lambda p: p["n"])["gold"]
    for point in run["checkpoints"][1:]:
        at_kl = best_of_n_at_kl(record, point["kl"])
        if at_kl is not None:
            rows.append({"samples": point["samples"], "kl": point["kl"], "gold": point["gold"],
                         "gain": point["gold"] - run["checkpoints"][0]["gold"],
                         "bon_n": at_kl["n"], "bon_gold": at_kl["gold"],
                         "bon_gain": at_kl["gold"] - bon_start})  # fmt: skip
    return rows


def compare_with_run(record: dict, run: dict) -> dict:
    """Best-of-n against one method's final checkpoint, at equal KL where best-of-n reaches it.

    Both are judged by the gold score they *gained* over their own SFT starting point (best-of-1,
    and the method's first checkpoint), because best-of-n is usually measured on fewer prompts
    than the methods, whose SFT scores then differ by noise alone. If the method's final KL is
    within best-of-n's measured range, best-of-n's point there (:func:`best_of_n_at_kl`);
    otherwise best-of-n's largest ``n``, which spends less KL than the method. ``verdict`` is
    ``"higher"``, ``"lower"`` or, when the gap is below twice its standard error,
    ``"about the same as"``. The method's standard error comes from the gold scores of its final
    samples (``run["samples"]``, one per held-out prompt) when the record has them, with its
    start's ``gold_se`` where recorded; without the samples the verdict is only higher or lower.
    """
    from rlhf_lib.annotators import gold_score

    points = sorted(record["checkpoints"], key=lambda p: p["n"])
    start, final = run["checkpoints"][0], run["checkpoints"][-1]
    at_kl = best_of_n_at_kl(record, final["kl"])
    equal_kl = at_kl is not None
    if not equal_kl:
        at_kl = {key: points[-1][key] for key in ("n", "kl", "gold", "proxy")}
    gain = final["gold"] - start["gold"]
    bon_gain = at_kl["gold"] - points[0]["gold"]
    difference = bon_gain - gain
    noise = None
    if run.get("samples"):
        gold = np.asarray(gold_score(run["samples"]), dtype=float)
        n_ses = [p["gold_se"] for p in points if math.isfinite(p["gold_se"])]
        bon_se = max(n_ses) if n_ses else 0.0  # the widest of best-of-n's points: conservative
        if len(gold) > 1:
            ses = (gold.std(ddof=1) / math.sqrt(len(gold)), bon_se, points[0]["gold_se"],
                   start.get("gold_se", 0.0))  # fmt: skip
            noise = 2 * math.hypot(*(se for se in ses if math.isfinite(se)))
    if noise is not None and abs(difference) < noise:
        verdict = "about the same as"
    else:
        verdict = "higher" if difference > 0 else "lower"
    return {
        "method": run["method"],
        "kl": final["kl"],
        "gold": final["gold"],
        "gain": gain,
        "bon_n": at_kl["n"],
        "bon_kl": at_kl["kl"],
        "bon_gold": at_kl["gold"],
        "bon_gain": bon_gain,
        "equal_kl": equal_kl,
        "difference": difference,
        "noise": noise,
        "verdict": verdict,
    }


def comparison_sentence(row: dict, name: str) -> str:
    """One sentence (capitalised, no final full stop) for a row of :func:`compare_with_run`;
    ``name`` is how the method is called (``METHOD_NAMES[row["method"]]``)."""
    than = "than " if row["verdict"] in ("higher", "lower") else ""
    gap = ""
    if row["verdict"] == "about the same as":
        gap = (f" (a gap of {row['difference']:+.3f}, less than twice its standard error "
               f"of {row['noise'] / 2:.3f})")  # fmt: skip
    ends = f"{row['verdict']} {than}{name}'s {row['gain']:+.3f}{gap}"
    if row["equal_kl"]:
        return (f"At {name}'s final KL of {row['kl']:.2f} nats, best-of-{row['bon_n']:.0f} "
                f"gains {row['bon_gain']:+.3f} gold over its SFT start, {ends}")  # fmt: skip
    return (f"{name} ended at {row['kl']:.2f} nats, beyond best-of-n's reach here; "
            f"best-of-{row['bon_n']:.0f}, at only {row['bon_kl']:.2f} nats, gains "
            f"{row['bon_gain']:+.3f} gold over its SFT start, {ends}")  # fmt: skip


def summary_sentence(rows: list[dict]) -> str:
    """What rows of :func:`compare_with_run` say about Gao et al.'s finding that best-of-n gets
    more gold score per nat of KL than RL (one sentence, capitalised, no final full stop).

    Only a method whose gold gain is larger than best-of-n's *at equal KL* contradicts it; one
    that is larger only at a KL beyond best-of-n's largest ``n`` leaves the question open.
    """
    if not rows:
        raise ValueError("summary_sentence needs at least one row of compare_with_run.")
    beaten = [r for r in rows if r["verdict"] == "lower" and r["equal_kl"]]
    open_ = [r for r in rows if r["verdict"] == "lower" and not r["equal_kl"]]
    if beaten:
        return (f"Unlike in Gao et al.'s fits, {len(beaten)} of the {len(rows)} methods gained "
                "more gold than best-of-n at the same KL")  # fmt: skip
    if open_:
        return (f"No method beat best-of-n at equal KL, but {len(open_)} of the {len(rows)} "
                "ended with a larger gold gain at a KL beyond the largest n measured here, so "
                "for those this data cannot say which is more KL-efficient")  # fmt: skip
    return ("This is consistent with Gao et al.: no method gained more gold than best-of-n at "
            "the same or a larger KL")  # fmt: skip
