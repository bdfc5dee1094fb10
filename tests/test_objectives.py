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


# ---------------------------------------------------------------- DPOK, DPO (paper Eq. 7, 8)

def test_gaussian_kl_by_hand():
    from b2diffurl.objectives import gaussian_kl

    mean = torch.tensor([[1.0, 2.0]]).view(1, 2, 1, 1)
    # ((1 - 0)^2 / (2 * 4) + (2 - 0)^2 / (2 * 4)) / 2 elements = (0.125 + 0.5) / 2
    assert gaussian_kl(mean, torch.zeros_like(mean), torch.full((1, 1, 1, 1), 2.0)).tolist() == pytest.approx([0.3125])
    assert gaussian_kl(mean, mean.clone(), torch.ones(1, 1, 1, 1)).tolist() == [0.0]


def test_dpok_loss_by_hand():
    from b2diffurl.objectives import dpok_loss

    log_probs = torch.tensor([-1.0, -2.0])
    advantages = torch.tensor([1.0, -2.0])
    kl = torch.tensor([0.2, 0.4])
    # ratio 1: PPO term = mean(-A) = 0.5; 10 * 0.5 + 0.01 * mean(kl) = 5 + 0.003
    assert dpok_loss(log_probs, log_probs.clone(), advantages, 0.1, kl, 10.0, 0.01).item() == pytest.approx(5.003)
    # clipping as in PPO: ratio 1.5 with A = 1 counts as 1.1
    loss = dpok_loss(torch.tensor([math.log(1.5)]), torch.tensor([0.0]), torch.tensor([1.0]), 0.1, torch.tensor([0.0]), 2.0, 1.0)
    assert loss.item() == pytest.approx(-2.2)


def test_dpo_loss_by_hand():
    from b2diffurl.objectives import dpo_loss

    # margin = (-1 - -1.5) - (-2 - -1.8) = 0.5 + 0.2 = 0.7; beta 2: -log sigmoid(1.4) = log(1 + e^-1.4)
    loss = dpo_loss(torch.tensor([-1.0]), torch.tensor([-1.5]), torch.tensor([-2.0]), torch.tensor([-1.8]), 2.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1.4)))
    # at the sampling policy every margin is 0: the loss is log 2, and its gradient raises log p(w), lowers log p(l)
    lw, ll = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    loss = dpo_loss(lw, torch.zeros(2), ll, torch.zeros(2), 0.1)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(2))
    assert lw.grad.tolist() == pytest.approx([-0.025, -0.025]) and ll.grad.tolist() == pytest.approx([0.025, 0.025])


def test_registry_objectives_match_the_pure_functions():
    from config.stage_process import get_config

    from b2diffurl.objectives import dpo_loss, dpok_loss, make_objective

    train = get_config().train
    lp, old = torch.tensor([-1.0, -1.2, -0.9, -1.1]), torch.tensor([-1.1, -1.0, -1.0, -1.0])
    adv, kl = torch.tensor([1.0, -1.0, 0.5, 2.0]), torch.tensor([0.1, 0.2, 0.3, 0.4])
    expected = {
        "ppo": ppo_loss(lp, old, adv, train.eps),
        "pg": pg_loss(lp, old, adv),
        "dpok": dpok_loss(lp, old, adv, train.eps, kl, 10.0, 0.01),
        "dpo": dpo_loss(lp[0::2], old[0::2], lp[1::2], old[1::2], 0.1),
    }
    for name, value in expected.items():
        train.algorithm = name
        objective = make_objective(train)
        assert objective.loss(lp, old, adv, kl).item() == pytest.approx(value.item()), name
        assert objective.needs_reference == (name == "dpok") and objective.paired == (name == "dpo")


def test_contrastive_pairs():
    from b2diffurl.objectives import contrastive_pairs

    groups = torch.tensor([5, 5, 2, 7, 2, 2, 9, 9, 9, 9])
    scores = torch.tensor([0.1, 0.9, 1.0, 0.0, -1.0, 3.0, 1.0, 2.0, 3.0, -3.0])
    w, l = contrastive_pairs(groups, scores)
    # group 2: (2, 4) paired in index order, 5 left over; group 5: 1 beats 0; group 7: one member, no pair;
    # group 9: (6, 7) and (8, 9)
    assert list(zip(w.tolist(), l.tolist())) == [(2, 4), (1, 0), (7, 6), (8, 9)]
    w, l = contrastive_pairs(torch.tensor([1, 1]), torch.tensor([0.5, 0.5]))
    assert (w.item(), l.item()) == (0, 1), "a tie goes to the lower index"
