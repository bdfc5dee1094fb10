"""Stage 3: update the LoRA on the round's selected trajectories, on the interval's timesteps only.

    accelerate launch --num_processes 8 run_train.py --config config/stage_process.py ...

Each epoch shuffles the selected trajectories (same permutation on every rank, each rank takes an
equal share) and the timesteps within each trajectory. A train batch of ``train.batch_size``
trajectories contributes all its k interval steps; ``train.gradient_accumulation_steps`` batches
make one AdamW step, after gradients are averaged over processes (one all-reduce per step, as DDP
would) and clipped to ``train.max_grad_norm``. Log-probs are recomputed with the stored latents and
the sampling CFG, so at the first step of a round every ratio is 1.

The LoRA (diffusers format) and the AdamW state (safetensors) are saved in ``lora/`` every round,
and the next round starts from both: many rounds are one continuous optimisation.
"""

import math
import os
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from b2diffurl import records
from b2diffurl.backbones import Conditioning, encode_prompts, negative_conditioning, predict_noise
from b2diffurl.ddim import gaussian_log_prob, step_mean_std
from b2diffurl.errors import NonFiniteError
from b2diffurl.models import save_lora
from b2diffurl.objectives import (
    Reference,
    advantages_from_scores,
    contrastive_pairs,
    gaussian_kl,
    make_objective,
    policy_stats,
)
from b2diffurl.perf import stage_memory

STAGE = "train"
OPTIMIZER_NAME = records.OPTIMIZER_NAME


def trainable_parameters(unet):
    """[(name, param)] of the LoRA weights, in a fixed order."""
    return [(n, p) for n, p in unet.named_parameters() if p.requires_grad]


def make_optimizer(params, train):
    return torch.optim.AdamW(
        params,
        lr=train.learning_rate,
        betas=(train.adam_beta1, train.adam_beta2),
        weight_decay=train.adam_weight_decay,
        eps=train.adam_epsilon,
    )


SCALER_PREFIX = "_grad_scaler."  # fp16 gradient-scaler entries in the optimizer file (no LoRA name starts with "_")


def save_optimizer(optimizer, names, path, scaler=None):
    """AdamW state -> safetensors, keyed by parameter name (``<name>.step``, ``.exp_avg``, ``.exp_avg_sq``),
    plus the fp16 gradient scaler's state (``_grad_scaler.scale``, ``_grad_scaler.growth_tracker``) when
    ``scaler`` is given, so the next round does not restart the loss scale; returns the file's sha256."""
    tensors = {}
    for i, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"{names[i]}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    if scaler is not None:
        tensors.update(scaler_tensors(scaler))
    return records.save_tensors(path, tensors)


def scaler_tensors(scaler):
    """{name: Tensor} of a torch GradScaler's running state (its scale and growth tracker)."""
    state = scaler.state_dict()
    if not state:  # a disabled scaler has no state
        return {}
    return {
        f"{SCALER_PREFIX}scale": torch.tensor([float(state["scale"])], dtype=torch.float64),
        f"{SCALER_PREFIX}growth_tracker": torch.tensor([int(state["_growth_tracker"])], dtype=torch.int64),
    }


def load_scaler(scaler, tensors):
    """Continue ``scaler`` from the state :func:`scaler_tensors` wrote; returns whether there was one
    (a run that switched to fp16 starts the scaler fresh)."""
    if f"{SCALER_PREFIX}scale" not in tensors:
        return False
    state = scaler.state_dict()
    state["scale"] = float(tensors[f"{SCALER_PREFIX}scale"].item())
    state["_growth_tracker"] = int(tensors[f"{SCALER_PREFIX}growth_tracker"].item())
    scaler.load_state_dict(state)
    return True


def load_optimizer(optimizer, names, tensors):
    """Restore the state :func:`save_optimizer` wrote (``tensors``: its file's tensors); hyperparameters
    stay those of the current config. A file with no state (a round that made no optimizer step)
    leaves the optimizer fresh.
    """
    tensors = {k: v for k, v in tensors.items() if not k.startswith(SCALER_PREFIX)}
    if not tensors:
        return
    state = {}
    for i, name in enumerate(names):
        keys = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.rsplit(".", 1)[0] == name}
        if not keys:
            raise ValueError(f"the optimizer state has no entry for {name}: it was saved for another LoRA layout")
        state[i] = keys
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


