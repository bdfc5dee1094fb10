"""Stage 1 of a B2-DiffuRL round: branch-based DDIM sampling to disk.

    python run_sample.py --config config/stage_process.py:tiny
    accelerate launch --num_processes 8 run_sample.py --config config/stage_process.py \
        --config.split_step 14 --config.split_time 3 --config.seed 300 --config.exp_name X \
        --config.run_name round_000 --config.save_path ./model/lora [--config.resume_from DIR/lora]

Writes <save_path>/<exp_name>/<run_name>/{samples/,images/,prompts.json,sample.done}
(format: b2diffurl/records.py). A finished round is skipped; an interrupted one resumes.
The work: b2diffurl.stages.sample.
"""

from b2diffurl import cli

FLAGS = cli.define_config_flag("Sampling configuration.")


def main(_):
    from b2diffurl import stages

    stages.sample(FLAGS.config, cli.make_accelerator(FLAGS.config))


if __name__ == "__main__":
    cli.run(main)
