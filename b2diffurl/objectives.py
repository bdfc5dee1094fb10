"""Policy objectives on (trajectory, interval step) pairs; pure tensor functions.

All take per-pair tensors of the same shape [M] (or broadcastable): ``log_probs`` under the current
policy, ``old_log_probs`` recorded at sampling, ``advantages`` from the normalised scores.
"""

import torch


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


def pg_loss(log_probs, old_log_probs, advantages, clip_range):
    """Policy gradient with importance sampling, no clipping (paper App. D.1): mean(-A * r). ``clip_range`` unused."""
    return (-advantages * torch.exp(log_probs - old_log_probs)).mean()


OBJECTIVES = {"ppo": ppo_loss, "pg": pg_loss}


def policy_stats(log_probs, old_log_probs, clip_range):
    """Diagnostics of a batch of pairs: approx KL 0.5 * mean((log p - log p_old)^2), clip fraction, max |r - 1|."""
    diff = (log_probs - old_log_probs).detach()
    ratio = torch.exp(diff)
    return {
        "approx_kl": 0.5 * (diff**2).mean().item(),
        "clipfrac": ((ratio - 1.0).abs() > clip_range).float().mean().item(),
        "max_ratio_deviation": (ratio - 1.0).abs().max().item(),
    }
