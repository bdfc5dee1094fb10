"""What a round's epochs train on: units of selected trajectories, cut into train batches and optimizer steps.

Each epoch shuffles the units (same permutation on every rank, each rank takes an equal share,
:func:`epoch_share`) and the timesteps within each trajectory (:func:`interval_pairs`). A train
batch of ``train.batch_size`` trajectories contributes all its k interval steps;
``train.gradient_accumulation_steps`` batches make one optimizer step (:class:`BatchPlan`).
"""

from dataclasses import dataclass

import torch

from b2diffurl.objectives import contrastive_pairs


def epoch_share(n, num_processes, rank, seed, epoch):
    """This rank's trajectory indices for one epoch: a permutation shared by all ranks, cut to a
    multiple of num_processes (dropping at most num_processes - 1, different ones each epoch)."""
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    order = torch.randperm(n, generator=generator)
    return order[: (n // num_processes) * num_processes][rank::num_processes]


def interval_pairs(trajectories, generator, tie=1):
    """Flatten trajectories [b] x interval steps [k] into b*k (trajectory, step) pairs, steps shuffled per row.

    ``tie`` consecutive trajectories (a DPO pair: tie=2) share their step order and sit next to each
    other at every step, so a chunk of the pairs holds both members of a step. b must be a multiple of tie.
    Returns latents [b*k, C, H, W], next_latents [b*k, C, H, W], timesteps [b*k], log_probs [b*k], rows [b*k],
    in (tie group, step, member) order.
    """
    b, k = trajectories.log_probs.shape
    steps = torch.argsort(torch.rand(b // tie, k, generator=generator), dim=1)  # [b/tie, k]
    steps = steps.unsqueeze(2).expand(b // tie, k, tie)  # [b/tie, k, tie]
    rows = (torch.arange(b // tie).view(-1, 1, 1) * tie + torch.arange(tie).view(1, 1, -1)).expand(b // tie, k, tie)
    rows, steps = rows.flatten(), steps.flatten()
    return (
        trajectories.latents[rows, steps],
        trajectories.latents[rows, steps + 1],
        trajectories.timesteps[rows, steps],
        trajectories.log_probs[rows, steps],
        rows,
    )


def training_units(selected, extra, objective):
    """What one epoch shuffles: (units [U, tie] of row indices into ``selected``, info).

    Each selected trajectory is a unit of its own, except for DPO: there a unit is a contrastive pair
    [w, l] (:func:`b2diffurl.objectives.contrastive_pairs`) of one branch group, whose members share
    the latent at the branch point (x_T itself for vanilla DPO, 2 branches from step 0, as D3PO).
    Trajectories left without a partner are not trained on; ``info`` counts them.
    """
    n = len(selected)
    if not objective.paired:
        return torch.arange(n).view(n, 1), {}
    winners, losers = contrastive_pairs(selected.group_ids, extra["normalised"].float())
    units = torch.stack([winners, losers], dim=1)  # [P, 2]
    return units, {"dpo_pairs": len(units), "dpo_unpaired": n - 2 * len(units)}


def batch_starts(n_units, units_per_batch, partial_batch):
    """Start offsets of an epoch's train batches in a rank's share of ``n_units`` units. The last batch
    may hold fewer units: with ``partial_batch="weight"`` it is kept (weighted by its size), with
    ``"drop"`` left out, as the official trainer (``range(0, N // 2 * 2, batch_size)``) leaves out a
    last single trajectory."""
    end = n_units - n_units % units_per_batch if partial_batch == "drop" else n_units
    return range(0, end, units_per_batch)


@dataclass(frozen=True)
class BatchPlan:
    """How a round's units make train batches and optimizer steps: the same on every rank and epoch."""

    tie: int  # trajectories per unit (2: a DPO pair)
    units_per_batch: int
    full_step_units: int  # units of one full optimizer step
    starts: range  # each epoch's batch offsets in a rank's share (:func:`batch_starts`)
    used_per_epoch: int  # units per rank and epoch that are trained on
    total_batches: int
    total_steps: int  # optimizer steps the round makes, a last partial one included when it is applied

    def trajectories_used(self, num_processes, num_epochs):
        return self.used_per_epoch * num_processes * self.tie * num_epochs


def plan_batches(n_units, tie, train, num_processes):
    """The :class:`BatchPlan` of ``n_units`` units of ``tie`` trajectories under ``train`` settings."""
    units_per_batch = max(
        1, train.batch_size // tie
    )  # a DPO batch of train.batch_size trajectories: batch_size / 2 pairs
    per_rank = n_units // num_processes
    starts = batch_starts(per_rank, units_per_batch, train.partial_batch)
    total_batches = len(starts) * train.num_epochs
    full_steps, remainder = divmod(total_batches, train.gradient_accumulation_steps)
    return BatchPlan(
        tie=tie,
        units_per_batch=units_per_batch,
        full_step_units=units_per_batch * train.gradient_accumulation_steps,
        starts=starts,
        used_per_epoch=min(per_rank, len(starts) * units_per_batch),
        total_batches=total_batches,
        total_steps=full_steps + (1 if remainder and train.partial_step == "scale" else 0),
    )


@dataclass
class RoundData:
    """The selected trajectories a round trains on, with what their loss needs besides the model."""

    selected: object  # b2diffurl.trajectories.Trajectories [N]
    units: torch.Tensor  # [U, tie] rows of ``selected`` (:func:`training_units`)
    prompt_embeds: object  # b2diffurl.backbones.Conditioning, one row per prompt id of the manifest
    advantages: torch.Tensor  # [N]

    def batch(self, batch_units, generator):
        """(pairs of :func:`interval_pairs`, their trajectories' Conditioning, advantages) of the units
        ``batch_units`` [B], a pair's [w, l] rows adjacent."""
        rows = self.units[batch_units].flatten()  # trajectory rows, [w, l] adjacent
        trajectories = self.selected.select(rows)
        pairs = interval_pairs(trajectories, generator, self.units.shape[1])
        return pairs, self.prompt_embeds[trajectories.prompt_ids], self.advantages[rows]
