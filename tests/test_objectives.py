"""The PPO / PG losses and the advantages on hand-computed values."""

import math

import pytest
import torch

from b2diffurl.objectives import advantages_from_scores, pg_loss, policy_stats, ppo_loss


def test_ratio_one_gives_minus_the_mean_advantage():
    log_probs = torch.tensor([-1.0, -2.0, -3.0])
    advantages = torch.tensor([1.0, -2.0, 4.0])
    assert ppo_loss(log_probs, log_probs.clone(), advantages, 0.1).item() == pytest.approx(-1.0)
    assert pg_loss(log_probs, log_probs.clone(), advantages, 0.1).item() == pytest.approx(-1.0)


@pytest.mark.parametrize(
    "ratio,advantage,expected",
    [
        (1.5, 1.0, -1.1),   # positive advantage, ratio above 1 + eps: clipped to 1.1
        (0.5, 1.0, -0.5),   # positive advantage, ratio below 1 - eps: the unclipped (smaller) term wins
        (0.5, -1.0, 0.9),   # negative advantage, ratio below 1 - eps: clipped to 0.9
        (1.5, -1.0, 1.5),   # negative advantage, ratio above 1 + eps: unclipped (pessimistic) term
        (1.05, 2.0, -2.1),  # inside the clip range: plain -A * r
    ],
)
def test_clipping(ratio, advantage, expected):
    old = torch.tensor([0.0])
    loss = ppo_loss(torch.tensor([math.log(ratio)]), old, torch.tensor([advantage]), 0.1)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_pg_does_not_clip():
    loss = pg_loss(torch.tensor([math.log(1.5)]), torch.tensor([0.0]), torch.tensor([1.0]), 0.1)
    assert loss.item() == pytest.approx(-1.5)


def test_gradient_sign():
    log_probs = torch.zeros(2, requires_grad=True)
    ppo_loss(log_probs, torch.zeros(2), torch.tensor([1.0, -1.0]), 0.1).backward()
    # descending the loss raises the log-prob of the positive sample and lowers the negative one's
    assert log_probs.grad.tolist() == pytest.approx([-0.5, 0.5])


def test_no_gradient_through_a_clipped_ratio():
    log_probs = torch.tensor([math.log(1.5)], requires_grad=True)
    ppo_loss(log_probs, torch.tensor([0.0]), torch.tensor([1.0]), 0.1).backward()
    assert log_probs.grad.item() == 0.0


def test_advantages_clip_and_beta_weights():
    normalised = torch.tensor([7.0, 1.0, 0.0, -2.0, -9.0])
    out = advantages_from_scores(normalised, adv_clip_max=5.0, beta_pos=2.0, beta_neg=0.5)
    assert out.tolist() == pytest.approx([10.0, 2.0, 0.0, -1.0, -2.5])


def test_policy_stats():
    stats = policy_stats(torch.tensor([0.0, math.log(1.2)]), torch.zeros(2), 0.1)
    assert stats["approx_kl"] == pytest.approx(0.5 * (math.log(1.2) ** 2) / 2)
    assert stats["clipfrac"] == 0.5
    assert stats["max_ratio_deviation"] == pytest.approx(0.2, rel=1e-5)