def resume_optimizer_state(config):
    """Tensors of the AdamW state to continue from (resume_from's, verified), or None for a fresh
    AdamW: round 0, or ``train.fresh_optimizer``. A missing state is an error (checks.check_resume)."""
    if not config.resume_from or config.train.fresh_optimizer:
        return None
    path = os.path.join(config.resume_from, OPTIMIZER_NAME)
    return records.tensors_from_bytes(records.read_lora_file(config.resume_from, OPTIMIZER_NAME), path)[0]


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

    def log_probs(self, latents, next_latents, timesteps, prompt_embeds):
        """log p_theta(next | latents, t, c) [M] (see :meth:`step`)."""
        return self.step(latents, next_latents, timesteps, prompt_embeds)[0]

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


def used_prompt_embeds(pipeline, prompt_list, prompt_ids):
    """Conditioning of P = len(prompt_list) rows indexed by prompt id, of the prompts ``prompt_ids`` [N]
    uses (the others stay zero: a round's selected trajectories use few of the list's prompts, and
    encoding all of them would cost more than the training at small sizes)."""
    used = torch.unique(prompt_ids)  # [U]
    if not len(used):  # nothing selected: one row is encoded so the conditioning has its shape
        used = torch.zeros(1, dtype=torch.long)
    return encode_prompts(pipeline, [prompt_list[i] for i in used.tolist()]).placed(used, len(prompt_list))


def lora_checksum(params):
    """Two float64 numbers that differ when the LoRA weights differ (compared across ranks). -> [2]"""
    flat = torch.cat([p.detach().flatten().double().cpu() for p in params])
    weights = torch.arange(1, len(flat) + 1, dtype=torch.float64) / len(flat)
    return torch.stack([flat.sum(), (flat * weights).sum()])


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


def _non_finite_stop(config, what, step, total_steps, epoch):
    """The one-line stop of a round whose training went non-finite: nothing of it is saved."""
    return NonFiniteError(
        f"train {config.run_name}: {what} at optimizer step {step} of {total_steps} (epoch {epoch}); stopped, nothing of "
        f"{config.run_name}'s training was saved (earlier rounds are untouched): lower the learning rate "
        f"(train.learning_rate={config.train.learning_rate}, LR in run_process.sh) or check the round's rewards in scores.json"
    )


