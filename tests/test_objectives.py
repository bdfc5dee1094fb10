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
        (1.5, 1.0, -1.1),  # positive advantage, ratio above 1 + eps: clipped to 1.1
        (0.5, 1.0, -0.5),  # positive advantage, ratio below 1 - eps: the unclipped (smaller) term wins
        (0.5, -1.0, 0.9),  # negative advantage, ratio below 1 - eps: clipped to 0.9
        (1.5, -1.0, 1.5),  # negative advantage, ratio above 1 + eps: unclipped (pessimistic) term
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
    # ratio 1: policy term = mean(-A) = 0.5; 10 * 0.5 + 0.01 * mean(kl) = 5 + 0.003 (clamp or PPO alike)
    assert dpok_loss(log_probs, log_probs.clone(), advantages, 0.1, kl, 10.0, 0.01).item() == pytest.approx(5.003)
    assert dpok_loss(log_probs, log_probs.clone(), advantages, 0.1, kl, 1000.0, 0.1, 1e-4).item() == pytest.approx(
        500.03
    )
    # ratio_clip 0: clipping as in PPO: ratio 1.5 with A = 1 counts as 1.1
    loss = dpok_loss(
        torch.tensor([math.log(1.5)]), torch.tensor([0.0]), torch.tensor([1.0]), 0.1, torch.tensor([0.0]), 2.0, 1.0
    )
    assert loss.item() == pytest.approx(-2.2)


def test_dpok_hard_clamp_as_released():
    """DPOK's released policy term clamps the ratio to 1 +- c (1e-4), for either sign of A, and passes no
    gradient once the ratio has left the range; PPO would keep the pessimistic unclipped term."""
    from b2diffurl.objectives import clamped_ratio_loss, dpok_loss

    log_probs = torch.tensor([math.log(1.5), math.log(0.5), math.log(1.00005)], requires_grad=True)
    advantages = torch.tensor([1.0, -1.0, 2.0])
    loss = clamped_ratio_loss(log_probs, torch.zeros(3), advantages, 1e-4)
    # mean(-1 * 1.0001, +1 * 0.9999, -2 * 1.00005) / 3
    assert loss.item() == pytest.approx((-1.0001 + 0.9999 - 2.0001) / 3, rel=1e-6)
    loss.backward()
    assert log_probs.grad[:2].tolist() == [0.0, 0.0], "outside 1 +- c: no gradient"
    assert log_probs.grad[2].item() == pytest.approx(-2 * 1.00005 / 3, rel=1e-5), "inside: -A r / M"
    # the clamp (and the weights) reach dpok_loss: 1000 * that term + 0.1 * mean(kl)
    kl = torch.tensor([0.3, 0.0, 0.6])
    assert dpok_loss(
        log_probs.detach(), torch.zeros(3), advantages, 0.1, kl, 1000.0, 0.1, 1e-4
    ).item() == pytest.approx(1000 * loss.item() + 0.1 * 0.3, rel=1e-6)
    # ratio 0.5 with A = -1: PPO's pessimistic term is 0.9 (clipped), the release's clamp 0.9999
    assert clamped_ratio_loss(
        torch.tensor([math.log(0.5)]), torch.zeros(1), torch.tensor([-1.0]), 1e-4
    ).item() == pytest.approx(0.9999)
    assert ppo_loss(torch.tensor([math.log(0.5)]), torch.zeros(1), torch.tensor([-1.0]), 0.1).item() == pytest.approx(
        0.9
    )


def test_dpo_loss_by_hand():
    from b2diffurl.objectives import dpo_loss

    # margin = (-1 - -1.5) - (-2 - -1.8) = 0.5 + 0.2 = 0.7; beta 2: -log sigmoid(1.4) = log(1 + e^-1.4)
    loss = dpo_loss(torch.tensor([-1.0]), torch.tensor([-1.5]), torch.tensor([-2.0]), torch.tensor([-1.8]), 2.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1.4)))
    # at the reference every margin is 0: the loss is log 2, and its gradient raises log p(w), lowers log p(l)
    lw, ll = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    loss = dpo_loss(lw, torch.zeros(2), ll, torch.zeros(2), 0.1)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(2))
    assert lw.grad.tolist() == pytest.approx([-0.025, -0.025]) and ll.grad.tolist() == pytest.approx([0.025, 0.025])


