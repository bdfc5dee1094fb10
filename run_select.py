"""Stage 2 of a B2-DiffuRL round: score, normalise per prompt, select the contrastive pairs.

    python run_select.py --config config/stage_process.py --config.exp_name X --config.run_name round_003 \
        --config.eval.history_cnt 8 --config.eval.pos_threshold 0.5 --config.eval.neg_threshold -0.5

Reads the round's images and prompts (stage 1), and the scores.json of the last eval.history_cnt
rounds; writes scores.json and selected.safetensors, then select.done. Under accelerate launch the
work is done once, by the main process.
"""

import os
import time

from b2diffurl import cli

FLAGS = cli.define_config_flag("Selection configuration.")


def main(_):
    from b2diffurl import records
    from b2diffurl.checks import check_stage

    config = FLAGS.config
    check_stage(config, "select")
    round_dir = records.round_dir(config)
    exp_dir = os.path.dirname(round_dir)
    accelerator = cli.make_accelerator(config)
    cli.lock_run_folder(config)
    summary, state = None, "already done, skipped"
    if accelerator.is_main_process:
        summary = records.finished(round_dir, "select")
        if summary is None:
            from b2diffurl.rewards import build_reward
            from b2diffurl.selection import select_round

            started = time.perf_counter()
            reward = build_reward(config.reward, accelerator.device)
            summary = select_round(config, reward, round_dir, exp_dir, load_seconds=time.perf_counter() - started)
            state = f"{summary['seconds']:.1f} s"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        print(
            f"select {config.run_name}: reward {summary['reward_mean']:.4f} +- {summary['reward_std']:.4f} over "
            f"{summary['trajectories']} images, {summary['selected']} trajectories selected, "
            f"history of {summary['history_rounds']} rounds ({state})"
        )


if __name__ == "__main__":
    cli.run(main)
