"""Stage 2 of a B2-DiffuRL round: score, normalise per prompt, select the contrastive pairs.

    python run_select.py --config config/stage_process.py --config.exp_name X --config.run_name round_003 \
        --config.eval.history_cnt 8 --config.eval.pos_threshold 0.5 --config.eval.neg_threshold -0.5

Reads the round's images and prompts (stage 1), and the scores.json of the last eval.history_cnt
rounds; writes scores.json and selected.safetensors, then select.done. Under accelerate launch the
work is done once, by the main process. The work: b2diffurl.stages.select.
"""

from b2diffurl import cli

FLAGS = cli.define_config_flag("Selection configuration.")


def main(_):
    from b2diffurl import stages

    stages.select(FLAGS.config, cli.make_accelerator(FLAGS.config))


if __name__ == "__main__":
    cli.run(main)
