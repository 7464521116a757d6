"""PPO's numerical core, each checked two ways: GAE loop vs matrix, KL estimators vs exact KL."""

import math

import pytest
import torch

from rlhf_lib.ppo import compute_gae, compute_gae_loop, kl_estimate, masked_mean, whiten
from rlhf_lib.reward import bradley_terry_loss


def random_batch(B=6, T=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(B, T, generator=g, dtype=torch.float64)
    values = torch.randn(B, T, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).double()  # right padding
    return rewards, values, mask


@pytest.mark.parametrize("gamma, lam", [(1.0, 0.95), (0.99, 0.95), (1.0, 1.0), (0.9, 0.0)])
def test_gae_matrix_equals_loop(gamma, lam):
    rewards, values, mask = random_batch()
    adv, ret = compute_gae(rewards, values, gamma, lam, mask)
    adv_loop, ret_loop = compute_gae_loop(rewards, values, gamma, lam, mask)
    torch.testing.assert_close(adv, adv_loop)
    torch.testing.assert_close(ret, ret_loop)
    assert torch.all(adv[mask == 0] == 0)


def test_gae_equals_loop_with_holes_in_the_mask():
    rewards, values, _ = random_batch(seed=1)
    mask = (torch.rand(values.shape, generator=torch.Generator().manual_seed(2)) > 0.3).double()
    a, _ = compute_gae(rewards, values, 0.97, 0.9, mask)
    b, _ = compute_gae_loop(rewards, values, 0.97, 0.9, mask)
    torch.testing.assert_close(a, b)


def test_gae_by_hand():
    # T = 2, no padding: δ1 = r1 - V1, δ0 = r0 + γV1 - V0, A1 = δ1, A0 = δ0 + γλδ1.
    r, v, g, lam = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, 0.25]]), 0.9, 0.8
    d1, d0 = 2.0 - 0.25, 1.0 + g * 0.25 - 0.5
    adv, ret = compute_gae(r, v, g, lam)
    torch.testing.assert_close(adv, torch.tensor([[d0 + g * lam * d1, d1]]))
    torch.testing.assert_close(ret, adv + v)


def test_gae_with_gamma_lambda_one_is_return_minus_value():
    rewards, values, mask = random_batch(seed=3)
    adv, ret = compute_gae(rewards, values, 1.0, 1.0, mask)
    reward_to_go = (rewards * mask).flip(1).cumsum(1).flip(1)
    torch.testing.assert_close(adv, (reward_to_go - values) * mask)


@pytest.mark.parametrize("bad", [{"gamma": 1.5}, {"lam": -0.1}])
def test_gae_rejects_bad_coefficients(bad):
    rewards, values, mask = random_batch()
    kwargs = {"gamma": 0.99, "lam": 0.95} | bad
    with pytest.raises(ValueError, match="must lie in"):
        compute_gae(rewards, values, mask=mask, **kwargs)


def test_gae_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same"):
        compute_gae(torch.zeros(2, 3), torch.zeros(2, 4), 1.0, 0.95)


def test_kl_estimators_against_exact_kl():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(20, generator=g, dtype=torch.float64), 0)
    q = torch.softmax(torch.randn(20, generator=g, dtype=torch.float64), 0)
    exact = torch.sum(p * (p.log() - q.log()))
    samples = torch.multinomial(p, 400_000, replacement=True, generator=g)
    logp, logq = p.log()[samples][None], q.log()[samples][None]
    k1, k2, k3 = (kl_estimate(logp, logq, kind) for kind in ("k1", "k2", "k3"))
    assert abs(k1.mean() - exact) < 0.01 and abs(k3.mean() - exact) < 0.01  # unbiased
    assert (k1 < 0).any()  # single k1 values can be negative, the mean is not
    assert (k2 >= 0).all() and (k3 >= 0).all()


def test_kl_of_identical_policies_is_zero():
    logp = torch.log_softmax(torch.randn(3, 5), -1)
    for kind in ("k1", "k2", "k3"):
        assert torch.all(kl_estimate(logp, logp, kind) == 0)
    with pytest.raises(ValueError, match="kind"):
        kl_estimate(logp, logp, "k4")


def test_whiten():
    x = torch.randn(4, 7, dtype=torch.float64) * 3 + 5
    w = whiten(x)
    assert abs(w.mean()) < 1e-9 and abs(w.var(unbiased=False) - 1) < 1e-6
    torch.testing.assert_close(whiten(x, shift_mean=False).mean(), x.mean())
    _, _, mask = random_batch(B=4, T=7)
    wm = whiten(x, mask=mask)
    assert abs(masked_mean(wm, mask)) < 1e-9
    assert abs(masked_mean(wm**2, mask) - 1) < 1e-6
    assert torch.all(wm[mask == 0] == 0)
    with pytest.raises(ValueError, match="no positions"):
        whiten(x, mask=torch.zeros_like(x))


def test_bradley_terry_loss_against_its_formula():
    rc, rr = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 0.0, 0.5])
    by_hand = sum(-math.log(1 / (1 + math.exp(-(c - r)))) for c, r in zip(rc, rr, strict=True)) / 3
    assert bradley_terry_loss(rc, rr).item() == pytest.approx(by_hand, rel=1e-6)
    margin = torch.tensor([0.5, 0.0, 1.0])
    by_hand_margin = (
        sum(math.log1p(math.exp(-(c - r - m))) for c, r, m in zip(rc, rr, margin, strict=True)) / 3
    )
    assert bradley_terry_loss(rc, rr, margin).item() == pytest.approx(by_hand_margin, rel=1e-6)
    centred = bradley_terry_loss(rc, rr, center_rewards_coefficient=0.01)
    extra = 0.01 * torch.mean((rc + rr) ** 2)
    assert centred.item() == pytest.approx((bradley_terry_loss(rc, rr) + extra).item())
    # Equal rewards: the model is indifferent, P(chosen) = 1/2, loss = log 2.
    assert bradley_terry_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(math.log(2))


