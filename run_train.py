"""Stage 3 of a B2-DiffuRL round: PPO on the LoRA over the interval's timesteps.

    accelerate launch --num_processes 8 run_train.py --config config/stage_process.py \
        --config.exp_name X --config.run_name round_003 --config.resume_from ./model/lora/X/round_002/lora \
        --config.train.num_epochs 2 --config.train.gradient_accumulation_steps 32

Reads the round's selected.safetensors (stage 2) and samples/manifest.json; starts from
resume_from's LoRA and AdamW state; writes lora/ and metrics.json, then train.done.
"""

import time

from b2diffurl import cli

FLAGS = cli.define_config_flag("Training configuration.")


def main(_):
    from b2diffurl import records
    from b2diffurl.checks import check_stage

    config = FLAGS.config
    accelerator = cli.make_accelerator(config)
    check_stage(config, "train", accelerator.num_processes)
    cli.lock_run_folder(config)
    round_dir = records.round_dir(config)
    if accelerator.is_main_process:
        records.finished(round_dir, "train")  # completes a finish that a stop interrupted
    accelerator.wait_for_everyone()
    if records.is_done(round_dir, "train"):
        metrics, state = records.read_marker(round_dir, "train"), "already done, skipped"
    else:
        from b2diffurl.models import load_policy
        from b2diffurl.trainer import train_round

        started = time.perf_counter()
        pipeline = load_policy(config, accelerator.device)
        metrics = train_round(config, accelerator, pipeline, round_dir, load_seconds=time.perf_counter() - started)
        state = f"{metrics['seconds']:.1f} s"
        if accelerator.is_main_process:  # once per round: a rerun that finds train.done logs nothing
            from b2diffurl import schedule, tracking

            tracking.log_round(config, schedule.round_index(config.run_name)[1], round_dir)
    if accelerator.is_main_process:
        print(
            f"train {config.run_name}: loss {metrics['loss']:.4f}, approx KL {metrics['approx_kl']:.2e}, "
            f"clip fraction {metrics['clipfrac']:.3f}, grad norm {metrics['grad_norm']:.3f}, "
            f"{metrics['optimizer_steps']} optimizer steps on {metrics['trajectories_selected']} trajectories ({state})"
        )


if __name__ == "__main__":
    cli.run(main)
