"""One policy's evaluation on one prompt set: its JSON and grid in ``<round>/eval/`` (``base/eval/`` for
the base model), and when a finished one is still current (same LoRA, same settings) and is skipped."""

import os
import time

from b2diffurl import layout, records, tracking
from b2diffurl.checks import eval_prompt_file
from b2diffurl.evaluate.grid import policy_grid
from b2diffurl.evaluate.judge import check_finite
from b2diffurl.evaluate.plan import FORMAT_VERSION, method_of, reward_queries, template_name
from b2diffurl.evaluate.sampling import item_prompts, sample_images
from b2diffurl.grids import png_bytes


def lora_sha256(exp_dir, name):
    """sha256 of a round's LoRA, verified against its train.done ("" for the base model)."""
    if name == layout.BASE:
        return ""
    return records.sha256(
        records.read_verified(os.path.join(exp_dir, name), "train", f"{layout.LORA_DIR}/{records.LORA_WEIGHTS_NAME}")
    )


def is_current(json_path, lora, wanted):
    """True when an evaluation exists for this LoRA and these settings."""
    if not os.path.isfile(json_path):
        return False
    try:
        done = records.read_json(json_path)
    except records.RecordError:
        return False
    return done.get("lora_sha256") == lora and done.get("settings") == wanted


def _base_model_config(exp_dir):
    """The base model's run settings from the run's settings.json: {"train", "split_time", "seed"}, or None."""
    path = layout.settings_path(exp_dir)
    flat = records.read_json(path)["config"] if os.path.isfile(path) else None
    if flat is None:
        return None
    return {
        "train": {k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith("train.")},
        "split_time": flat["split_time"],
        "seed": flat["seed"],
    }


def run_of(exp_dir, name, r):
    """The training settings that matter to a comparison (algorithm, learning rate, run seed, branches,
    accumulation), from the round's train.done (the base model: from the run's settings.json), or {}
    for a run folder that recorded none."""
    if r >= 0:
        config = records.read_marker(os.path.join(exp_dir, name), "train").get("config")
        seed = config["seed"] - r if config else None
    else:
        config = _base_model_config(exp_dir)
        seed = config["seed"] if config else None
    if not config:
        return {}
    train = config["train"]
    return {
        "algorithm": train["algorithm"],
        "learning_rate": train["learning_rate"],
        "seed": seed,
        "split_time": config["split_time"],
        "gradient_accumulation_steps": train["gradient_accumulation_steps"],
    }


def evaluate_policy(config, accelerator, pipeline, judge, exp_dir, name, r, prompt_set, prompts, wanted, lora):
    """Evaluate one policy (the pipeline with its LoRA loaded; ``lora``: its verified sha256, "" for the
    base model) on one prompt set and write its JSON and grid; returns the JSON dict (main process)."""
    started = time.time()
    evaluate = config.evaluate
    images = sample_images(pipeline, prompts, config, accelerator)
    if not accelerator.is_main_process:
        return None
    scores = judge(images, item_prompts(prompts, evaluate.num_images), evaluate.is_splits)
    check_finite(scores, f"evaluate {name} on {prompt_set}")
    grid_path = layout.eval_grid(exp_dir, name, prompt_set)
    os.makedirs(layout.eval_dir(exp_dir, name), exist_ok=True)
    grid = policy_grid(images, prompts, evaluate, name, r, prompt_set)
    records.write_bytes(grid_path, png_bytes(grid))
    split_time = 1 if r < 0 else records.read_marker(os.path.join(exp_dir, name), "sample")["split_time"]
    prompt_file = eval_prompt_file(config, prompt_set)
    result = {
        "format_version": FORMAT_VERSION,
        "round": name,
        "round_index": r,
        "prompt_set": prompt_set,
        "prompt_file": prompt_file,
        "template": template_name(prompt_file or config.prompt_file),
        "reward_queries": reward_queries(exp_dir, name, r),
        "num_prompts": len(prompts),
        "num_images": len(images),
        "seed": evaluate.seed,
        **{k: v for k, v in scores.items() if k != "per_prompt"},
        "method": {"label": "base model", "algorithm": ""} if r < 0 else method_of(config, split_time),
        "run": run_of(exp_dir, name, r),
        "grid": os.path.basename(grid_path),
        "grid_prompts": prompts[: min(evaluate.grid_prompts, len(prompts))],
        "per_prompt": scores["per_prompt"],
        "lora_sha256": lora,
        "settings": wanted,
        "seconds": round(time.time() - started, 2),
    }
    records.write_json(layout.eval_json(exp_dir, name, prompt_set), result)  # last: finished iff its JSON exists
    if config.get("log_with"):
        tracking.log_evaluation(config, r, result, grid)
    return result


def summary_line(result, state):
    """The line printed for an evaluation: its main numbers and ``state`` (its seconds, or skipped)."""
    alignment = ""
    if "alignment_mean" in result:
        alignment = (
            f"alignment {result['alignment_mean']:.1%} +- {result['alignment_sem']:.1%}, "
            f"background entropy {result['background_entropy']:.2f} bits, "
        )
    return (
        f"eval {result['round']} on {result['prompt_set']} "
        f"({result['num_prompts']} prompts, {result['num_images']} images): "
        f"{alignment}CLIPScore {result['clipscore_mean']:.4f} +- {result['clipscore_sem']:.4f}, "
        f"IS per prompt {result['inception_score_per_prompt']:.3f} "
        f"+- {result['inception_score_per_prompt_sem']:.3f}, "
        f"pooled IS {result['inception_score']:.3f}, {result['reward_queries']} reward queries ({state})"
    )
