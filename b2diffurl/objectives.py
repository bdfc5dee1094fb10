"""Policy objectives on (trajectory, interval step) pairs: pure tensor functions, plus the registry.

Tensors are per pair, shape [M]: ``log_probs`` under the current policy, ``old_log_probs`` recorded
at sampling, ``advantages`` from the normalised scores (:func:`advantages_from_scores`). The four
algorithms of the paper (Sec. 4.5, App. D.1; docs/CONFIGURATION.md, "Objectives"):

- ``ppo``  (default, Eq. 6 with clipping)   mean(max(-A r, -A clip(r, 1 - eps, 1 + eps))), r = p / p_old
- ``pg``   (App. D.1, no clipping)          mean(-A r)
- ``dpok`` (Eq. 7)                          reward_weight * mean(-A clamp(r, 1 - c, 1 + c))
                                              + kl_weight * mean(KL(p_theta || p_base))
                                            (DPOK's release hard-clamps the ratio, c = 1e-4; c = 0: the ppo term)
- ``dpo``  (Eq. 8, on contrastive pairs)    mean(-log sigmoid(beta * [clamp(log p(w) - log p_ref(w))
                                                                      - clamp(log p(l) - log p_ref(l))]))
                                            (D3PO's release: p_ref the frozen base model, the ratio clamped to 1 +- 0.1)

Value functions are not used: reward normalisation and the branch comparison take their place
(paper App. D.2).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from b2diffurl.choices import DPO_REFERENCES, registry


def advantages_from_scores(normalised, adv_clip_max, beta_pos, beta_neg):
    """A = clamp(r_hat, -adv_clip_max, adv_clip_max) * (beta_pos if r_hat > 0 else beta_neg). [N] -> [N]."""
    weight = torch.where(
        normalised > 0,
        torch.as_tensor(beta_pos, dtype=normalised.dtype),
        torch.as_tensor(beta_neg, dtype=normalised.dtype),
    )
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


def clamped_ratio_loss(log_probs, old_log_probs, advantages, ratio_clip):
    """mean(-A * clamp(r, 1 - c, 1 + c)), r = p / p_old: DPOK's released policy term, a hard clamp (no
    gradient where the ratio has left 1 +- c), unlike PPO's max of the clipped and unclipped terms."""
    ratio = torch.exp(log_probs - old_log_probs).clamp(1.0 - ratio_clip, 1.0 + ratio_clip)
    return (-advantages * ratio).mean()


def gaussian_kl(mean, reference_mean, std):
    """KL(N(mean, std^2 I) || N(reference_mean, std^2 I)) per latent element, averaged like the log-probs:
    mean over elements of (mean - reference_mean)^2 / (2 std^2). mean, reference_mean: [M, C, H, W];
    std: [M, 1, 1, 1] -> [M]. Both steps share the DDIM std, so only the means differ."""
    return ((mean - reference_mean) ** 2 / (2 * std**2)).mean(dim=tuple(range(1, mean.ndim)))


def dpok_loss(log_probs, old_log_probs, advantages, clip_range, kl, reward_weight, kl_weight, ratio_clip=0.0):
    """DPOK (paper Eq. 7): reward_weight * policy term + kl_weight * mean(kl).

    The policy term is DPOK's released one, -A * clamp(r, 1 +- ratio_clip) (:func:`clamped_ratio_loss`),
    or, with ratio_clip = 0, clipped PPO with ``clip_range``. kl: [M], KL between the current policy's
    and the base model's Gaussian step at the same latent (:func:`gaussian_kl`; DPOK regularises
    towards the pretrained model).
    """
    if ratio_clip > 0:
        policy = clamped_ratio_loss(log_probs, old_log_probs, advantages, ratio_clip)
    else:
        policy = ppo_loss(log_probs, old_log_probs, advantages, clip_range)
    return reward_weight * policy + kl_weight * kl.mean()


def dpo_margin(log_probs_w, reference_w, log_probs_l, reference_l, ratio_clip=0.0):
    """Per-step DPO margin [P]: log(p(w) / p_ref(w)) - log(p(l) / p_ref(l)), each log-ratio clamped to
    [log(1 - c), log(1 + c)] when ratio_clip = c > 0 (D3PO clamps the ratio to 1 +- 0.1: no gradient
    from a member whose ratio has left that range). All [P]."""
    ratio_w, ratio_l = log_probs_w - reference_w, log_probs_l - reference_l
    if ratio_clip > 0:
        low, high = math.log(1.0 - ratio_clip), math.log(1.0 + ratio_clip)
        ratio_w, ratio_l = ratio_w.clamp(low, high), ratio_l.clamp(low, high)
    return ratio_w - ratio_l


