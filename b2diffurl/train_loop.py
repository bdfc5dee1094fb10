"""A round's update loop: its epochs of train batches, gradient accumulation and AdamW steps.

``train.gradient_accumulation_steps`` batches make one AdamW step, after gradients are averaged
over processes (one all-reduce per step, as DDP would) and clipped to ``train.max_grad_norm``. Every
optimizer step applies the mean gradient over its trajectories' (trajectory, step) pairs: a step
with a short batch, or the round's last, partial accumulation, is rescaled to the mean over the
units it holds. Loss, gradient norm and the LoRA are checked after every optimizer step (on every
rank alike): a NaN/inf stops the round with a :class:`~b2diffurl.errors.NonFiniteError`.
"""

import math

import torch

from b2diffurl.atomic import fault_point
from b2diffurl.errors import NonFiniteError
from b2diffurl.policy import backward_batch
from b2diffurl.train_batches import epoch_share

SUMMED = ("loss", "approx_kl", "clipfrac", "kl_reference", "pairs")  # a batch's sums the round adds up


def _all_reduce_mean(accelerator, params, flags):
    """Average the LoRA gradients over processes in one all-reduce, and sum ``flags`` (float Tensor[F])
    with them, so every rank learns what any rank saw. Returns the summed flags."""
    if accelerator.num_processes == 1:
        return flags
    flat = torch.cat([p.grad.flatten() for p in params] + [flags.to(params[0].grad.device) / accelerator.num_processes])
    flat = accelerator.reduce(flat, reduction="mean")
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
        offset += p.numel()
    return flat[offset:] * accelerator.num_processes


def lora_is_finite(params):
    return bool(torch.isfinite(torch.cat([p.detach().flatten() for p in params])).all())


def non_finite_stop(config, what, step, total_steps, epoch):
    """The one-line stop of a round whose training went non-finite: nothing of it is saved."""
    return NonFiniteError(
        f"train {config.run_name}: {what} at optimizer step {step} of {total_steps} (epoch {epoch}); stopped, "
        f"nothing of {config.run_name}'s training was saved (earlier rounds are untouched): lower the learning "
        f"rate (train.learning_rate={config.train.learning_rate}, LR in run_process.sh) or check the round's "
        "rewards in scores.json"
    )


class RoundUpdates:
    """The running state of a round's updates: the accumulation in progress, the optimizer steps made
    and skipped, and the sums over batches that the round's summary reports."""

    def __init__(self, config, accelerator, params, optimizer, plan):
        self.config = config
        self.accelerator = accelerator
        self.params = params
        self.optimizer = optimizer
        self.plan = plan
        self.stats = {"loss": 0.0, "approx_kl": 0.0, "clipfrac": 0.0, "kl_reference": 0.0, "pairs": 0}
        self.grad_norms = []  # of the optimizer steps made
        self.first_step_deviation = 0.0  # max |ratio - 1| before the first optimizer step
        self.steps_done, self.skipped_steps, self.dropped_batches = 0, 0, 0
        self.accumulated, self.accumulated_units, self.non_finite_loss = 0, 0, 0  # of the accumulation in progress

    @property
    def step(self):
        """The number of the optimizer step in progress (1 for the first)."""
        return self.steps_done + self.skipped_steps + 1

    def add_batch(self, batch_stats, n_units):
        """Count a train batch of ``n_units`` units whose gradient was accumulated (``batch_stats``:
        :func:`b2diffurl.policy.backward_batch`'s sums)."""
        self.accumulated_units += n_units
        self.non_finite_loss += not math.isfinite(batch_stats["loss"])
        if self.steps_done == 0:
            self.first_step_deviation = max(self.first_step_deviation, batch_stats.pop("max_ratio_deviation"))
        for key in SUMMED:
            self.stats[key] += batch_stats[key]
        self.accumulated += 1

    def reduce_gradients(self, epoch):
        """Average the accumulated gradients over processes; stop on every rank if any rank saw a NaN/inf loss."""
        flags = _all_reduce_mean(self.accelerator, self.params, torch.tensor([float(self.non_finite_loss)]))
        if flags[0].item() > 0:
            raise non_finite_stop(self.config, "the loss is NaN/inf", self.step, self.plan.total_steps, epoch)

    def optimizer_step(self, epoch):
        """Apply the accumulated gradient: rescaled to the mean over its units, reduced, clipped, checked."""
        accelerator, params, train, step = self.accelerator, self.params, self.config.train, self.step
        if self.accumulated_units < self.plan.full_step_units:  # a short batch, or the last, partial step
            for p in params:
                p.grad.mul_(self.plan.full_step_units / self.accumulated_units)
        self.reduce_gradients(epoch)
        grad_norm = float(accelerator.clip_grad_norm_(params, train.max_grad_norm))
        if not math.isfinite(grad_norm) and accelerator.scaler is None:  # under fp16 the scaler skips such steps
            raise self._stop(f"the gradient norm is {grad_norm}", step, epoch)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=False)
        if not lora_is_finite(params):
            raise self._stop("the LoRA weights became NaN/inf", step, epoch)
        self.accumulated, self.accumulated_units, self.non_finite_loss = 0, 0, 0
        if getattr(self.optimizer, "step_was_skipped", False):  # fp16 overflow: the scaler skipped the update
            self.skipped_steps += 1
        else:
            self.grad_norms.append(grad_norm)
            self.steps_done += 1
        fault_point(f"{self.config.run_name}/train.step")

    def _stop(self, what, step, epoch):
        return non_finite_stop(self.config, what, step, self.plan.total_steps, epoch)

    def finish(self):
        """The round's last, partial accumulation: applied (``train.partial_step="scale"``) or dropped, as
        the official code does (``"drop"``), after the same check for a NaN/inf loss."""
        train = self.config.train
        if self.accumulated and train.partial_step == "scale":
            self.optimizer_step(train.num_epochs - 1)
        elif self.accumulated:  # "drop": the official code never applies a round's last partial accumulation
            self.reduce_gradients(train.num_epochs - 1)  # a NaN/inf is never dropped silently
            self.dropped_batches = self.accumulated
            for p in self.params:
                p.grad.zero_()


def train_epochs(updates, policy, objective, data, generator, progress):
    """Every epoch's train batches of ``data`` (:class:`b2diffurl.train_batches.RoundData`) through
    ``policy``, an optimizer step every ``train.gradient_accumulation_steps`` batches, then the last
    partial one (:meth:`RoundUpdates.finish`). ``generator`` shuffles the timesteps (this rank's)."""
    config, accelerator, plan = updates.config, updates.accelerator, updates.plan
    train = config.train
    for epoch in range(train.num_epochs):
        share = epoch_share(len(data.units), accelerator.num_processes, accelerator.process_index, config.seed, epoch)
        for start in plan.starts:
            batch_units = share[start : start + plan.units_per_batch]
            pairs, prompt_embeds, advantages = data.batch(batch_units, generator)
            batch_stats = backward_batch(  # weighted by the batch's size: a short batch counts for its units
                policy,
                pairs,
                prompt_embeds,
                advantages,
                objective,
                objective.clip_range,
                train.forward_chunk,
                len(batch_units) / plan.full_step_units,
                accelerator.backward,
            )
            updates.add_batch(batch_stats, len(batch_units))
            if updates.accumulated == train.gradient_accumulation_steps:
                updates.optimizer_step(epoch)
            progress.update(1)
    updates.finish()
