"""Config validation, once at the start of a stage, before any model is loaded.

Every problem is a :class:`ConfigError` whose message is one line naming the field, the value and
the fix; the stage scripts print it and exit with status 2.
"""

import json
import os
import re

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")


class ConfigError(ValueError):
    pass


def _require(ok, message):
    if not ok:
        raise ConfigError(message)


def check_prompts(config):
    """The prompts a round draws from, checked: ``[config.prompt]`` or the list in ``config.prompt_file``."""
    if config.prompt:
        return [config.prompt]
    path = config.prompt_file
    _require(bool(path), "prompt_file is empty and prompt is empty: set --config.prompt_file prompts/template1_train.json")
    _require(os.path.isfile(path), f"prompt_file={path!r} does not exist: pass a JSON list such as prompts/template1_train.json")
    try:
        with open(path) as f:
            prompts = json.load(f)
    except (OSError, ValueError) as err:
        raise ConfigError(f"prompt_file={path!r} is not valid JSON ({err}): it must hold a JSON list of strings") from None
    _require(
        isinstance(prompts, list) and all(isinstance(p, str) and p.strip() for p in prompts),
        f"prompt_file={path!r} must hold a JSON list of non-empty strings",
    )
    _require(len(prompts) > 0, f"prompt_file={path!r} holds an empty list: add at least one prompt")
    return prompts


def check_model(config):
    model = config.pretrained.model
    _require(bool(model), "pretrained.model is empty: set it to a local diffusers folder or a hub id such as CompVis/stable-diffusion-v1-4")
    if os.path.isdir(model) or config.pretrained.build_tiny:
        return
    looks_like_path = model.startswith((".", "/", "~")) or os.sep + os.sep in model or model.count("/") != 1
    _require(
        not looks_like_path and HUB_ID.match(model) is not None,
        f"pretrained.model={model!r} is neither an existing folder nor a hub id (owner/name): fix the path",
    )


def check_common(config, num_processes=1):
    """Fields every stage that loads the policy reads, and the sampling layout over processes."""
    sample = config.sample
    for name in ("exp_name", "run_name"):
        value = config[name]
        _require(bool(value) and "/" not in value and value not in (".", ".."), f"{name}={value!r} must be a plain folder name, e.g. round_000")
    _require(bool(config.save_path), "save_path is empty: set --config.save_path to an output folder")
    _require(isinstance(config.seed, int) and config.seed >= 0, f"seed={config.seed!r} must be an integer >= 0")
    _require(sample.num_steps >= 1, f"sample.num_steps={sample.num_steps} must be >= 1 (the paper uses 20)")
    _require(
        1 <= config.split_step <= sample.num_steps,
        f"split_step={config.split_step} is outside 1..{sample.num_steps} (sample.num_steps): pick the interval length k in that range",
    )
    _require(config.split_time >= 1, f"split_time={config.split_time} must be >= 1 branches (1 = no branching)")
    _require(
        0 < sample.eta <= 1,
        f"sample.eta={sample.eta} must lie in (0, 1]: 0 has no log-prob, above 1 the DDIM variance is undefined (the paper uses 1.0)",
    )
    _require(sample.guidance_scale >= 1.0, f"sample.guidance_scale={sample.guidance_scale} must be >= 1.0 (1.0 = no guidance)")
    _require(sample.batch_size >= 1, f"sample.batch_size={sample.batch_size} must be >= 1")
    _require(sample.num_batches_per_epoch >= 1, f"sample.num_batches_per_epoch={sample.num_batches_per_epoch} must be >= 1")
    _require(
        sample.num_batches_per_epoch % num_processes == 0,
        f"sample.num_batches_per_epoch={sample.num_batches_per_epoch} does not divide over {num_processes} processes: "
        f"use a multiple of {num_processes}",
    )
    _require(config.prompt_random_choose in (0, 1), f"prompt_random_choose={config.prompt_random_choose} must be 0 or 1")
    _require(config.mixed_precision in ("no", "fp16", "bf16"), f"mixed_precision={config.mixed_precision!r} must be no, fp16 or bf16")
    _require(config.lora.rank >= 1, f"lora.rank={config.lora.rank} must be >= 1")
    _require(len(config.lora.target_modules) > 0, "lora.target_modules is empty: use ('to_q', 'to_k', 'to_v', 'to_out.0')")
    if config.resume_from:
        from b2diffurl.models import LORA_WEIGHTS_NAME

        _require(
            os.path.isfile(os.path.join(config.resume_from, LORA_WEIGHTS_NAME)),
            f"resume_from={config.resume_from!r} holds no {LORA_WEIGHTS_NAME}: point it at the previous round's lora/ folder",
        )
    prompts = check_prompts(config)
    check_model(config)
    check_reward(config, prompts)


