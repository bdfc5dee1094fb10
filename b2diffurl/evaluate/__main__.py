"""``python -m b2diffurl.evaluate``: evaluate the policies ``--rounds`` names on every prompt set of the
run's config, skipping the evaluations that are still current (see b2diffurl.evaluate)."""

import os

from b2diffurl import cli, layout, records
from b2diffurl.checks import check_config
from b2diffurl.evaluate.judge import Judge
from b2diffurl.evaluate.plan import parse_rounds, settings
from b2diffurl.evaluate.policy import evaluate_policy, is_current, lora_sha256, summary_line

FLAGS = None  # defined when run as a command (define_flags), so that importing the package defines no flags


def define_flags():
    global FLAGS
    FLAGS = cli.define_config_flag(
        "Evaluation configuration (the run's config: its exp_name, save_path, model, reward)."
    )
    cli.flags.DEFINE_string(
        "rounds",
        "last",
        "which policies: comma-separated 'base', round numbers or names, 'all' (every trained round), 'last'.",
    )


def check(config, num_processes):
    """The config and the evaluation's fields and prompt files (all problems at once); returns {set: prompts}."""
    checker, _ = check_config(config, num_processes, eval_prompts=True)
    checker.raise_first()
    return checker.eval_prompts


def pending(config, accelerator, exp_dir, wanted_rounds, prompt_sets):
    """[(name, r, lora, [prompt sets to do])] of the policies with an evaluation to do; prints the line
    of every evaluation that is still current."""
    todo = []
    for name, r in wanted_rounds:
        lora = lora_sha256(exp_dir, name)  # read and verified once per policy
        sets = []
        for prompt_set, prompts in prompt_sets.items():
            json_path = layout.eval_json(exp_dir, name, prompt_set)
            if is_current(json_path, lora, settings(config, prompt_set, prompts)):
                if accelerator.is_main_process:
                    print(summary_line(records.read_json(json_path), "already done, skipped"))
            else:
                sets.append(prompt_set)
        if sets:
            todo.append((name, r, lora, sets))
    return todo


def evaluate_pending(config, accelerator, exp_dir, todo, prompt_sets):
    """Load the base model once, then evaluate each policy of ``todo`` (:func:`pending`) in turn."""
    from b2diffurl.models import load_lora, load_policy

    config.resume_from = ""  # rounds are loaded below, one after another
    pipeline = load_policy(config, accelerator.device)
    judge = Judge(config, accelerator.device) if accelerator.is_main_process else None
    pipeline.unet.eval()
    for name, r, lora, sets in todo:
        if r < 0:
            pipeline.unet.disable_adapters()  # the base model
        else:
            pipeline.unet.enable_adapters()
            load_lora(pipeline.unet, os.path.join(exp_dir, name, layout.LORA_DIR))
        for prompt_set in sets:
            prompts = prompt_sets[prompt_set]
            wanted = settings(config, prompt_set, prompts)
            result = evaluate_policy(
                config, accelerator, pipeline, judge, exp_dir, name, r, prompt_set, prompts, wanted, lora
            )
            if accelerator.is_main_process:
                print(summary_line(result, f"{result['seconds']:.1f} s"))
            accelerator.wait_for_everyone()


def main(_):
    config = FLAGS.config
    accelerator = cli.make_accelerator(config)
    prompt_sets = check(config, accelerator.num_processes)
    cli.lock_run_folder(config)
    exp_dir = layout.exp_dir(config)
    wanted_rounds = parse_rounds(FLAGS.rounds, exp_dir, config.run_name)
    accelerator.wait_for_everyone()
    todo = pending(config, accelerator, exp_dir, wanted_rounds, prompt_sets)
    accelerator.wait_for_everyone()  # every rank decided before the main one writes
    if todo:
        evaluate_pending(config, accelerator, exp_dir, todo, prompt_sets)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
