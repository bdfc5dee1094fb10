"""What a trained round reports and leaves: its :class:`~b2diffurl.summaries.TrainSummary`, ``lora/``
(the LoRA in diffusers format and the AdamW state), ``metrics.json`` and the ``train.done`` marker.

The summary's numbers are reduced over every rank (sums of the per-pair losses and statistics, the
largest first-step ratio deviation, each rank's LoRA checksum); only the main process writes.
"""

import os
import time

import torch

from b2diffurl import records
from b2diffurl.atomic import file_sha256, files_nbytes, write_json
from b2diffurl.layout import LORA_DIR, stage_tmp_dir
from b2diffurl.models import save_lora
from b2diffurl.optimizer_state import OPTIMIZER_NAME, save_round_optimizer
from b2diffurl.perf import stage_memory
from b2diffurl.summaries import TrainSummary
from b2diffurl.train_loop import SUMMED

STAGE = "train"


def lora_checksum(params):
    """Two float64 numbers that differ when the LoRA weights differ (compared across ranks). -> [2]"""
    flat = torch.cat([p.detach().flatten().double().cpu() for p in params])
    weights = torch.arange(1, len(flat) + 1, dtype=torch.float64) / len(flat)
    return torch.stack([flat.sum(), (flat * weights).sum()])


def summarise(
    updates, objective, unit_info, *, fresh_optimizer, trajectories_selected, scaler_resumed, started, load_seconds
):
    """The round's :class:`TrainSummary` from its :class:`~b2diffurl.train_loop.RoundUpdates` (every
    rank takes part: the sums are reduced over processes). ``started``: ``time.time()`` at the round's start."""
    config, accelerator = updates.config, updates.accelerator
    train, device = config.train, accelerator.device
    totals = accelerator.reduce(
        torch.tensor([updates.stats[key] for key in SUMMED], dtype=torch.float64, device=device), reduction="sum"
    )
    deviation = accelerator.reduce(torch.tensor([updates.first_step_deviation], device=device), reduction="max")
    checksums = accelerator.gather(lora_checksum(updates.params).to(device).reshape(1, 2)).cpu()  # [processes, 2]
    pairs_total = max(totals[4].item(), 1.0)
    grad_norms = updates.grad_norms
    summary = TrainSummary(
        algorithm=train.algorithm,
        loss=totals[0].item() / pairs_total,
        approx_kl=totals[1].item() / pairs_total,
        clipfrac=totals[2].item() / pairs_total,
        grad_norm=sum(grad_norms) / len(grad_norms) if grad_norms else 0.0,
        optimizer_steps=updates.steps_done,
        skipped_steps=updates.skipped_steps,
        partial_step=train.partial_step,
        dropped_batches=updates.dropped_batches,
        fresh_optimizer=fresh_optimizer,
        trajectories_selected=trajectories_selected,
        trajectories_used=updates.plan.trajectories_used(accelerator.num_processes, train.num_epochs),
        partial_batch=train.partial_batch,
        pairs=int(totals[4].item()),
        first_step_max_ratio_deviation=deviation.item(),
        num_processes=accelerator.num_processes,
        lora_checksum_by_rank=checksums.tolist(),
        seconds=round(time.time() - started, 2),
        load_seconds=round(load_seconds, 2),
        extra={**stage_memory()},
    )
    if objective.needs_reference:
        summary.extra["kl_reference"] = totals[3].item() / pairs_total
    summary.extra.update(unit_info)
    if accelerator.scaler is not None:
        summary.extra["grad_scale"] = float(accelerator.scaler.get_scale())
        summary.extra["grad_scaler_resumed"] = bool(scaler_resumed)
    return summary


def save_round(config, accelerator, round_dir, unet, optimizer, names, summary):
    """Write the round's lora/ (weights + AdamW state), metrics.json and train.done from the main
    process, with ``bytes_written`` (LoRA + AdamW state) added to ``summary``; every rank waits."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tmp = stage_tmp_dir(round_dir, STAGE)
        lora = os.path.join(tmp, LORA_DIR)
        os.makedirs(lora, exist_ok=True)
        save_lora(accelerator.unwrap_model(unet), lora)
        files = {
            f"{LORA_DIR}/{records.LORA_WEIGHTS_NAME}": file_sha256(os.path.join(lora, records.LORA_WEIGHTS_NAME)),
            f"{LORA_DIR}/{OPTIMIZER_NAME}": save_round_optimizer(
                optimizer, names, os.path.join(lora, OPTIMIZER_NAME), accelerator.scaler
            ),
        }
        summary.extra["bytes_written"] = files_nbytes(tmp, files)
        record = summary.record()
        files["metrics.json"] = write_json(os.path.join(tmp, "metrics.json"), record)
        records.finish_stage(round_dir, STAGE, record, files, config)
    accelerator.wait_for_everyone()
