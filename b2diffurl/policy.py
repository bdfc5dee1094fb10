"""The policy a round trains: the log-prob of a stored step under the LoRA, and its gradient over a train batch.

Log-probs are recomputed with the stored latents and the sampling CFG, so at the first step of a
round every ratio is 1. An objective that needs the base model's step (DPOK's KL, DPO against the
base model) gets it from the same UNet with its LoRA adapters disabled.
"""

from dataclasses import dataclass

import torch

from b2diffurl.backbones import Conditioning, predict_noise
from b2diffurl.ddim import gaussian_log_prob, step_mean_std
from b2diffurl.objectives import Reference, gaussian_kl, policy_stats


@dataclass
class Policy:
    """What recomputing a log-prob needs besides the data: the UNet with its LoRA and the sampling settings."""

    unet: torch.nn.Module
    scheduler: object
    negative_embeds: Conditioning  # one row: the unconditional prompt (b2diffurl.backbones)
    guidance_scale: float
    eta: float

    def step(self, latents, next_latents, timesteps, prompt_embeds):
        """log p_theta(next | latents, t, c) [M] with the sampling CFG, and the step's Gaussian mean
        [M, C, H, W] and std [M, 1, 1, 1]. latents, next_latents: [M, C, H, W]."""
        eps = predict_noise(self.unet, latents, timesteps, prompt_embeds, self.negative_embeds, self.guidance_scale)
        mean, std, _ = step_mean_std(self.scheduler, eps, timesteps, latents, self.eta)
        return gaussian_log_prob(next_latents.float(), mean, std), mean, std

    @torch.no_grad()
    def reference_mean(self, latents, timesteps, prompt_embeds):
        """The base model's step mean [M, C, H, W] at the same latents: LoRA adapters disabled, same CFG."""
        self.unet.disable_adapters()
        try:
            eps = predict_noise(self.unet, latents, timesteps, prompt_embeds, self.negative_embeds, self.guidance_scale)
        finally:
            self.unet.enable_adapters()
        return step_mean_std(self.scheduler, eps, timesteps, latents, self.eta)[0]

    def reference(self, latents, next_latents, timesteps, prompt_embeds, mean, std):
        """The base model's step beside the policy's (``mean`` [M, C, H, W], ``std`` [M, 1, 1, 1] from
        :meth:`step`): a :class:`~b2diffurl.objectives.Reference` with the base log-prob of
        ``next_latents`` [M] and KL(policy || base) [M]. One extra UNet forward, no gradient."""
        reference_mean = self.reference_mean(latents, timesteps, prompt_embeds)
        return Reference(
            gaussian_log_prob(next_latents.float(), reference_mean, std), gaussian_kl(mean, reference_mean, std)
        )


def backward_batch(policy, pairs, prompt_embeds, advantages, objective, clip_range, forward_chunk, scale, backward):
    """Accumulate ``scale`` * d(objective over all of a train batch's pairs) into the LoRA gradients.

    pairs: output of :func:`interval_pairs` for b trajectories (b*k pairs; for a paired objective
    with tie=2, [w, l] rows); prompt_embeds: Conditioning of b rows; advantages: [b]; objective: an
    :class:`b2diffurl.objectives.Objective`. The pairs go through the UNet ``forward_chunk`` at a time
    (rounded down to whole [w, l] rows for a paired objective), each chunk's loss weighted by its
    share of the batch, so the gradient does not depend on ``forward_chunk``. An objective that needs
    the base model's step (DPOK, DPO against the base model) gets it per chunk (:meth:`Policy.reference`).
    Returns sums over pairs of loss, approx_kl, clipfrac and kl_reference (KL to the base model, when
    computed), the pair count and the max |ratio - 1|.
    """
    latents, next_latents, timesteps, old_log_probs, rows = pairs
    device = policy.negative_embeds.device
    total = len(rows)
    tie = 2 if objective.paired else 1
    stats = {
        "loss": 0.0,
        "approx_kl": 0.0,
        "clipfrac": 0.0,
        "kl_reference": 0.0,
        "pairs": total,
        "max_ratio_deviation": 0.0,
    }
    for chunk in torch.arange(total).split(max(tie, forward_chunk // tie * tie)):
        chunk_rows = rows[chunk]
        x, t, embeds = (
            latents[chunk].to(device),
            timesteps[chunk].to(device),
            prompt_embeds[chunk_rows.to(prompt_embeds.device)],
        )
        x_next = next_latents[chunk].to(device)
        log_probs, mean, std = policy.step(x, x_next, t, embeds)
        reference = policy.reference(x, x_next, t, embeds, mean, std) if objective.needs_reference else None
        old = old_log_probs[chunk].to(device)
        loss = objective.loss(log_probs, old, advantages[chunk_rows].to(device), reference)
        backward(loss * (len(chunk) * scale / total))
        info = policy_stats(log_probs, old, clip_range)
        stats["loss"] += loss.item() * len(chunk)
        stats["approx_kl"] += info["approx_kl"] * len(chunk)
        stats["clipfrac"] += info["clipfrac"] * len(chunk)
        stats["kl_reference"] += reference.kl.sum().item() if reference is not None else 0.0
        stats["max_ratio_deviation"] = max(stats["max_ratio_deviation"], info["max_ratio_deviation"])
    return stats