def check_interval_latents(round_dir):
    """A round whose interval latents were deleted after an earlier training (process.save_interval)
    is retrained only from its sampling: say so instead of naming one missing file after another."""
    if not os.path.exists(os.path.join(round_dir, "samples")) and not os.path.exists(
        os.path.join(round_dir, "selected.safetensors")
    ):
        from b2diffurl.errors import RecordError

        raise RecordError(
            f"{round_dir} holds no interval latents (samples/, selected.safetensors): they were deleted once the round "
            f"was trained (process.save_interval, SaveInterval, keeps every n-th round's; 0 keeps none). To train it again, "
            f"delete {records.marker_path(round_dir, 'sample')} and rerun: the round is redone from its sampling (same seeds)"
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
    w, l = contrastive_pairs(selected.group_ids, extra["normalised"].float())
    units = torch.stack([w, l], dim=1)  # [P, 2]
    return units, {"dpo_pairs": len(units), "dpo_unpaired": n - 2 * len(units)}


def batch_starts(n_units, units_per_batch, partial_batch):
    """Start offsets of an epoch's train batches in a rank's share of ``n_units`` units. The last batch
    may hold fewer units: with ``partial_batch="weight"`` it is kept (weighted by its size), with
    ``"drop"`` left out, as the official trainer (``range(0, N // 2 * 2, batch_size)``) leaves out a
    last single trajectory."""
    end = n_units - n_units % units_per_batch if partial_batch == "drop" else n_units
    return range(0, end, units_per_batch)


def train_round(config, accelerator, pipeline, round_dir, load_seconds=0.0):
    """Stage 3 for one round; writes lora/ (weights + optimizer) and metrics.json, then the marker.

    Inputs are verified against their stages' markers. Loss, gradient norm and the LoRA are checked
    after every optimizer step (on every rank alike): a NaN/inf stops the round with a
    :class:`NonFiniteError` before anything of it is written.

    Every optimizer step applies the mean gradient over its trajectories' (trajectory, step) pairs:
    train batches are weighted by their size, so a rank's last, shorter batch of an epoch counts for
    the trajectories it holds (``train.partial_batch="weight"``), or it is left out, as the official
    trainer does (``"drop"``). The round's last, partial accumulation (fewer than
    ``gradient_accumulation_steps`` batches) is applied likewise (``train.partial_step="scale"``) or
    dropped, as the official code does (``"drop"``).
    """
    started = time.time()
    train, sample = config.train, config.sample
    device = accelerator.device
    unet, scheduler = pipeline.unet, pipeline.scheduler
    named = trainable_parameters(unet)
    names, params = [n for n, _ in named], [p for _, p in named]
    optimizer = make_optimizer(params, train)
    state = resume_optimizer_state(config)
    if state is not None:
        load_optimizer(optimizer, names, state)
    optimizer = accelerator.prepare(optimizer)
    scaler_resumed = accelerator.scaler is not None and state is not None and load_scaler(accelerator.scaler, state)

    check_interval_latents(round_dir)
    manifest = records.read_verified_json(round_dir, "sample", "samples/manifest.json")
    tensors, _ = records.read_verified_tensors(round_dir, "select", "selected.safetensors")
    selected, extra = records.trajectories_from_tensors(tensors)
    advantages = advantages_from_scores(extra["normalised"].float(), train.adv_clip_max, train.beta1, train.beta2)
    if not torch.isfinite(advantages).all():
        raise NonFiniteError(
            f"train {config.run_name}: the advantages are NaN/inf (train.beta1={train.beta1}, train.beta2={train.beta2}, "
            f"train.adv_clip_max={train.adv_clip_max}); nothing was saved: use finite values"
        )
    with torch.no_grad():
        prompt_embeds = used_prompt_embeds(pipeline, manifest["prompt_list"], selected.prompt_ids)  # P rows
        negative_embeds = negative_conditioning(pipeline)  # one row
    scheduler.set_timesteps(sample.num_steps, device=device)
    objective = make_objective(train)
    units, unit_info = training_units(selected, extra, objective)
    tie = units.shape[1]
    units_per_batch = max(
        1, train.batch_size // tie
    )  # a DPO batch of train.batch_size trajectories holds batch_size / 2 pairs
    full_step_units = units_per_batch * train.gradient_accumulation_steps  # units of one full optimizer step

    n = len(units)
    per_rank = n // accelerator.num_processes
    starts = batch_starts(per_rank, units_per_batch, train.partial_batch)  # the same on every rank and epoch
    used_per_epoch = min(per_rank, len(starts) * units_per_batch)  # units per rank and epoch that are trained on
    total_batches = len(starts) * train.num_epochs
    full_steps, remainder = divmod(total_batches, train.gradient_accumulation_steps)
    total_steps = full_steps + (1 if remainder and train.partial_step == "scale" else 0)
    stats = {"loss": 0.0, "approx_kl": 0.0, "clipfrac": 0.0, "kl_reference": 0.0, "pairs": 0}
    grad_norms, first_step_deviation, accumulated, steps_done, skipped_steps = [], 0.0, 0, 0, 0
    accumulated_units, non_finite_loss = 0, 0
    generator = torch.Generator().manual_seed(config.seed * 1000 + accelerator.process_index)
    unet.train()
    if train.gradient_checkpointing:  # activations recomputed in backward: less memory, same gradient
        unet.enable_gradient_checkpointing()
    progress = tqdm(
        total=total_batches,
        desc=f"training {config.run_name}",
        disable=not accelerator.is_main_process,
        dynamic_ncols=True,
    )

    def reduce_gradients(epoch):
        """Average the accumulated gradients over processes; stop on every rank if any rank saw a NaN/inf loss."""
        flags = _all_reduce_mean(accelerator, params, torch.tensor([float(non_finite_loss)]))
        if flags[0].item() > 0:
            raise _non_finite_stop(config, "the loss is NaN/inf", steps_done + skipped_steps + 1, total_steps, epoch)

    def optimizer_step(epoch):
        nonlocal accumulated, accumulated_units, steps_done, skipped_steps, non_finite_loss
        step = steps_done + skipped_steps + 1
        if (
            accumulated_units < full_step_units
        ):  # a step with a short batch, or the last, partial one: the mean over its units
            for p in params:
                p.grad.mul_(full_step_units / accumulated_units)
        reduce_gradients(epoch)
        grad_norm = float(accelerator.clip_grad_norm_(params, train.max_grad_norm))
        if not math.isfinite(grad_norm) and accelerator.scaler is None:  # under fp16 the scaler skips such steps
            raise _non_finite_stop(config, f"the gradient norm is {grad_norm}", step, total_steps, epoch)
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
        if not lora_is_finite(params):
            raise _non_finite_stop(config, "the LoRA weights became NaN/inf", step, total_steps, epoch)
        accumulated, accumulated_units, non_finite_loss = 0, 0, 0
        if getattr(optimizer, "step_was_skipped", False):  # fp16 overflow: the scaler skipped the update
            skipped_steps += 1
        else:
            grad_norms.append(grad_norm)
            steps_done += 1
        records.fault_point(f"{config.run_name}/train.step")

    for p in params:
        p.grad = torch.zeros_like(p)
    policy = Policy(unet, scheduler, negative_embeds, sample.guidance_scale, sample.eta)
    with progress:  # closed before an error is printed
        for epoch in range(train.num_epochs):
            share = epoch_share(n, accelerator.num_processes, accelerator.process_index, config.seed, epoch)
            for start in starts:
                batch_units = share[start : start + units_per_batch]
                batch = units[batch_units].flatten()  # trajectory rows, [w, l] adjacent
                trajectories = selected.select(batch)
                pairs = interval_pairs(trajectories, generator, tie)
                batch_stats = backward_batch(  # weighted by the batch's size: a short batch counts for its units
                    policy,
                    pairs,
                    prompt_embeds[trajectories.prompt_ids],
                    advantages[batch],
                    objective,
                    objective.clip_range,
                    train.forward_chunk,
                    len(batch_units) / full_step_units,
                    accelerator.backward,
                )
                accumulated_units += len(batch_units)
                non_finite_loss += not math.isfinite(batch_stats["loss"])
                if steps_done == 0:
                    first_step_deviation = max(first_step_deviation, batch_stats.pop("max_ratio_deviation"))
                for key in ("loss", "approx_kl", "clipfrac", "kl_reference", "pairs"):
                    stats[key] += batch_stats[key]
                accumulated += 1
                if accumulated == train.gradient_accumulation_steps:
                    optimizer_step(epoch)
                progress.update(1)
        dropped_batches = 0
        if accumulated and train.partial_step == "scale":
            optimizer_step(train.num_epochs - 1)
        elif accumulated:  # "drop": the official code never applies a round's last partial accumulation
            reduce_gradients(train.num_epochs - 1)  # a NaN/inf is never dropped silently
            dropped_batches = accumulated
            for p in params:
                p.grad.zero_()

    totals = accelerator.reduce(
        torch.tensor(
            [stats["loss"], stats["approx_kl"], stats["clipfrac"], stats["kl_reference"], stats["pairs"]],
            dtype=torch.float64,
            device=device,
        ),
        reduction="sum",
    )
    deviation = accelerator.reduce(torch.tensor([first_step_deviation], device=device), reduction="max")
    checksums = accelerator.gather(lora_checksum(params).to(device).reshape(1, 2)).cpu()  # [num_processes, 2]
    pairs_total = max(totals[4].item(), 1.0)
    metrics = {
        "algorithm": train.algorithm,
        "loss": totals[0].item() / pairs_total,
        "approx_kl": totals[1].item() / pairs_total,
        "clipfrac": totals[2].item() / pairs_total,
        "grad_norm": sum(grad_norms) / len(grad_norms) if grad_norms else 0.0,
        "optimizer_steps": steps_done,
        "skipped_steps": skipped_steps,
        "partial_step": train.partial_step,
        "dropped_batches": dropped_batches,
        "fresh_optimizer": state is None,
        "trajectories_selected": len(selected),
        "trajectories_used": used_per_epoch * accelerator.num_processes * tie * train.num_epochs,
        "partial_batch": train.partial_batch,
        "pairs": int(totals[4].item()),
        "first_step_max_ratio_deviation": deviation.item(),
        "num_processes": accelerator.num_processes,
        "lora_checksum_by_rank": checksums.tolist(),
        "seconds": round(time.time() - started, 2),
        "load_seconds": round(load_seconds, 2),
        **stage_memory(),
    }
    if objective.needs_reference:
        metrics["kl_reference"] = totals[3].item() / pairs_total
    metrics.update(unit_info)
    if accelerator.scaler is not None:
        metrics["grad_scale"] = float(accelerator.scaler.get_scale())
        metrics["grad_scaler_resumed"] = bool(scaler_resumed)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tmp = records.stage_tmp_dir(round_dir, STAGE)
        os.makedirs(os.path.join(tmp, "lora"), exist_ok=True)
        save_lora(accelerator.unwrap_model(unet), os.path.join(tmp, "lora"))
        files = {
            f"lora/{records.LORA_WEIGHTS_NAME}": records.file_sha256(
                os.path.join(tmp, "lora", records.LORA_WEIGHTS_NAME)
            ),
            f"lora/{OPTIMIZER_NAME}": save_optimizer(
                optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer,
                names,
                os.path.join(tmp, "lora", OPTIMIZER_NAME),
                accelerator.scaler,
            ),
        }
        metrics["bytes_written"] = records.files_nbytes(tmp, files)  # LoRA + AdamW state
        files["metrics.json"] = records.write_json(os.path.join(tmp, "metrics.json"), metrics)
        records.finish_stage(round_dir, STAGE, metrics, files, config)
    accelerator.wait_for_everyone()
    return metrics
