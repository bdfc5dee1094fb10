"""What an evaluation covers: the policies ``--rounds`` names, the settings its numbers depend on, the
method and the reward queries its JSON reports."""

import os

from b2diffurl import layout, records
from b2diffurl.checks import eval_metrics
from b2diffurl.errors import ConfigError

FORMAT_VERSION = 2  # 2: prompt sets, num_images, per-prompt Inception Score


def template_name(prompt_file):
    """template1 for .../template1_test.json; the file's stem otherwise."""
    stem = os.path.splitext(os.path.basename(prompt_file))[0]
    for suffix in ("_test", "_train"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def method_of(config, split_time):
    """The run's method as the paper names it (Fig. 7/8, Tables 1-2), from its settings.

    Vanilla DPO samples its pairs as 2 branches from x_T (presets ddpo,dpo: k = T every round, as D3PO's
    pairs share their initial noise): that is the vanilla algorithm, not branch-based sampling."""
    process, steps = config.process, config.sample.num_steps
    bpt = process.split_step_left < steps  # trains a growing interval, not the whole trajectory from round 0
    dpo_pairs_from_x_T = config.train.algorithm == "dpo" and not bpt and split_time == 2
    branching = split_time > 1 and not dpo_pairs_from_x_T
    label = {
        (True, True): "B2-DiffuRL",
        (True, False): "BPT only",
        (False, True): "BS only",
        (False, False): "vanilla",
    }[(bpt, branching)]
    return {
        "label": label,
        "algorithm": config.train.algorithm,
        "split_time": split_time,
        "num_steps": steps,
        "split_step_left": process.split_step_left,
        "split_step_right": process.split_step_right,
    }


def _prefix_and_width(run_name):
    """("round_", 3) for round_003: how the run names its round folders."""
    prefix, _ = layout.round_index(run_name)
    return prefix, len(run_name) - len(prefix)


def trained_rounds(exp_dir, prefix):
    """[r] of the run's rounds named ``<prefix><number>`` that finished training (train.done), in order."""
    return [
        r for r, name in layout.round_folders(exp_dir, prefix) if records.is_done(os.path.join(exp_dir, name), "train")
    ]


def _policies_of(part, spec, exp_dir, trained, prefix, width):
    """[(name, r)] of one comma-separated part of ``--rounds``."""
    if part == layout.BASE:
        return [(layout.BASE, -1)]
    if part in ("all", "last"):
        if not trained:
            raise ConfigError(
                "rounds",
                spec,
                f"names trained rounds but {exp_dir} has none: train a round first, or evaluate --rounds base",
            )
        return [(layout.round_name(r, prefix, width), r) for r in (trained if part == "all" else trained[-1:])]
    digits = part[len(prefix) :] if part.startswith(prefix) else part
    if not digits.isdigit():
        raise ConfigError(
            "rounds",
            spec,
            f"has {part!r}: use base, all, last, round numbers (3) or names ({layout.round_name(3, prefix, width)})",
        )
    r = int(digits)
    if r not in trained:
        raise ConfigError(
            "rounds", spec, f"asks for round {r}, which has not finished training in {exp_dir} (no train.done)"
        )
    return [(layout.round_name(r, prefix, width), r)]


def parse_rounds(spec, exp_dir, run_name):
    """[(name, r)] of the policies ``spec`` names ('base' has r = -1); round names use run_name's prefix
    and width."""
    prefix, width = _prefix_and_width(run_name)
    trained = trained_rounds(exp_dir, prefix)
    wanted = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        wanted += _policies_of(part, spec, exp_dir, trained, prefix, width)
    if not wanted:
        raise ConfigError("rounds", spec, "names no policy: use base, all, last or round numbers")
    return list(dict.fromkeys(wanted))


def reward_queries(exp_dir, name, r):
    """Training images scored up to and including round r (0 for the base model), from the select markers."""
    if r < 0:
        return 0
    prefix, width = _prefix_and_width(name)
    return sum(
        records.read_marker(os.path.join(exp_dir, layout.round_name(i, prefix, width)), "select")["trajectories"]
        for i in range(r + 1)
    )


def metric_names(config):
    """``evaluate.metrics`` as a list of reward names, in order, without repeats and without clipscore
    (always reported): "bertscore, clipscore" -> ["bertscore"]."""
    return [n for n in eval_metrics(config) if n != "clipscore"]


def settings(config, prompt_set, prompts):
    """Everything an evaluation's numbers depend on besides the LoRA: a changed one redoes it."""
    return {
        "format_version": FORMAT_VERSION,
        "model": config.pretrained.model,
        "mixed_precision": config.mixed_precision,
        "allow_tf32": config.allow_tf32,
        "prompt_set": prompt_set,
        "prompts": prompts,
        "evaluate": {
            **{k: config.evaluate[k] for k in ("num_images", "seed", "batch_size", "is_splits", "grid_prompts")},
            "alignment": config.evaluate.get("alignment", ""),
            # only when set, so that evaluations written before the field existed stay current
            **({"metrics": metric_names(config)} if metric_names(config) else {}),
        },
        "sample": {k: config.sample[k] for k in ("num_steps", "guidance_scale", "eta")},
        "reward": config.reward.to_dict(),
        "label_set": "imagenet-1k",
    }