def test_bradley_terry_loss_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        bradley_terry_loss(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="at least one pair"):
        bradley_terry_loss(torch.zeros(0), torch.zeros(0))


def test_clipped_policy_loss_has_no_gradient_outside_the_clip_region():
    from rlhf_lib.ppo import clipped_policy_loss

    old = torch.zeros(1, 4, dtype=torch.float64)
    # ratios 1.5 and 0.5 lie outside [0.8, 1.2]; 1.1 and 0.9 inside.
    new = torch.log(torch.tensor([[1.5, 0.5, 1.1, 0.9]], dtype=torch.float64)).requires_grad_()
    advantages = torch.tensor([[1.0, -1.0, 1.0, -1.0]], dtype=torch.float64)
    mask = torch.ones_like(old)
    loss, stats = clipped_policy_loss(new, old, advantages, mask, cliprange=0.2)
    loss.backward()
    # Outside the region in the direction the advantage favours: flat, zero gradient.
    assert new.grad[0, 0] == 0 and new.grad[0, 1] == 0
    # Inside: the ordinary policy-gradient term -A·ρ / n.
    torch.testing.assert_close(new.grad[0, 2:], -advantages[0, 2:] * torch.tensor([1.1, 0.9]) / 4)
    assert stats["clipfrac"] == 0.5
    # The clip is one-sided: a ratio moved *against* the advantage keeps its gradient.
    new2 = torch.log(torch.tensor([[0.5]], dtype=torch.float64)).requires_grad_()
    loss2, _ = clipped_policy_loss(new2, old[:, :1], torch.ones(1, 1), mask[:, :1], 0.2)
    loss2.backward()
    assert new2.grad[0, 0] != 0


def test_clipped_value_loss_by_hand():
    from rlhf_lib.ppo import clipped_value_loss

    old, ret, mask = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]]), torch.ones(1, 2)
    new = torch.tensor([[0.5, 0.1]])
    loss, clipfrac = clipped_value_loss(new, old, ret, mask, cliprange_value=0.2)
    # token 1: clipped to 0.2 -> error 0.64 > 0.25; token 2: inside, error 0.81
    assert loss.item() == pytest.approx(0.5 * (0.64 + 0.81) / 2)
    assert clipfrac == 0.5


def _padded_with(value):
    """A batch with right padding, and the same batch with ``value`` at every padded position."""
    rewards, values, mask = random_batch(seed=4)
    pad = mask == 0
    assert pad.any()
    return (rewards, values, mask), (rewards.masked_fill(pad, value),
                                     values.masked_fill(pad, value), mask)  # fmt: skip


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_masked_positions_contribute_nothing_even_when_not_finite(value):
    (rewards, values, mask), (dirty_rewards, dirty_values, _) = _padded_with(value)
    real = mask.bool()
    torch.testing.assert_close(masked_mean(dirty_values, mask), masked_mean(values, mask))
    torch.testing.assert_close(whiten(dirty_values, mask=mask), whiten(values, mask=mask))
    clean, _ = compute_gae(rewards, values, 0.99, 0.95, mask)
    for gae in (compute_gae, compute_gae_loop):  # loop and matrix: the same clean result
        adv, ret = gae(dirty_rewards, dirty_values, 0.99, 0.95, mask)
        torch.testing.assert_close(adv, clean)
        torch.testing.assert_close(ret[real], (clean + values)[real])


def test_clipped_policy_loss_ignores_minus_inf_log_probs_at_padding():
    from rlhf_lib.ppo import clipped_policy_loss

    _, _, mask = random_batch(seed=5)
    g = torch.Generator().manual_seed(6)
    old = -torch.rand(mask.shape, generator=g, dtype=torch.float64)
    advantages = torch.randn(mask.shape, generator=g, dtype=torch.float64)
    grads = []
    for padding in (0.0, -math.inf):  # log-probs of padding tokens are often -inf
        new = (old + 0.1).masked_fill(mask == 0, padding).requires_grad_()
        loss, stats = clipped_policy_loss(new, old.masked_fill(mask == 0, padding), advantages,
                                          mask, 0.2)  # fmt: skip
        loss.backward()
        grads.append(new.grad)
        assert torch.isfinite(loss) and all(math.isfinite(v) for v in stats.values())
    torch.testing.assert_close(grads[0], grads[1])  # finite, and 0 at the padding
    assert torch.all(grads[1][mask == 0] == 0)


def test_advantages_may_be_one_per_sequence_as_a_column():
    from rlhf_lib.ppo import clipped_policy_loss

    lp, mask = torch.randn(3, 4, dtype=torch.float64), torch.ones(3, 4, dtype=torch.float64)
    per_sequence = torch.tensor([[1.0], [-1.0], [0.5]], dtype=torch.float64)
    column, _ = clipped_policy_loss(lp, lp - 0.1, per_sequence, mask, 0.2)
    expanded, _ = clipped_policy_loss(lp, lp - 0.1, per_sequence.expand(3, 4), mask, 0.2)
    torch.testing.assert_close(column, expanded)
