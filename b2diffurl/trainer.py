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

The pieces: the AdamW and its state file (:mod:`b2diffurl.optimizer_state`), the policy's log-prob
and its gradient over a batch (:mod:`b2diffurl.policy`), the epochs' batches
(:mod:`b2diffurl.train_batches`), the update loop (:mod:`b2diffurl.train_loop`), the summary and the
files the round leaves (:mod:`b2diffurl.train_record`). This module reads the round's inputs and
runs them in order.
"""

import os
import time

import torch
from tqdm.auto import tqdm

from b2diffurl import records
from b2diffurl.backbones import encode_prompts, negative_conditioning
from b2diffurl.errors import NonFiniteError, RecordError
from b2diffurl.layout import marker_path
from b2diffurl.objectives import advantages_from_scores, make_objective
from b2diffurl.optimizer_state import round_optimizer, trainable_parameters
from b2diffurl.policy import Policy
from b2diffurl.train_batches import RoundData, plan_batches, training_units
from b2diffurl.train_loop import RoundUpdates, train_epochs
from b2diffurl.train_record import save_round, summarise
from b2diffurl.trajectories import trajectories_from_tensors


def used_prompt_embeds(pipeline, prompt_list, prompt_ids):
    """Conditioning of P = len(prompt_list) rows indexed by prompt id, of the prompts ``prompt_ids`` [N]
    uses (the others stay zero: a round's selected trajectories use few of the list's prompts, and
    encoding all of them would cost more than the training at small sizes)."""
    used = torch.unique(prompt_ids)  # [U]
    if not len(used):  # nothing selected: one row is encoded so the conditioning has its shape
        used = torch.zeros(1, dtype=torch.long)
    return encode_prompts(pipeline, [prompt_list[i] for i in used.tolist()]).placed(used, len(prompt_list))


def check_interval_latents(round_dir):
    """A round whose interval latents were deleted after an earlier training (process.save_interval)
    is retrained only from its sampling: say so instead of naming one missing file after another."""
    if not os.path.exists(os.path.join(round_dir, "samples")) and not os.path.exists(
        os.path.join(round_dir, "selected.safetensors")
    ):
        raise RecordError(
            f"{round_dir} holds no interval latents (samples/, selected.safetensors): they were deleted once the "
            "round was trained (process.save_interval, SaveInterval, keeps every n-th round's; 0 keeps none). To "
            f"train it again, delete {marker_path(round_dir, 'sample')} and rerun: the round is redone from its "
            "sampling (same seeds)"
        )


def read_inputs(config, pipeline, round_dir):
    """(selected Trajectories, their other tensors, advantages [N], prompt Conditioning of P rows,
    the negative Conditioning) of a round, its files verified against their stages' markers."""
    train = config.train
    check_interval_latents(round_dir)
    manifest = records.read_verified_json(round_dir, "sample", "samples/manifest.json")
    tensors, _ = records.read_verified_tensors(round_dir, "select", "selected.safetensors")
    selected, extra = trajectories_from_tensors(tensors)
    advantages = advantages_from_scores(extra["normalised"].float(), train.adv_clip_max, train.beta1, train.beta2)
    if not torch.isfinite(advantages).all():
        raise NonFiniteError(
            f"train {config.run_name}: the advantages are NaN/inf (train.beta1={train.beta1}, "
            f"train.beta2={train.beta2}, train.adv_clip_max={train.adv_clip_max}); nothing was saved: use finite "
            "values"
        )
    with torch.no_grad():
        prompt_embeds = used_prompt_embeds(pipeline, manifest["prompt_list"], selected.prompt_ids)  # P rows
        negative_embeds = negative_conditioning(pipeline)  # one row
    return selected, extra, advantages, prompt_embeds, negative_embeds


def train_round(config, accelerator, pipeline, round_dir, load_seconds=0.0):
    """Stage 3 for one round; writes lora/ (weights + optimizer) and metrics.json, then the marker,
    and returns the round's :class:`~b2diffurl.summaries.TrainSummary`.

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
    train, sample, unet = config.train, config.sample, pipeline.unet
    named = trainable_parameters(unet)
    names, params = [n for n, _ in named], [p for _, p in named]
    optimizer, state, scaler_resumed = round_optimizer(config, accelerator, names, params)
    selected, extra, advantages, prompt_embeds, negative_embeds = read_inputs(config, pipeline, round_dir)
    pipeline.scheduler.set_timesteps(sample.num_steps, device=accelerator.device)
    objective = make_objective(train)
    units, unit_info = training_units(selected, extra, objective)
    plan = plan_batches(len(units), units.shape[1], train, accelerator.num_processes)
    updates = RoundUpdates(config, accelerator, params, optimizer, plan)
    generator = torch.Generator().manual_seed(config.seed * 1000 + accelerator.process_index)
    unet.train()
    if train.gradient_checkpointing:  # activations recomputed in backward: less memory, same gradient
        unet.enable_gradient_checkpointing()
    progress = tqdm(
        total=plan.total_batches,
        desc=f"training {config.run_name}",
        disable=not accelerator.is_main_process,
        dynamic_ncols=True,
    )
    for p in params:
        p.grad = torch.zeros_like(p)
    policy = Policy(unet, pipeline.scheduler, negative_embeds, sample.guidance_scale, sample.eta)
    with progress:  # closed before an error is printed
        train_epochs(
            updates, policy, objective, RoundData(selected, units, prompt_embeds, advantages), generator, progress
        )
    summary = summarise(
        updates,
        objective,
        unit_info,
        fresh_optimizer=state is None,
        trajectories_selected=len(selected),
        scaler_resumed=scaler_resumed,
        started=started,
        load_seconds=load_seconds,
    )
    save_round(config, accelerator, round_dir, unet, optimizer, names, summary)
    return summary