def dpo_loss(log_probs_w, reference_w, log_probs_l, reference_l, beta, ratio_clip=0.0):
    """DPO (paper Eq. 8) per interval step of contrastive pairs: mean(-log sigmoid(beta * margin)),
    margin from :func:`dpo_margin`. ``w`` is the better-scored trajectory of a pair, ``l`` the worse,
    both at the same timestep; ``reference_*`` their log-probs under the reference policy (the frozen
    base model, as D3PO, or the sampling-time policy). All [P] -> scalar."""
    return -F.logsigmoid(beta * dpo_margin(log_probs_w, reference_w, log_probs_l, reference_l, ratio_clip)).mean()


@dataclass(frozen=True)
class Reference:
    """The base model's DDIM step (LoRA adapters disabled, same latents, CFG) beside the policy's, per pair:
    ``log_probs`` [M] of the stored next latents under it, and ``kl`` [M], KL(policy step || base step)."""

    log_probs: torch.Tensor
    kl: torch.Tensor


@dataclass(frozen=True)
class Objective:
    """A configured objective: ``loss(log_probs, old_log_probs, advantages, reference)`` on the pairs of one
    chunk -> scalar. ``needs_reference``: it needs the base model's step (``reference`` a :class:`Reference`,
    else None). ``paired``: the pairs come as [w, l] rows at the same step (``advantages`` unused).
    ``clip_range``: the range around 1 its ratio is clipped to, for the clip fraction it reports."""

    name: str
    loss: object
    needs_reference: bool = False
    paired: bool = False
    clip_range: float = 0.1


def make_objective(train):
    """The :class:`Objective` for ``train`` (a ``config.train`` ConfigDict): ``train.algorithm`` and its weights."""
    name = train.algorithm
    if name == "ppo":
        return Objective(name, lambda lp, old, adv, ref: ppo_loss(lp, old, adv, train.eps), clip_range=train.eps)
    if name == "pg":
        return Objective(name, lambda lp, old, adv, ref: pg_loss(lp, old, adv), clip_range=train.eps)
    if name == "dpok":
        return Objective(
            name,
            lambda lp, old, adv, ref: dpok_loss(
                lp, old, adv, train.eps, ref.kl, train.dpok_reward_weight, train.dpok_kl_weight, train.dpok_ratio_clip
            ),
            needs_reference=True,
            clip_range=train.dpok_ratio_clip or train.eps,
        )
    if name == "dpo":
        if train.dpo_reference not in DPO_REFERENCES:
            raise ValueError(
                f"train.dpo_reference={train.dpo_reference!r} is not known; choose from {list(DPO_REFERENCES)}"
            )
        base = train.dpo_reference == "base"

        def dpo(lp, old, adv, ref):
            reference = ref.log_probs if base else old
            return dpo_loss(lp[0::2], reference[0::2], lp[1::2], reference[1::2], train.dpo_beta, train.dpo_ratio_clip)

        return Objective(name, dpo, needs_reference=base, paired=True, clip_range=train.dpo_ratio_clip or train.eps)
    raise ValueError(f"train.algorithm={name!r} is not known; choose from {list(OBJECTIVES)}")


# train.algorithm (b2diffurl.choices.ALGORITHMS) -> its pure loss function
OBJECTIVES = registry(
    {"ppo": ppo_loss, "pg": pg_loss, "dpok": dpok_loss, "dpo": dpo_loss},
    "ALGORITHMS",
    "b2diffurl.objectives.OBJECTIVES",
)


def contrastive_pairs(group_ids, normalised):
    """(w, l) index pairs [P], [P] of the selected trajectories for DPO.

    group_ids: int Tensor[N], the branch group of each selected trajectory (its members share the latent
    at the branch point: x_T itself for vanilla DPO, whose 2 branches start at step 0);
    normalised: float Tensor[N]. Within a group the members are paired in index order (1st with 2nd,
    3rd with 4th, ...) and the better-scored one is ``w`` (ties: the lower index). A branch group gives
    one pair when both its best and worst were selected and none when only one was; a leftover odd
    member is unpaired. Returns LongTensors (w, l), in group order.
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
