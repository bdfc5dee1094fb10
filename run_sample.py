"""Stage 1 of a B2-DiffuRL round: branch-based DDIM sampling to disk.

    python run_sample.py --config config/stage_process.py:tiny
    accelerate launch --num_processes 8 run_sample.py --config config/stage_process.py \
        --config.split_step 14 --config.split_time 3 --config.seed 300 --config.exp_name X \
        --config.run_name round_000 --config.save_path ./model/lora [--config.resume_from DIR/lora]

Writes <save_path>/<exp_name>/<run_name>/{samples/,images/,prompts.json,sample.done}
(format: b2diffurl/records.py). A finished round is skipped; an interrupted one resumes.
"""

import time

from b2diffurl import cli

FLAGS = cli.define_config_flag("Sampling configuration.")


def main(_):
    from b2diffurl.checks import check_stage

    config = FLAGS.config
    accelerator = cli.make_accelerator(config)
    check_stage(config, "sample", accelerator.num_processes)
    cli.lock_run_folder(config)

    from b2diffurl.models import load_policy
    from b2diffurl.records import round_dir
    from b2diffurl.sampler import finished_summary, sample_round

    summary = finished_summary(config, accelerator)
    state = "already done, skipped"
    if summary is None:
        started = time.perf_counter()
        pipeline = load_policy(config, accelerator.device)
        pipeline.unet.eval()
        summary = sample_round(config, accelerator, pipeline, load_seconds=time.perf_counter() - started)
        state = f"{summary['seconds']:.1f} s"
    if accelerator.is_main_process:
        print(
            f"sample {config.run_name}: {summary['trajectories']} trajectories, {summary['images']} images, "
            f"{summary['bytes_written'] / 2**20:.1f} MiB written to {round_dir(config)} ({state})"
        )


if __name__ == "__main__":
    cli.run(main)
