"""The policy-gradient identities that book/ppo/ppo_method.md derives and checks by sampling.

On a two-token "language" (a softmax over K first tokens, one softmax per first token for the
second), every expectation is a finite sum, so the identities hold exactly: the score has mean
zero, the log-derivative trick gives the autograd gradient of the expected return, and neither
reward-to-go nor a state-dependent baseline changes that expectation. A seeded Monte-Carlo
estimate then lands within sampling noise of it, as on the page.
"""

import pytest
import torch

K = 4  # vocabulary size; a completion is y_1 then y_2


@pytest.fixture
def problem():
    generator = torch.Generator().manual_seed(0)
    theta = torch.randn(K + K * K, generator=generator, dtype=torch.float64)
    r_first = torch.randn(K, generator=generator, dtype=torch.float64)
    r_final = 1 + torch.randn(K, K, generator=generator, dtype=torch.float64)
    return theta, r_first, r_final


def log_policy(theta):
    """log π(y_1) [K] and log π(y_2 | y_1) [K, K]."""
    return theta[:K].log_softmax(0), theta[K:].view(K, K).log_softmax(1)


def expected_return(theta, r_first, r_final):
    p1, p2 = (logp.exp() for logp in log_policy(theta))
    return (p1 * (r_first + (p2 * r_final).sum(1))).sum()


def exact_gradient(theta, r_first, r_final):
    theta = theta.clone().requires_grad_(True)
    return torch.autograd.grad(expected_return(theta, r_first, r_final), theta)[0]


def scores(theta):
    """∇θ log π of every first token [K, P] and of every (y_1, y_2) second token [K*K, P]."""
    jac = torch.autograd.functional.jacobian(
        lambda th: torch.cat([logp.flatten() for logp in log_policy(th)]), theta
    )
    return jac[:K], jac[K:]


def estimators(theta, r_first, r_final, baseline_first, baseline_second):
    """The single-completion estimates of ∇J for every completion: three tensors [K, K, P]."""
    score1, score2 = scores(theta)
    g1 = score1[:, None, :].expand(K, K, -1)
    g2 = score2.view(K, K, -1)
    G1 = (r_first[:, None] + r_final)[..., None]  # R(τ): the return from the first step
    G2 = r_final[..., None]  # the reward-to-go from the second step
    b1 = baseline_first  # a number: the first state is the same for every completion
    b2 = baseline_second[:, None, None]  # one number per first token (the second state)
    return {
        "full": G1 * (g1 + g2),
        "reward_to_go": G1 * g1 + G2 * g2,
        "baseline": (G1 - b1) * g1 + (G2 - b2) * g2,
    }


def completion_probabilities(theta):
    p1, p2 = (logp.exp() for logp in log_policy(theta))
    return p1[:, None] * p2  # [K, K]


def test_the_score_has_mean_zero_in_every_state(problem):
    theta, _, _ = problem
    score1, score2 = scores(theta)
    p1, p2 = (logp.exp() for logp in log_policy(theta))
    assert (p1 @ score1).abs().max() < 1e-14
    for first in range(K):
        rows = score2[first * K : (first + 1) * K]
        assert (p2[first] @ rows).abs().max() < 1e-14


def test_one_step_log_derivative_trick_equals_autograd():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(6, generator=generator, dtype=torch.float64)
    reward = torch.randn(6, generator=generator, dtype=torch.float64)
    z = logits.clone().requires_grad_(True)
    exact = torch.autograd.grad(torch.softmax(z, 0) @ reward, z)[0]
    score = torch.autograd.functional.jacobian(lambda x: x.log_softmax(0), logits)  # [6, 6]
    probs = logits.softmax(0)
    assert torch.allclose(probs @ (reward[:, None] * score), exact, rtol=0, atol=1e-12)
    for baseline in (-3.0, 0.5, float(probs @ reward)):
        with_baseline = probs @ ((reward - baseline)[:, None] * score)
        assert torch.allclose(with_baseline, exact, rtol=0, atol=1e-12)


def test_every_estimator_has_the_exact_gradient_as_its_expectation(problem):
    theta, r_first, r_final = problem
    exact = exact_gradient(theta, r_first, r_final)
    weights = completion_probabilities(theta)[..., None]
    p2 = log_policy(theta)[1].exp()
    values = (expected_return(theta, r_first, r_final), (p2 * r_final).sum(1))
    arbitrary = (torch.tensor(-2.0, dtype=torch.float64), torch.linspace(-5, 5, K).double())
    for baselines in (values, arbitrary):
        for name, estimate in estimators(theta, r_first, r_final, *baselines).items():
            expectation = (weights * estimate).sum((0, 1))
            assert torch.allclose(expectation, exact, rtol=0, atol=1e-12), name


def test_the_value_baseline_lowers_the_variance_of_an_offset_reward(problem):
    theta, r_first, r_final = problem
    exact = exact_gradient(theta, r_first, r_final)
    weights = completion_probabilities(theta)
    p2 = log_policy(theta)[1].exp()
    values = (expected_return(theta, r_first, r_final), (p2 * r_final).sum(1))
    estimates = estimators(theta, r_first + 5.0, r_final + 5.0, values[0] + 10.0, values[1] + 5.0)
    variance = {
        name: (weights * ((g - exact) ** 2).sum(-1)).sum().item() for name, g in estimates.items()
    }
    # A common offset of the rewards leaves the gradient alone but adds noise to each sample;
    # the value baseline removes the offset exactly.
    assert variance["baseline"] < variance["reward_to_go"] / 10
    assert variance["baseline"] < variance["full"] / 10


def test_a_seeded_monte_carlo_estimate_is_within_sampling_noise(problem):
    theta, r_first, r_final = problem
    exact = exact_gradient(theta, r_first, r_final)
    p1, p2 = (logp.exp() for logp in log_policy(theta))
    values = (expected_return(theta, r_first, r_final), (p2 * r_final).sum(1))
    per_completion = estimators(theta, r_first, r_final, *values)
    generator = torch.Generator().manual_seed(2)
    n = 50_000
    y1 = torch.multinomial(p1, n, replacement=True, generator=generator)
    y2 = torch.multinomial(p2[y1], 1, generator=generator)[:, 0]
    for name, estimate in per_completion.items():
        samples = estimate[y1, y2]  # [n, P]
        standard_error = (((samples - exact) ** 2).sum(1).mean() / n).sqrt()
        error = (samples.mean(0) - exact).norm()
        assert error < 4 * standard_error, name
