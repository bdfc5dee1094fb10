"""Stage 3 of a B2-DiffuRL round: PPO on the LoRA over the interval's timesteps.

    accelerate launch --num_processes 8 run_train.py --config config/stage_process.py \
        --config.exp_name X --config.run_name round_003 --config.resume_from ./model/lora/X/round_002/lora \
        --config.train.num_epochs 2 --config.train.gradient_accumulation_steps 32

Reads the round's selected.safetensors (stage 2) and samples/manifest.json; starts from
resume_from's LoRA and AdamW state; writes lora/ and metrics.json, then train.done.
The work: b2diffurl.stages.train.
"""

from b2diffurl import cli

FLAGS = cli.define_config_flag("Training configuration.")


def main(_):
    from b2diffurl import stages

    stages.train(FLAGS.config, cli.make_accelerator(FLAGS.config))


if __name__ == "__main__":
    cli.run(main)