def check_reward(config, prompts):
    """The reward must be able to score this config's prompts: checked before sampling, not after it."""
    from b2diffurl.rewards import REWARDS, prompt_colour

    reward = config.reward
    _require(reward.name in REWARDS, f"reward.name={reward.name!r} is not a known reward: choose from {sorted(REWARDS)}")
    _require(reward.batch_size >= 1, f"reward.batch_size={reward.batch_size} must be >= 1")
    if reward.name == "colour":
        for prompt in prompts:
            try:
                prompt_colour(prompt)
            except ValueError:
                raise ConfigError(
                    f"reward.name='colour' cannot score prompt {prompt!r} (it names no colour): use --config.reward.name clipscore "
                    "or a prompt file such as prompts/template2_train.json"
                ) from None
    if reward.name == "clipscore":
        if reward.clip_model.endswith(".json"):
            _require(os.path.isfile(reward.clip_model), f"reward.clip_model={reward.clip_model!r} does not exist: fix the open_clip config path")
        if reward.clip_pretrained.endswith((".safetensors", ".pt", ".bin", ".pth")):
            _require(os.path.isfile(reward.clip_pretrained), f"reward.clip_pretrained={reward.clip_pretrained!r} does not exist: fix the checkpoint path")


def check_device(config, device_type):
    """fp16 needs an accelerator; refuse it on the CPU instead of failing deep inside a kernel."""
    _require(
        not (config.mixed_precision == "fp16" and device_type == "cpu"),
        "mixed_precision='fp16' needs a GPU and none is visible: pass --config.mixed_precision no (or bf16)",
    )


def _require_stage_done(config, stage, script):
    from b2diffurl.records import marker_path, round_dir

    path = marker_path(round_dir(config), stage)
    _require(os.path.isfile(path), f"run_name={config.run_name!r}: {path} is missing, so stage {stage!r} has not finished: run {script} first")


def check_select(config):
    """Fields stage 2 reads; the round must have finished sampling."""
    evaluation = config.eval
    check_common(config)
    _require(evaluation.history_cnt >= 0, f"eval.history_cnt={evaluation.history_cnt} must be >= 0 (the paper uses 8)")
    _require(
        re.search(r"\d$", config.run_name) is not None,
        f"run_name={config.run_name!r} must end with the round number (e.g. round_003) so earlier rounds' scores can be found",
    )
    _require_stage_done(config, "sample", "run_sample.py")


def check_train(config):
    """Fields stage 3 reads; the round must have finished selection."""
    from b2diffurl.objectives import OBJECTIVES

    train = config.train
    check_common(config)
    _require(train.algorithm in OBJECTIVES, f"train.algorithm={train.algorithm!r} is not known: choose from {sorted(OBJECTIVES)}")
    for name in ("batch_size", "gradient_accumulation_steps", "num_epochs", "forward_chunk"):
        _require(train[name] >= 1, f"train.{name}={train[name]} must be >= 1")
    for name in ("learning_rate", "eps", "adv_clip_max", "max_grad_norm", "adam_epsilon"):
        _require(train[name] > 0, f"train.{name}={train[name]} must be > 0")
    _require(0 <= train.adam_beta1 < 1 and 0 <= train.adam_beta2 < 1, f"train.adam_beta1/2=({train.adam_beta1}, {train.adam_beta2}) must lie in [0, 1)")
    _require_stage_done(config, "select", "run_select.py")
