"""The three stages of a round, as functions of (config, accelerator).

``run_sample.py``, ``run_select.py`` and ``run_train.py`` each run one of them in its own process
(the official layout); ``python -m b2diffurl.round`` runs all three in one process, so a round pays
for the imports and the accelerator once (run_process.sh's ``OneProcess=1``). Each function checks
its stage (the config, the previous stage's marker) before any model loads, does the work or skips a
finished stage, and prints the stage's one summary line on the main process.
"""

import os
import time

from b2diffurl import cli, layout, records
from b2diffurl.checks import check_stage
from b2diffurl.summaries import read_summary


def sample(config, accelerator):
    """Stage 1: branch-based DDIM sampling of the round to disk."""
    check_stage(config, "sample", accelerator.num_processes)
    cli.lock_run_folder(config)
    from b2diffurl.models import load_policy
    from b2diffurl.sampler import finished_summary, sample_round

    summary = finished_summary(config, accelerator)
    state = "already done, skipped"
    if summary is None:
        started = time.perf_counter()
        pipeline = load_policy(config, accelerator.device)
        pipeline.unet.eval()
        summary = sample_round(config, accelerator, pipeline, load_seconds=time.perf_counter() - started)
        state = f"{summary.seconds:.1f} s"
    if accelerator.is_main_process:
        print(
            f"sample {config.run_name}: {summary.trajectories} trajectories, {summary.images} images, "
            f"{summary.bytes_written / 2**20:.1f} MiB written to {layout.round_dir(config)} ({state})"
        )


def select(config, accelerator):
    """Stage 2: score, normalise per prompt, select the contrastive pairs (main process; the others wait)."""
    check_stage(config, "select")
    cli.lock_run_folder(config)
    round_dir = layout.round_dir(config)
    summary, state = None, "already done, skipped"
    if accelerator.is_main_process:
        marker = records.finished(round_dir, "select")
        summary = None if marker is None else read_summary(marker, "select")
        if summary is None:
            from b2diffurl.rewards import build_reward
            from b2diffurl.selection import select_round

            started = time.perf_counter()
            reward = build_reward(config.reward, accelerator.device)
            summary = select_round(
                config, reward, round_dir, os.path.dirname(round_dir), load_seconds=time.perf_counter() - started
            )
            state = f"{summary.seconds:.1f} s"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        components = "".join(f", {name} {mean:.4f}" for name, mean in (summary.reward_components or {}).items())
        print(
            f"select {config.run_name}: reward {summary.reward_mean:.4f} +- {summary.reward_std:.4f}{components} "
            f"over {summary.trajectories} images, {summary.selected} trajectories selected, "
            f"history of {summary.history_rounds} rounds ({state})"
        )


def train(config, accelerator):
    """Stage 3: PPO (or the configured objective) on the LoRA over the interval's timesteps."""
    check_stage(config, "train", accelerator.num_processes)
    cli.lock_run_folder(config)
    round_dir = layout.round_dir(config)
    if accelerator.is_main_process:
        records.finished(round_dir, "train")  # completes a finish that a stop interrupted
    accelerator.wait_for_everyone()
    if records.is_done(round_dir, "train"):
        metrics, state = read_summary(records.read_marker(round_dir, "train"), "train"), "already done, skipped"
    else:
        from b2diffurl.models import load_policy
        from b2diffurl.trainer import train_round

        started = time.perf_counter()
        pipeline = load_policy(config, accelerator.device)
        metrics = train_round(config, accelerator, pipeline, round_dir, load_seconds=time.perf_counter() - started)
        state = f"{metrics.seconds:.1f} s"
        if accelerator.is_main_process:  # once per round: a rerun that finds train.done logs nothing
            from b2diffurl import tracking

            tracking.log_round(config, layout.round_index(config.run_name)[1], round_dir)
    if accelerator.is_main_process:
        print(
            f"train {config.run_name}: loss {metrics.loss:.4f}, approx KL {metrics.approx_kl:.2e}, "
            f"clip fraction {metrics.clipfrac:.3f}, grad norm {metrics.grad_norm:.3f}, "
            f"{metrics.optimizer_steps} optimizer steps on {metrics.trajectories_selected} trajectories ({state})"
        )


STAGES = {"sample": sample, "select": select, "train": train}
