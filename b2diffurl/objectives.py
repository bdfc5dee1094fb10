"""Policy objectives on (trajectory, interval step) pairs: pure tensor functions, plus the registry.

Tensors are per pair, shape [M]: ``log_probs`` under the current policy, ``old_log_probs`` recorded
at sampling, ``advantages`` from the normalised scores (:func:`advantages_from_scores`). The four
algorithms of the paper (Sec. 4.5, App. D.1; DESIGN.md section 2):

- ``ppo``  (default, Eq. 6 with clipping)   mean(max(-A r, -A clip(r, 1 - eps, 1 + eps))), r = p / p_old
- ``pg``   (App. D.1, no clipping)          mean(-A r)
- ``dpok`` (Eq. 7)                          reward_weight * ppo + kl_weight * mean(KL(p_theta || p_base))
- ``dpo``  (Eq. 8, on contrastive pairs)    mean(-log sigmoid(beta * [(log p(w) - log p_old(w)) - (log p(l) - log p_old(l))]))

Value functions are not used: reward normalisation and the branch comparison take their place
(paper App. D.2).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def advantages_from_scores(normalised, adv_clip_max, beta_pos, beta_neg):
    """A = clamp(r_hat, -adv_clip_max, adv_clip_max) * (beta_pos if r_hat > 0 else beta_neg). [N] -> [N]."""
    weight = torch.where(normalised > 0, torch.as_tensor(beta_pos, dtype=normalised.dtype), torch.as_tensor(beta_neg, dtype=normalised.dtype))
    return normalised.clamp(-adv_clip_max, adv_clip_max) * weight


def ppo_loss(log_probs, old_log_probs, advantages, clip_range):
    """Clipped PPO (paper Eq. 4/6 with clipping): mean(max(-A * r, -A * clip(r, 1 - eps, 1 + eps))), r = p / p_old."""
    ratio = torch.exp(log_probs - old_log_probs)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    return torch.maximum(unclipped, clipped).mean()


def pg_loss(log_probs, old_log_probs, advantages, clip_range=None):
    """Policy gradient with importance sampling, no clipping (paper App. D.1): mean(-A * r). ``clip_range`` unused."""
    return (-advantages * torch.exp(log_probs - old_log_probs)).mean()


def gaussian_kl(mean, reference_mean, std):
    """KL(N(mean, std^2 I) || N(reference_mean, std^2 I)) per latent element, averaged like the log-probs:
    mean over elements of (mean - reference_mean)^2 / (2 std^2). mean, reference_mean: [M, C, H, W];
    std: [M, 1, 1, 1] -> [M]. Both steps share the DDIM std, so only the means differ."""
    return ((mean - reference_mean) ** 2 / (2 * std**2)).mean(dim=tuple(range(1, mean.ndim)))


def dpok_loss(log_probs, old_log_probs, advantages, clip_range, kl, reward_weight, kl_weight):
    """DPOK (paper Eq. 7): reward_weight * clipped PPO term + kl_weight * mean(kl).

    kl: [M], KL between the current policy's and the base model's Gaussian step at the same latent
    (:func:`gaussian_kl`; DPOK regularises towards the pretrained model).
    """
    return reward_weight * ppo_loss(log_probs, old_log_probs, advantages, clip_range) + kl_weight * kl.mean()


def dpo_loss(log_probs_w, old_log_probs_w, log_probs_l, old_log_probs_l, beta):
    """DPO (paper Eq. 8) per interval step of contrastive pairs, the sampling policy as reference:
    mean(-log sigmoid(beta * ((log p(w) - log p_old(w)) - (log p(l) - log p_old(l))))). All [P] -> scalar.
    ``w`` is the better-scored trajectory of a pair, ``l`` the worse; both at the same timestep."""
    margin = (log_probs_w - old_log_probs_w) - (log_probs_l - old_log_probs_l)
    return -F.logsigmoid(beta * margin).mean()


@dataclass(frozen=True)
class Objective:
    """A configured objective: ``loss(log_probs, old_log_probs, advantages, kl)`` on the pairs of one
    chunk -> scalar. ``needs_reference``: it needs the base model's step mean (``kl`` [M], else None).
    ``paired``: the pairs come as [w, l] rows at the same step (``advantages`` unused)."""

    name: str
    loss: object
    needs_reference: bool = False
    paired: bool = False


def make_objective(train):
    """The :class:`Objective` for ``train`` (a ``config.train`` ConfigDict): ``train.algorithm`` and its weights."""
    name = train.algorithm
    if name == "ppo":
        return Objective(name, lambda lp, old, adv, kl: ppo_loss(lp, old, adv, train.eps))
    if name == "pg":
        return Objective(name, lambda lp, old, adv, kl: pg_loss(lp, old, adv))
    if name == "dpok":
        return Objective(
            name, lambda lp, old, adv, kl: dpok_loss(lp, old, adv, train.eps, kl, train.dpok_reward_weight, train.dpok_kl_weight),
            needs_reference=True,
        )
    if name == "dpo":
        return Objective(name, lambda lp, old, adv, kl: dpo_loss(lp[0::2], old[0::2], lp[1::2], old[1::2], train.dpo_beta), paired=True)
    raise ValueError(f"train.algorithm={name!r} is not known; choose from {list(OBJECTIVES)}")


# train.algorithm -> its pure loss function (b2diffurl.checks.ALGORITHMS is kept in step by a test)
OBJECTIVES = {"ppo": ppo_loss, "pg": pg_loss, "dpok": dpok_loss, "dpo": dpo_loss}


def contrastive_pairs(group_ids, normalised):
    """(w, l) index pairs [P], [P] of the selected trajectories for DPO.

    group_ids: int Tensor[N], the comparison group of each selected trajectory (its branch group, or
    its prompt when there is no branching); normalised: float Tensor[N]. Within a group the members are
    paired in index order (1st with 2nd, 3rd with 4th, ...) and the better-scored one is ``w`` (ties:
    the lower index). A branch group gives one pair when both its best and worst were selected and
    none when only one was; a leftover odd member is unpaired. Returns LongTensors (w, l), in group order.
    """
    order = torch.argsort(group_ids, stable=True)  # by group, index order within a group
    _, inverse, counts = torch.unique_consecutive(group_ids[order], return_inverse=True, return_counts=True)
    first = torch.cumsum(counts, 0) - counts  # [G] position of each group's first member in ``order``
    rank_in_group = torch.arange(len(order)) - first[inverse]
    lead = (rank_in_group % 2 == 0) & (rank_in_group + 1 < counts[inverse])  # first member of a full pair
    a, b = order[lead], order[torch.nonzero(lead).flatten() + 1]
    a_wins = normalised[a] >= normalised[b]
    return torch.where(a_wins, a, b), torch.where(a_wins, b, a)


def policy_stats(log_probs, old_log_probs, clip_range):
    """Diagnostics of a batch of pairs: approx KL 0.5 * mean((log p - log p_old)^2), clip fraction, max |r - 1|."""
    diff = (log_probs - old_log_probs).detach()
    ratio = torch.exp(diff)
    return {
        "approx_kl": 0.5 * (diff**2).mean().item(),
        "clipfrac": ((ratio - 1.0).abs() > clip_range).float().mean().item(),
        "max_ratio_deviation": (ratio - 1.0).abs().max().item(),
    }