def test_dpo_ratio_clamp_binds_where_it_should():
    """D3PO clamps each member's ratio p / p_ref to [1 - eps, 1 + eps] (eps 0.1) before the log."""
    from b2diffurl.objectives import dpo_loss, dpo_margin

    reference = torch.zeros(3)
    log_w = torch.tensor(
        [0.5, 0.05, -0.5], requires_grad=True
    )  # ratios e^0.5 (clamped to 1.1), e^0.05 (inside), e^-0.5 (to 0.9)
    log_l = torch.tensor([-0.5, -0.02, 0.01], requires_grad=True)
    margin = dpo_margin(log_w, reference, log_l, reference, 0.1)
    expected = [math.log(1.1) - math.log(0.9), 0.05 - -0.02, math.log(0.9) - 0.01]
    assert margin.tolist() == pytest.approx(expected, rel=1e-6)
    assert dpo_margin(log_w, reference, log_l, reference, 0.0).tolist() == pytest.approx([1.0, 0.07, -0.51]), (
        "0: no clamp"
    )
    dpo_loss(log_w, reference, log_l, reference, 0.1, 0.1).backward()
    assert log_w.grad[0].item() == 0.0 and log_w.grad[2].item() == 0.0 and log_l.grad[0].item() == 0.0, (
        "clamped: no gradient"
    )
    assert log_w.grad[1].item() < 0 < log_l.grad[1].item() and log_l.grad[2].item() > 0


def test_registry_objectives_match_the_pure_functions():
    from b2diffurl.objectives import Reference, dpo_loss, dpok_loss, make_objective
    from config.stage_process import get_config

    train = get_config().train
    assert (train.dpok_reward_weight, train.dpok_kl_weight, train.dpok_ratio_clip) == (1000.0, 0.1, 1e-4), (
        "DPOK's multi-prompt release"
    )
    assert (train.dpo_reference, train.dpo_ratio_clip, train.dpo_beta) == ("base", 0.1, 0.1), "D3PO's release"
    lp, old = torch.tensor([-1.0, -1.2, -0.9, -1.1]), torch.tensor([-1.1, -1.0, -1.0, -1.0])
    adv, kl = torch.tensor([1.0, -1.0, 0.5, 2.0]), torch.tensor([0.1, 0.2, 0.3, 0.4])
    reference = Reference(log_probs=torch.tensor([-1.05, -1.1, -0.95, -1.3]), kl=kl)
    expected = {
        "ppo": ppo_loss(lp, old, adv, train.eps),
        "pg": pg_loss(lp, old, adv),
        "dpok": dpok_loss(lp, old, adv, train.eps, kl, 1000.0, 0.1, 1e-4),
        "dpo": dpo_loss(lp[0::2], reference.log_probs[0::2], lp[1::2], reference.log_probs[1::2], 0.1, 0.1),
    }
    for name, value in expected.items():
        train.algorithm = name
        objective = make_objective(train)
        assert objective.loss(lp, old, adv, reference).item() == pytest.approx(value.item()), name
        assert objective.needs_reference == (name in ("dpok", "dpo")) and objective.paired == (name == "dpo")
        assert objective.clip_range == {"dpok": 1e-4, "dpo": 0.1}.get(name, train.eps), "the clip fraction's range"
    train.dpo_reference, train.dpo_ratio_clip = "sampling", 0.0  # the sampling-time policy as reference, no clamp
    objective = make_objective(train)
    assert not objective.needs_reference
    assert objective.loss(lp, old, adv, None).item() == pytest.approx(
        dpo_loss(lp[0::2], old[0::2], lp[1::2], old[1::2], 0.1).item()
    )
    train.dpo_reference = "frozen"
    with pytest.raises(ValueError, match="train.dpo_reference='frozen'"):
        make_objective(train)


def test_contrastive_pairs():
    from b2diffurl.objectives import contrastive_pairs

    groups = torch.tensor([5, 5, 2, 7, 2, 2, 9, 9, 9, 9])
    scores = torch.tensor([0.1, 0.9, 1.0, 0.0, -1.0, 3.0, 1.0, 2.0, 3.0, -3.0])
    winners, losers = contrastive_pairs(groups, scores)
    # group 2: (2, 4) paired in index order, 5 left over; group 5: 1 beats 0; group 7: one member, no pair;
    # group 9: (6, 7) and (8, 9)
    assert list(zip(winners.tolist(), losers.tolist())) == [(2, 4), (1, 0), (7, 6), (8, 9)]
    winners, losers = contrastive_pairs(torch.tensor([1, 1]), torch.tensor([0.5, 0.5]))
    assert (winners.item(), losers.item()) == (0, 1), "a tie goes to the lower index"
