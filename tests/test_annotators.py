"""The simulated annotators (chapter 3): the guarded gold preference and Bradley–Terry noise."""

import math

import numpy as np
import pytest

from rlhf_lib.annotators import (
    DEGENERATE_SCORE,
    Annotator,
    AnnotatorPoolConfig,
    annotate,
    degeneracy_reasons,
    expected_agreement,
    gold_prefers,
    gold_score,
    make_annotators,
    measured_agreement,
    noise_ceiling,
)
from rlhf_lib.reviews import generate_reviews

GOOD = "I saw this film on Sunday. The plot was great. I would recommend it."


def test_generated_reviews_are_never_degenerate():
    texts = [r.text for r in generate_reviews(500, seed=3)]
    assert [t for t in texts if degeneracy_reasons(t)] == []
    scores = gold_score(texts)
    assert all(-1 <= s <= 1 for s in scores)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("The plot was great great great. I loved it.", "repeated word"),
        ("I saw this film on Sunday. The plot was great", "no sentence end"),
        ("Great wonderful excellent brilliant superb delightful.", "not a review"),
        ("Great film.", "too short"),
    ],
)
def test_guard_names_the_reason_and_never_prefers_degenerate_text(text, reason):
    assert reason in degeneracy_reasons(text)
    assert gold_score([text]) == [DEGENERATE_SCORE]
    worst = "I saw this film on Sunday. The plot was terrible. Overall, it was a waste of time."
    assert gold_prefers(worst, text) and not gold_prefers(text, worst)


def test_gold_score_refuses_a_bare_string():
    with pytest.raises(TypeError, match="list of texts"):
        gold_score(GOOD)


def test_annotator_probability_is_bradley_terry():
    a = Annotator("a", temperature=0.25)
    p = a.p_prefers_first(np.array([0.5, 0.0]), np.array([0.0, 0.5]))
    np.testing.assert_allclose(p, [1 / (1 + math.exp(-2)), 1 / (1 + math.exp(2))])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        Annotator("b", temperature=0)


def synthetic_gold(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)


@pytest.mark.parametrize("t1, t2", [(0.1, 0.3), (0.25, 0.25), (0.5, 1.0)])
def test_agreement_rate_matches_the_noise_parameters(t1, t2):
    ga, gb = synthetic_gold()
    first, second = Annotator("a", t1), Annotator("b", t2)
    expected = expected_agreement(ga, gb, first, second)
    rate, se = measured_agreement(ga, gb, first, second, seed=1)
    assert abs(rate - expected) < 4 * se, (rate, expected, se)


def test_noise_ceiling_matches_how_often_gold_agrees_with_labels():
    ga, gb = synthetic_gold(seed=2)
    pool = make_annotators(AnnotatorPoolConfig(temperatures=[0.1, 0.3, 0.6]))
    labels = annotate(ga, gb, pool, np.random.default_rng(0))
    agree = np.mean(labels["prefers_first"] == (ga > gb))
    se = math.sqrt(agree * (1 - agree) / ga.size)
    assert abs(agree - noise_ceiling(ga, gb, pool)) < 4 * se


def test_careful_annotators_agree_more():
    ga, gb = synthetic_gold(5000)
    careful = expected_agreement(ga, gb, Annotator("a", 0.05), Annotator("b", 0.05))
    hurried = expected_agreement(ga, gb, Annotator("a", 1.0), Annotator("b", 1.0))
    assert careful > 0.9 > hurried > 0.5
