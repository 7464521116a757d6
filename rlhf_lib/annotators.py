"""Simulated annotators: a hidden gold preference and noisy judges (chapter 3, "How RLHF works").

Real RLHF asks people which of two completions they prefer. People disagree with each other
(InstructGPT's labelers agreed on about 73% of comparisons, Ouyang et al. 2022) and nobody can
write down what they "really" want. The miniature world replaces them with two pieces:

1. **The gold preference** (:func:`gold_score`): VADER's compound sentiment (Hutto & Gilbert,
   2014) of the whole review, in [-1, 1], *guarded* so that degenerate text (a word repeated,
   no sentence end, not a review at all) scores :data:`DEGENERATE_SCORE`, below every real review.
   Without the guard a policy could win by writing "great great great great": VADER alone would
   love it. The gold score is hidden from training: the reward model only sees annotators'
   labels, and the book uses the gold score only to *measure* what the pipeline did.
2. **Annotators** (:class:`Annotator`): each one compares two texts with Bradley–Terry noise,
   ``P(prefers a) = sigmoid((gold(a) - gold(b)) / temperature)``. A low temperature is a careful
   annotator; a high one flips a coin more often. Two annotators agree on a pair with probability
   ``p₁p₂ + (1 - p₁)(1 - p₂)``, which :func:`expected_agreement` computes and
   :func:`measured_agreement` checks against.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from rlhf_lib import checks
from rlhf_lib.reviews import ASPECTS, vader_compound

# Below VADER's range [-1, 1]: a degenerate text loses to every real review, however negative.
DEGENERATE_SCORE = -2.0
# Words that make a text "about a film". A review of our world always names one of these.
TOPIC_WORDS = {"movie", "film", *(w for a in ASPECTS for w in a.split())} - {"first", "lead"}
SENTENCE_END = (".", "!", "?")
MIN_WORDS = 4  # "Great." is not a review


def degeneracy_reasons(text: str) -> list[str]:
    """Why ``text`` is not a proper review (an empty list if it is one).

    The checks are deliberately simple and readable; each one closes a shortcut a policy
    optimising raw VADER would otherwise find (chapter 5 shows it trying).
    """
    if not isinstance(text, str):
        raise TypeError(f"degeneracy_reasons takes one text (a string), got {type(text).__name__}.")
    reasons = []
    words = re.findall(r"[a-z']+", text.lower())
    if len(words) < MIN_WORDS:
        reasons.append("too short")
    if any(a == b for a, b in zip(words, words[1:], strict=False)):
        reasons.append("repeated word")  # "great great": fluent text never doubles a word here
    elif len(words) >= 12 and len(set(words)) / len(words) < 0.4:
        reasons.append("repetitive")  # the same few words over and over
    if not text.rstrip().endswith(SENTENCE_END):
        reasons.append("no sentence end")
    if not TOPIC_WORDS.intersection(words):
        reasons.append("not a review")
    return reasons


def is_degenerate(text: str) -> bool:
    """True if the gold preference refuses ``text`` (see :func:`degeneracy_reasons`)."""
    return bool(degeneracy_reasons(text))


def gold_score(texts: list[str]) -> list[float]:
    """The hidden gold preference of each text: guarded VADER compound sentiment.

    A proper review scores its VADER compound value in [-1, 1]; a degenerate one scores
    :data:`DEGENERATE_SCORE` (-2), so it is never preferred over a proper review.
    """
    texts = checks.require_texts(texts, "gold_score")  # once: a generator is read only once
    raw = vader_compound(texts)
    return [DEGENERATE_SCORE if is_degenerate(t) else s for t, s in zip(texts, raw, strict=True)]


def gold_prefers(text_a: str, text_b: str) -> bool:
    """True if the gold preference ranks ``text_a`` above ``text_b`` (ties go to ``text_b``)."""
    a, b = gold_score([text_a, text_b])
    return a > b


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


@dataclass
class Annotator:
    """One simulated labeler: Bradley–Terry noise around the gold preference."""

    name: str
    temperature: float  # gold-score units; ~0.1 is careful, ~1 is close to a coin flip

    def __post_init__(self):
        if not (checks.is_finite_number(self.temperature) and self.temperature > 0):
            raise ValueError(
                f"Annotator.temperature must be > 0 and finite, got {self.temperature} "
                f"({self.name}); a large value such as 10 is close to a coin flip."
            )

    def p_prefers_first(self, gold_a, gold_b) -> np.ndarray:
        """``P(this annotator prefers a over b) = sigmoid((gold_a - gold_b) / temperature)``."""
        return sigmoid((np.asarray(gold_a) - np.asarray(gold_b)) / self.temperature)

    def label(self, gold_a, gold_b, rng: np.random.Generator) -> np.ndarray:
        """Sampled choices: ``True`` where the annotator prefers ``a``."""
        p = self.p_prefers_first(gold_a, gold_b)
        return rng.random(p.shape) < p


@dataclass
class AnnotatorPoolConfig:
    """The annotator team of the miniature world; chapter 3 measures how often they agree."""

    # Spread of carefulness: real teams mix careful and hurried labelers. The values were chosen
    # so that two annotators agree on roughly 3 pairs in 4 of SFT samples, as InstructGPT's did.
    temperatures: list[float] = field(default_factory=lambda: [0.1, 0.15, 0.2, 0.25, 0.3])
    seed: int = 0

    def __post_init__(self):
        checks.number_list(self, "temperatures", low=0, low_open=True)
        checks.ints(self, "seed", minimum=0)


def make_annotators(config: AnnotatorPoolConfig | None = None) -> list[Annotator]:
    """The annotators described by ``config`` (named ``annotator_0``, ``annotator_1``, ...)."""
    config = config or AnnotatorPoolConfig()
    checks.argument("make_annotators", "config", config, checks.instance_of,
                    cls=AnnotatorPoolConfig)  # fmt: skip
    if not config.temperatures:
        raise ValueError("An annotator pool needs at least one temperature.")
    return [Annotator(f"annotator_{i}", t) for i, t in enumerate(config.temperatures)]


def annotate(gold_a, gold_b, annotators: list[Annotator], rng: np.random.Generator) -> dict:
    """Give each pair to one annotator picked at random and record their choice.

    Returns arrays ``annotator`` (index into ``annotators``), ``prefers_first`` (the sampled
    choice) and ``p_first`` (that annotator's probability of preferring the first text).
    ``rng`` is a ``numpy.random.Generator`` or an int seed.
    """
    gold_a, gold_b = _gold_pair(gold_a, gold_b, "annotate", allow_empty=True)
    _check_pool(annotators, "annotate")
    if checks.is_int(rng):
        rng = np.random.default_rng(rng)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"annotate: rng must be a numpy.random.Generator or an int seed, got {rng!r}: pass "
            "np.random.default_rng(seed), so the labels are the same on every run."
        )
    who = rng.integers(len(annotators), size=gold_a.shape)
    temps = np.array([a.temperature for a in annotators])[who]
    p = sigmoid((gold_a - gold_b) / temps)
    return {"annotator": who, "prefers_first": rng.random(p.shape) < p, "p_first": p}


def _gold_pair(gold_a, gold_b, where: str, allow_empty=False) -> tuple[np.ndarray, np.ndarray]:
    """Two arrays of finite gold scores of one shape (one pair at least unless ``allow_empty``):
    a NaN would make every comparison False (the second text always preferred), and no pairs a
    mean of nothing."""
    gold_a = checks.finite_numbers(gold_a, f"{where}: gold_a")
    gold_b = checks.finite_numbers(gold_b, f"{where}: gold_b")
    if gold_a.shape != gold_b.shape:
        raise ValueError(f"gold_a and gold_b differ in shape: {gold_a.shape} vs {gold_b.shape}.")
    if gold_a.size == 0 and not allow_empty:
        raise ValueError(f"{where} needs at least one pair of gold scores; got none.")
    return gold_a, gold_b


def _check_pool(annotators, where: str) -> None:
    if not annotators:
        raise ValueError(f"{where} needs at least one annotator: pass make_annotators().")


def expected_agreement(gold_a, gold_b, first: Annotator, second: Annotator) -> float:
    """The probability that two annotators make the same choice, averaged over the pairs:
    ``mean(p₁p₂ + (1 - p₁)(1 - p₂))`` (their noise is independent)."""
    gold_a, gold_b = _gold_pair(gold_a, gold_b, "expected_agreement")
    p1 = first.p_prefers_first(gold_a, gold_b)
    p2 = second.p_prefers_first(gold_a, gold_b)
    return float(np.mean(p1 * p2 + (1 - p1) * (1 - p2)))


def measured_agreement(gold_a, gold_b, first: Annotator, second: Annotator, seed: int = 0):
    """Let both annotators label every pair; return ``(agreement rate, its standard error)``."""
    gold_a, gold_b = _gold_pair(gold_a, gold_b, "measured_agreement")
    rng = np.random.default_rng(seed)
    a = first.label(gold_a, gold_b, rng)
    b = second.label(gold_a, gold_b, rng)
    rate = float(np.mean(a == b))
    return rate, math.sqrt(rate * (1 - rate) / max(1, a.size))


def agreement_matrix(gold_a, gold_b, annotators: list[Annotator], seed: int = 0) -> np.ndarray:
    """Measured agreement of every pair of annotators on the same comparisons (diagonal: 1)."""
    n = len(annotators)
    out = np.ones((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            rate, _ = measured_agreement(
                gold_a, gold_b, annotators[i], annotators[j], seed + i * n + j
            )
            out[i, j] = out[j, i] = rate
    return out


def noise_ceiling(gold_a, gold_b, annotators: list[Annotator]) -> float:
    """The expected accuracy of the gold preference itself against the pool's noisy labels.

    For one pair labelled by annotator k, gold agrees with the label with probability
    ``max(p, 1 - p)`` where ``p = sigmoid(|Δgold| / T_k)``; the pool picks k uniformly. No reward
    model can beat this in expectation, because the labels carry no information beyond gold.
    """
    gold_a, gold_b = _gold_pair(gold_a, gold_b, "noise_ceiling")
    _check_pool(annotators, "noise_ceiling")
    diff = np.abs(gold_a - gold_b)
    per_annotator = [np.mean(sigmoid(diff / a.temperature)) for a in annotators]
    return float(np.mean(per_annotator))
