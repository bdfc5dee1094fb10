"""Config validation, before any model is loaded and before anything is written.

Every problem is a :class:`ConfigError` naming the field, the value and the fix, one line each. A
:class:`Checker` collects all of them instead of stopping at the first; ``run_process.sh`` checks
a whole run this way (every round's settings) before round 0, and names the driver variable the
user set in place of the config field (``BatchCnt=0``, not ``sample.num_batches_per_epoch=0``).

Light imports only (no torch, unless a check needs the device or open_clip's model list): the
driver runs these checks in a fraction of a second.
"""

import copy
import json
import math
import os
import re

from b2diffurl import backbones
from b2diffurl.errors import ConfigError, RecordError, first_line

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")
PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.+=@,-]+$")
MIXED_PRECISION = ("no", "fp16", "bf16")
ALGORITHMS = ("ppo", "pg", "dpok", "dpo")  # b2diffurl.objectives.OBJECTIVES (kept in step by a test)
PARTIAL_STEPS = ("scale", "drop")  # train.partial_step
PARTIAL_BATCHES = ("weight", "drop")  # train.partial_batch
DPO_REFERENCES = (
    "base",
    "sampling",
)  # train.dpo_reference (b2diffurl.objectives.DPO_REFERENCES, kept in step by a test)
REWARD_NAMES = ("clipscore", "colour", "bertscore", "toycaption")  # b2diffurl.rewards.REWARDS (kept in step by a test)
REWARD_PRECISIONS = ("fp32", "fp16", "bf16")  # b2diffurl.rewards.PRECISIONS (kept in step by a test)
LATENT_DTYPES = ("fp16", "fp32")  # sample.latent_dtype (b2diffurl.models.STORAGE_DTYPES, kept in step by a test)
ATTENTIONS = ("sdpa", "math")  # runtime.attention (b2diffurl.models.ATTENTION_PROCESSORS, kept in step by a test)
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".bin", ".pth")


def get(config, field):
    """``config`` value at a dotted field name (``train.learning_rate``)."""
    value = config
    for part in field.split("."):
        value = value[part]
    return value


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Checker:
    """Collects problems; each check returns whether it passed, so dependent checks can be skipped."""

    def __init__(self, config):
        self.config = config
        self.problems = []

    def require(self, ok, field, value, text):
        if not ok:
            self.problems.append(ConfigError(field, value, text))
        return bool(ok)

    def integer(self, field, low, high=None, hint=""):
        """``field`` is an int in low..high."""
        value = get(self.config, field)
        if not self.require(_is_int(value), field, value, f"must be an integer{hint}"):
            return False
        if high is not None:
            return self.require(low <= value <= high, field, value, f"is outside {low}..{high}{hint}")
        return self.require(value >= low, field, value, f"must be >= {low}{hint}")

    def number(self, field, low=None, *, above=False, below=None, allow_inf=False, hint=""):
        """``field`` is a number (finite unless ``allow_inf``, never NaN), >= low (> low if ``above``), < below."""
        value = get(self.config, field)
        if not self.require(_is_number(value) and not math.isnan(value), field, value, f"must be a number{hint}"):
            return False
        if not self.require(allow_inf or math.isfinite(value), field, value, f"must be finite{hint}"):
            return False
        if low is not None and not self.require(
            value > low if above else value >= low, field, value, f"must be {'>' if above else '>='} {low:g}{hint}"
        ):
            return False
        return below is None or self.require(value < below, field, value, f"must be < {below:g}{hint}")

    def flag(self, field):
        value = get(self.config, field)
        return self.require(isinstance(value, bool), field, value, "must be True or False")

    def raise_first(self):
        """Raise the first problem, carrying all of them (``err.problems``), if there is any."""
        if self.problems:
            first = self.problems[0]
            first.problems = list(self.problems)
            raise first


def check_prompts(config, checker=None):
    """The prompts a round draws from, checked: ``[config.prompt]`` or the list in ``config.prompt_file``."""
    c = checker or Checker(config)
    prompts = None
    if config.prompt:
        prompts = [config.prompt]
    elif c.require(
        bool(config.prompt_file),
        "prompt_file",
        config.prompt_file,
        "is empty and prompt is empty: set it to a JSON list such as prompts/template1_train.json",
    ):
        path = config.prompt_file
        missing = "does not exist" if not os.path.exists(path) else "is not a file"
        if c.require(
            os.path.isfile(path),
            "prompt_file",
            path,
            f"{missing}: pass a JSON list such as prompts/template1_train.json",
        ):
            try:
                with open(path) as f:
                    prompts = json.load(f)
            except (OSError, ValueError) as err:
                c.require(False, "prompt_file", path, f"is not valid JSON ({err}): it must hold a JSON list of strings")
            if prompts is not None and not (
                isinstance(prompts, list) and all(isinstance(p, str) and p.strip() for p in prompts)
            ):
                c.require(False, "prompt_file", path, "must hold a JSON list of non-empty strings")
                prompts = None
            elif prompts is not None and not c.require(
                len(prompts) > 0, "prompt_file", path, "holds an empty list: add at least one prompt"
            ):
                prompts = None
    if checker is None:
        c.raise_first()
    return prompts


def check_model(c):
    config = c.config
    model = config.pretrained.model
    if not c.require(
        isinstance(model, str) and bool(model),
        "pretrained.model",
        model,
        "is empty: set it to a local diffusers folder or a hub id such as CompVis/stable-diffusion-v1-4",
    ):
        return
    if config.pretrained.build_tiny:
        return
    check_model_location(
        c, "pretrained.model", model, "model_index.json", "a diffusers pipeline folder (save_pretrained's output)"
    )
    if os.path.isfile(os.path.join(model, "model_index.json")):
        check_backbone(c, model, lambda: backbones.read_model_index(model))


def check_backbone(c, model, read_index):
    """The checkpoint's model_index.json (``read_index()``) names a supported backbone with all its parts."""
    try:
        index = read_index()
    except (OSError, ValueError) as err:
        c.require(
            False,
            "pretrained.model",
            model,
            f"has an unreadable model_index.json ({first_line(err)}): fix or re-download the checkpoint",
        )
        return
    problem = backbones.index_problem(index)
    c.require(problem is None, "pretrained.model", model, problem)


def check_model_location(c, field, path, marker, folder_kind, hub_kind=""):
    """``path`` is a local folder holding ``marker`` (a saved model of ``folder_kind``) or looks like a
    hub id (owner/name; whether it is cached is environment_problems' check)."""
    if os.path.isdir(path):
        c.require(
            os.path.isfile(os.path.join(path, marker)),
            field,
            path,
            f"is a folder without {marker}: point it at {folder_kind}",
        )
        return
    looks_like_path = path.startswith((".", "/", "~")) or os.sep + os.sep in path or path.count("/") != 1
    c.require(
        not looks_like_path and HUB_ID.match(path) is not None,
        field,
        path,
        f"is neither an existing folder nor a hub id (owner/name){hub_kind}: fix the path",
    )


def check_reward(c, prompts):
    """The reward must be able to score this config's prompts: checked before sampling, not after it."""
    reward = c.config.reward
    c.integer("reward.batch_size", 1)
    c.require(
        reward.precision in REWARD_PRECISIONS,
        "reward.precision",
        reward.precision,
        f"must be one of {', '.join(REWARD_PRECISIONS)} (fp32 keeps close branch scores apart; fp16 is faster on a GPU)",
    )
    from b2diffurl.rewards.combined import RewardSpecError, parse_spec

    try:
        names = [name for name, _ in parse_spec(reward.name, REWARD_NAMES)]
    except RewardSpecError as err:
        c.require(False, "reward.name", reward.name, str(err))
        return
    if "colour" in names and prompts:
        from b2diffurl.rewards import prompt_colour

        for prompt in prompts:
            try:
                prompt_colour(prompt)
            except ValueError:
                c.require(
                    False,
                    "reward.name",
                    "colour",
                    f"cannot score prompt {prompt!r} (it names no colour): use clipscore or a prompt file such as prompts/template2_train.json",
                )
                break
    if "bertscore" in names:
        check_bertscore(c)
    if "clipscore" in names or "toycaption" in names:  # (toycaption embeds with the reward's CLIP too)
        if reward.clip_model.endswith(".json"):
            c.require(
                os.path.isfile(reward.clip_model),
                "reward.clip_model",
                reward.clip_model,
                "does not exist: fix the open_clip config path",
            )
        if reward.clip_pretrained.endswith(CHECKPOINT_SUFFIXES):
            c.require(
                os.path.isfile(reward.clip_pretrained),
                "reward.clip_pretrained",
                reward.clip_pretrained,
                "does not exist: fix the checkpoint path",
            )


def reward_components(name):
    """The reward names in ``reward.name`` (one, or a weighted sum); [] when it is not a valid spec."""
    from b2diffurl.rewards.combined import RewardSpecError, parse_spec

    try:
        return [n for n, _ in parse_spec(name, REWARD_NAMES)]
    except RewardSpecError:
        return []


def check_bertscore(c):
    """The bertscore reward's settings: the reference names the prompt, lengths and layer in range, and
    the captioner and encoder are local folders of their kind (or hub ids, checked by _model_problems)."""
    reward = c.config.reward
    c.integer("reward.caption_max_tokens", 1)
    c.integer("reward.bertscore_layer", 1)
    c.require(
        isinstance(reward.caption_question, str) and reward.caption_question.strip() != "",
        "reward.caption_question",
        reward.caption_question,
        "is empty: ask the captioner a question (the release's: 'Answer concisely: what is going on in this image?')",
    )
    c.require(
        isinstance(reward.caption_reference, str) and "{prompt}" in reward.caption_reference,
        "reward.caption_reference",
        reward.caption_reference,
        "must contain {prompt}, where each image's prompt goes (the release's: 'The image contains {prompt}')",
    )
    c.require(
        reward.caption_precision in ("auto", *REWARD_PRECISIONS),
        "reward.caption_precision",
        reward.caption_precision,
        f"must be auto or one of {', '.join(REWARD_PRECISIONS)}",
    )
    if reward.build_tiny_text:
        return
    for field, kind in (
        ("captioner", "a LLaVA model (transformers' LlavaForConditionalGeneration)"),
        ("bertscore_model", "an encoder such as microsoft/deberta-xlarge-mnli"),
    ):
        check_model_location(
            c, f"reward.{field}", reward[field], "config.json", f"{kind} saved with save_pretrained", f" of {kind}"
        )


def _installed(module):
    """Whether ``module`` can be imported (found, not imported; a bare folder of that name, such as
    the ./wandb run folder wandb leaves behind, is a namespace package and does not count)."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    return spec is not None and spec.origin is not None


def check_logging(c):
    """log_with names known trackers whose package is installed (looked up, never imported: wandb
    is slow to import); logging_dir is a string; the step of a round's point needs a numbered run_name."""
    from b2diffurl.tracking import TRACKER_MODULES, TRACKERS, tracker_names

    config = c.config
    c.require(
        isinstance(config.logging_dir, str),
        "logging_dir",
        config.logging_dir,
        "must be a folder path (empty: <save_path>/<exp_name>/logs)",
    )
    log_with = config.log_with
    if not c.require(
        isinstance(log_with, str),
        "log_with",
        log_with,
        "must be a string: '', 'tensorboard', 'wandb' or 'tensorboard,wandb'",
    ):
        return
    names = tracker_names(log_with)
    unknown = [name for name in names if name not in TRACKERS]
    if not c.require(
        not unknown,
        "log_with",
        log_with,
        "must be '' (no experiment log), 'tensorboard', 'wandb' or 'tensorboard,wandb' (comma-separated)",
    ):
        return
    for name in dict.fromkeys(names):
        modules, package = TRACKER_MODULES[name]
        other = "log_with=tensorboard (no account needed)" if name == "wandb" else "log_with='' to log nothing"
        c.require(
            any(_installed(m) for m in modules),
            "log_with",
            log_with,
            f"needs the {package} package, which is not installed: pip install {package}, or use {other}",
        )
    if names:
        c.require(
            re.search(r"\d$", config.run_name) is not None,
            "run_name",
            config.run_name,
            f"must end with the round number (e.g. round_003) when log_with={log_with!r}: it is the step of the round's log",
        )


PROMPT_SETS = (
    "train",
    "test",
)  # evaluate.prompt_sets: the training list (Figs. 5/7/8, Tables 1-2) and the held-out list (Table 3)


def eval_prompt_sets(config):
    """The prompt sets ``evaluate.prompt_sets`` names, in order, without repeats (["train", "test"])."""
    sets = config.evaluate.prompt_sets
    return list(dict.fromkeys(s.strip() for s in sets.split(",") if s.strip())) if isinstance(sets, str) else []


def held_out_prompt_file(config):
    """The held-out prompt file: ``evaluate.test_prompt_file``, or ``prompt_file`` with its ``_train``
    replaced by ``_test`` (prompts/template1_train.json -> prompts/template1_test.json); "" when neither gives one."""
    if config.evaluate.test_prompt_file:
        return config.evaluate.test_prompt_file
    stem, ext = os.path.splitext(config.prompt_file)
    return stem[: -len("_train")] + "_test" + ext if stem.endswith("_train") and not config.prompt else ""


def eval_prompt_file(config, prompt_set):
    """The prompt file an evaluation of ``prompt_set`` reads ("" for a train set given as ``prompt``)."""
    if prompt_set == "train":
        return "" if config.prompt else config.prompt_file
    return held_out_prompt_file(config)


# evaluate.alignment: "" (none) or an independent alignment metric added to the evaluation JSON.
ALIGNMENT_METRICS = ("", "toyworld")


def _eval_prompts(c, prompt_set):
    """The checked prompt list of one evaluation set (problems named by the field that sets its file), or None."""
    config = c.config
    if prompt_set == "train":
        return check_prompts(config, c)
    path = held_out_prompt_file(config)
    if not path:
        why = (
            f"prompt={config.prompt!r} is set (one prompt has no held-out list)"
            if config.prompt
            else f"prompt_file={config.prompt_file!r} does not end in _train.json"
        )
        c.require(
            False,
            "evaluate.test_prompt_file",
            "",
            f"is empty and {why}, so the held-out (test) list cannot be derived: "
            "set evaluate.test_prompt_file, or evaluate.prompt_sets=train",
        )
        return None
    probe = copy.deepcopy(config)
    probe.prompt, probe.prompt_file = "", path
    inner = Checker(probe)
    prompts = check_prompts(probe, inner)
    for problem in inner.problems:  # the prompt file checked is the evaluation's
        c.problems.append(
            ConfigError("evaluate.test_prompt_file", problem.value, problem.text)
            if problem.field == "prompt_file"
            else problem
        )
    return prompts


NOT_CHECKED = object()  # check_evaluation's train_prompts: the caller has not checked the training list


def check_evaluation(c, with_prompts, train_prompts=NOT_CHECKED):
    """The ``evaluate`` fields; with ``with_prompts``, also its prompt sets' files: returns {set: prompts}
    (None for a broken file), else None. ``train_prompts``: the training list when the caller has
    checked it already (:func:`check_config`; None when it is broken), so its problems are not reported twice."""
    config = c.config
    evaluate = config.evaluate
    sets = eval_prompt_sets(config)
    c.require(
        bool(sets) and all(s in PROMPT_SETS for s in sets),
        "evaluate.prompt_sets",
        evaluate.prompt_sets,
        "must name train and/or test, comma-separated (train: the training prompts, Figs. 5/7/8 and Tables 1-2; "
        "test: the held-out prompts, Table 3)",
    )
    valid = {
        field: c.integer(f"evaluate.{field}", 1) for field in ("num_images", "batch_size", "is_splits", "grid_prompts")
    }
    if valid["num_images"] and valid["is_splits"]:
        c.require(
            evaluate.is_splits <= evaluate.num_images,
            "evaluate.is_splits",
            evaluate.is_splits,
            f"exceeds the {evaluate.num_images} images of a prompt set: use at most {evaluate.num_images}",
        )
    c.integer("evaluate.seed", 0)
    c.integer("evaluate.interval", 0, hint=" (0 = no evaluation during training)")
    alignment = evaluate.get("alignment", "")
    c.require(
        alignment in ALIGNMENT_METRICS,
        "evaluate.alignment",
        alignment,
        f"is not known: use one of {list(ALIGNMENT_METRICS)}",
    )
    metrics = eval_metrics(config)
    unknown = [n for n in metrics if n not in REWARD_NAMES]
    c.require(
        not unknown,
        "evaluate.metrics",
        evaluate.get("metrics", ""),
        f"names {', '.join(map(repr, unknown))}, which is no reward: use reward names, comma-separated, from {list(REWARD_NAMES)}",
    )
    if "bertscore" in metrics and "bertscore" not in reward_components(config.reward.name):
        check_bertscore(c)  # (the training reward's check covers it otherwise)
    if not with_prompts or not all(s in PROMPT_SETS for s in sets):
        return None
    found, toy_captions_checked = {}, False
    for prompt_set in sets:
        prompts = (
            train_prompts
            if prompt_set == "train" and train_prompts is not NOT_CHECKED
            else _eval_prompts(c, prompt_set)
        )
        found[prompt_set] = prompts
        if prompts is None:
            continue
        if alignment == "toyworld" and not toy_captions_checked:
            from b2diffurl.toyworld.world import parse

            for prompt in prompts:
                try:
                    parse(prompt)
                except ValueError:
                    toy_captions_checked = (
                        c.require(
                            False,
                            "evaluate.alignment",
                            alignment,
                            f"needs toy-world captions, but the {prompt_set} prompts hold "
                            f"{prompt!r}, not a toy-world caption: use the prompts/toy*_train.json captions (and their _test lists)",
                        )
                        or True
                    )  # one line, not one per prompt set
                    break
    largest = max(((len(p), name) for name, p in found.items() if p is not None), default=None)
    if largest is not None and valid["num_images"]:  # one line for the set with the most prompts
        n_prompts, name = largest
        c.require(
            evaluate.num_images >= 2 * n_prompts,
            "evaluate.num_images",
            evaluate.num_images,
            f"gives fewer than 2 images to some of the {n_prompts} {name} prompts (the per-prompt Inception Score "
            f"needs 2): use at least {2 * n_prompts}",
        )
    return found


def eval_metrics(config):
    """``evaluate.metrics`` as a list of names, in order, without repeats ("bertscore, clipscore" ->
    ["bertscore", "clipscore"]); checked against the rewards by :func:`check_evaluation`."""
    names = [n.strip() for n in str(config.evaluate.get("metrics", "")).split(",") if n.strip()]
    return list(dict.fromkeys(names))


def check_config(config, num_processes=1, eval_prompts=None):
    """Every field a stage reads (all stages: a bad training setting stops sampling before it starts).

    Returns the Checker (``.problems``; ``.eval_prompts``: {set: prompts} of the evaluation when its prompt
    files were checked) and the training prompt list (None if it is broken). The evaluation's prompt files
    are checked when ``eval_prompts`` is True, or (None) when ``evaluate.interval`` > 0.
    """
    c = Checker(config)
    for name in ("exp_name", "run_name"):
        value = config[name]
        c.require(
            isinstance(value, str) and PLAIN_NAME.match(value) is not None and value not in (".", ".."),
            name,
            value,
            "must be a plain folder name (letters, digits, _ . - +), e.g. round_000",
        )
    c.require(
        isinstance(config.save_path, str) and bool(config.save_path),
        "save_path",
        config.save_path,
        "is empty: set it to an output folder",
    )
    c.integer("seed", 0)
    if c.integer("sample.num_steps", 1, hint=" (the paper uses 20)"):
        c.integer(
            "split_step", 1, config.sample.num_steps, " (sample.num_steps): pick the interval length k in that range"
        )
    c.integer("split_time", 1, hint=" branches (1 = no branching)")
    if c.number("sample.eta", 0.0, above=True, hint=": 0 has no log-prob (the paper uses 1.0)"):
        c.require(
            config.sample.eta <= 1,
            "sample.eta",
            config.sample.eta,
            "must lie in (0, 1]: above 1 the DDIM variance is undefined (the paper uses 1.0)",
        )
    c.number("sample.guidance_scale", 1.0, hint=" (1.0 = no guidance)")
    c.integer("sample.batch_size", 1)
    c.integer("sample.decode_batch_size", 0, hint=" (0 decodes a whole batch at once)")
    if config.sample.latent_dtype == "bf16":
        c.require(
            False,
            "sample.latent_dtype",
            "bf16",
            "rounds a stored latent by up to 73% of the last DDIM step's standard "
            "deviation (an 8-bit mantissa), which changes the trajectories being learned: use fp16 (the default: 9% at most) or fp32",
        )
    else:
        c.require(
            config.sample.latent_dtype in LATENT_DTYPES,
            "sample.latent_dtype",
            config.sample.latent_dtype,
            f"must be one of {', '.join(LATENT_DTYPES)} (fp16 halves the interval latents on disk, exactly recomputable)",
        )
    for name in ("channels_last", "compile_unet"):
        c.flag(f"runtime.{name}")
    c.number("runtime.dist_timeout", 0, above=True, hint=" (seconds a process waits in a collective for the others)")
    c.require(
        config.runtime.attention in ATTENTIONS,
        "runtime.attention",
        config.runtime.attention,
        f"must be one of {', '.join(ATTENTIONS)} (sdpa: torch's fused attention; math: the plain reference)",
    )
    if c.integer("sample.num_batches_per_epoch", 1):
        c.require(
            config.sample.num_batches_per_epoch % num_processes == 0,
            "sample.num_batches_per_epoch",
            config.sample.num_batches_per_epoch,
            f"does not divide over {num_processes} processes: use a multiple of {num_processes}",
        )
    c.require(
        config.prompt_random_choose in (0, 1) and _is_int(config.prompt_random_choose),
        "prompt_random_choose",
        config.prompt_random_choose,
        "must be 0 or 1",
    )
    c.require(
        config.mixed_precision in MIXED_PRECISION,
        "mixed_precision",
        config.mixed_precision,
        f"must be one of {', '.join(MIXED_PRECISION)}",
    )
    c.flag("allow_tf32")
    c.integer("lora.rank", 1)
    c.require(
        len(config.lora.target_modules) > 0,
        "lora.target_modules",
        config.lora.target_modules,
        "is empty: use ('to_q', 'to_k', 'to_v', 'to_out.0')",
    )

    train = config.train
    c.require(
        train.algorithm in ALGORITHMS,
        "train.algorithm",
        train.algorithm,
        f"is not known: choose from {list(ALGORITHMS)}",
    )
    for name in ("batch_size", "gradient_accumulation_steps", "num_epochs", "forward_chunk"):
        c.integer(f"train.{name}", 1)
    for name in ("learning_rate", "eps", "adv_clip_max", "max_grad_norm", "adam_epsilon"):
        c.number(f"train.{name}", 0.0, above=True)
    c.number("train.adam_beta1", 0.0, below=1.0)
    c.number("train.adam_beta2", 0.0, below=1.0)
    c.number("train.adam_weight_decay", 0.0)
    c.number("train.beta1", 0.0, hint=" (the advantage weight of positive samples)")
    c.number("train.beta2", 0.0, hint=" (the advantage weight of negative samples)")
    c.flag("train.fresh_optimizer")
    c.flag("train.gradient_checkpointing")
    c.require(
        train.partial_step in PARTIAL_STEPS,
        "train.partial_step",
        train.partial_step,
        f"must be one of {', '.join(PARTIAL_STEPS)} (scale applies the last partial accumulation, drop discards it)",
    )
    c.require(
        train.partial_batch in PARTIAL_BATCHES,
        "train.partial_batch",
        train.partial_batch,
        f"must be one of {', '.join(PARTIAL_BATCHES)} (weight trains a short last batch by its size, drop leaves it out)",
    )
    c.number(
        "train.dpok_reward_weight",
        0.0,
        hint=" (DPOK's weight of the policy term; its release uses 1000 for prompt lists)",
    )
    c.number(
        "train.dpok_kl_weight",
        0.0,
        hint=" (DPOK's weight of the KL to the base model; its release uses 0.1 for prompt lists)",
    )
    c.number(
        "train.dpok_ratio_clip",
        0.0,
        below=1.0,
        hint=" (DPOK's hard clamp of the ratio, 1e-4 as released; 0 = clipped PPO with train.eps)",
    )
    c.number("train.dpo_beta", 0.0, above=True, hint=" (the DPO temperature; 0.1 as in D3PO)")
    c.number(
        "train.dpo_ratio_clip",
        0.0,
        below=1.0,
        hint=" (D3PO's clamp of each ratio to 1 +- c, 0.1 as released; 0 = none)",
    )
    c.require(
        train.dpo_reference in DPO_REFERENCES,
        "train.dpo_reference",
        train.dpo_reference,
        f"must be one of {', '.join(DPO_REFERENCES)} (base: the frozen pretrained UNet, as D3PO; sampling: the sampling-time policy)",
    )
    if train.algorithm == "dpo" and _is_int(config.split_time):
        c.require(
            config.split_time >= 2,
            "split_time",
            config.split_time,
            "gives DPO no pairs: it compares branches of one latent; use 2 or more (vanilla DPO: presets ddpo,dpo "
            "sample 2 branches from x_T, as D3PO's pairs share their initial noise)",
        )

    c.integer("eval.history_cnt", 0, hint=" (the paper uses 8)")
    c.number("eval.pos_threshold", allow_inf=True, hint=" (-inf keeps every group's best)")
    c.number("eval.neg_threshold", allow_inf=True, hint=" (inf keeps every group's worst)")

    check_logging(c)
    prompts = check_prompts(config, c)
    check_model(c)
    check_reward(c, prompts)
    if eval_prompts is None:
        eval_prompts = config.evaluate.interval > 0 if _is_int(config.evaluate.interval) else False
    c.eval_prompts = check_evaluation(c, eval_prompts, train_prompts=prompts)
    return c, prompts


def check_process(c):
    """The driver's settings (``process.*``): the whole BPT schedule must fit ``sample.num_steps``."""
    config = c.config
    c.integer("process.stage_cnt", 1)
    c.integer("process.save_interval", 0, hint=" (0 keeps no round's interval latents, 1 keeps every round's)")
    c.integer("process.one_process", 0, 1, hint=" (1: a round's three stages in one process, 0: one process per stage)")
    steps = config.sample.num_steps
    if (
        c.integer("process.split_step_left", 1)
        and c.integer("process.split_step_right", 1)
        and _is_int(steps)
        and steps >= 1
    ):
        left, right = config.process.split_step_left, config.process.split_step_right
        c.require(
            left <= right,
            "process.split_step_left",
            left,
            f"is above process.split_step_right={right}: k must grow (or stay) over the rounds",
        )
        c.require(
            right <= steps,
            "process.split_step_right",
            right,
            f"exceeds sample.num_steps={steps}: the interval length k of every round must lie in 1..{steps}",
        )


def check_device(config, device_type):
    """fp16 needs an accelerator; refuse it on the CPU instead of failing deep inside a kernel."""
    if config.mixed_precision == "fp16" and device_type == "cpu":
        raise ConfigError(
            "mixed_precision",
            "fp16",
            "needs a GPU and none is visible: on a CPU use mixed_precision 'no' or 'bf16' "
            "(run_process.sh: MixedPrecision=no, or CONFIG=config/stage_process.py:toy for the CPU demo)",
        )


# ---------------------------------------------------------------- what the machine must provide


def environment_problems(config):
    """What the machine must provide: a writable save path, the device, the model and the reward."""
    problems = []
    exp_dir = os.path.join(config.save_path, config.exp_name)
    if reason := _not_writable(exp_dir):
        problems.append(ConfigError("save_path", config.save_path, reason))
    if config.mixed_precision == "fp16":
        import torch

        try:
            check_device(config, "cuda" if torch.cuda.is_available() else "cpu")
        except ConfigError as err:
            problems.append(err)
    if config.resume_from:
        try:
            check_resume(config)
        except (ConfigError, RecordError) as err:
            problems.append(err)
    problems += _model_problems(config)
    return problems


def _not_writable(folder):
    """Why run folders cannot be created under ``folder`` (nothing is created), or None."""
    path = os.path.abspath(folder)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        return f"cannot hold the run: {path} is a file"
    import tempfile

    try:
        os.rmdir(tempfile.mkdtemp(prefix=".b2diffurl-write-test-", dir=path))
    except OSError as err:
        return f"is not writable ({path}: {err.strerror}): pick a folder you can write to"
    return None


def _model_problems(config):
    """The SD model and the reward model must be on disk, in the hub cache, or (online) on the hub."""
    problems = []
    model = config.pretrained.model
    if not config.pretrained.build_tiny and not os.path.isdir(model):
        if reason := _hub_problem(model, "model_index.json", config.pretrained.revision):
            problems.append(
                ConfigError(
                    "pretrained.model", model, reason + ", or point pretrained.model at a local diffusers folder"
                )
            )
        else:
            c = Checker(config)
            check_backbone(c, model, lambda: backbones.read_model_index(model, config.pretrained.revision))
            problems.extend(c.problems)
    reward = config.reward
    names = reward_components(reward.name)
    metrics = eval_metrics(config)
    if ("bertscore" in names or "bertscore" in metrics) and not reward.build_tiny_text:
        for field in ("captioner", "bertscore_model"):
            if not os.path.isdir(reward[field]):
                if reason := _hub_problem(reward[field], "config.json", "main"):
                    problems.append(
                        ConfigError(f"reward.{field}", reward[field], reason + ", or point it at a local folder")
                    )
    if ("clipscore" in names or "toycaption" in names) and not reward.clip_pretrained.endswith(CHECKPOINT_SUFFIXES):
        import open_clip
        from open_clip import pretrained

        name = (
            os.path.splitext(os.path.basename(reward.clip_model))[0]
            if reward.clip_model.endswith(".json")
            else reward.clip_model
        )
        if not reward.clip_model.endswith(".json") and name not in open_clip.list_models():
            problems.append(
                ConfigError("reward.clip_model", name, "is not an open_clip model: see open_clip.list_models()")
            )
        elif reward.clip_pretrained:
            cfg = pretrained.get_pretrained_cfg(name, reward.clip_pretrained)
            if not cfg:
                tags = pretrained.list_pretrained_tags_by_model(name)
                problems.append(
                    ConfigError(
                        "reward.clip_pretrained",
                        reward.clip_pretrained,
                        f"is not a pretrained tag of {name}: choose from {tags}",
                    )
                )
            elif cfg.get("hf_hub"):
                repo, filename = cfg["hf_hub"].rstrip("/"), None
                if cfg["hf_hub"].count("/") > 1 and not cfg["hf_hub"].endswith("/"):
                    repo, filename = os.path.split(cfg["hf_hub"])
                # open_clip takes a .safetensors twin of the file when the repo has one
                names = [filename, os.path.splitext(filename)[0] + ".safetensors"] if filename else []
                names += ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
                if reason := _hub_problem(repo, names, "main"):
                    problems.append(
                        ConfigError(
                            "reward.clip_pretrained",
                            reward.clip_pretrained,
                            reason + ", or point it at a local checkpoint file",
                        )
                    )
    return problems


def _hub_problem(repo_id, filenames, revision):
    """None when one of ``filenames`` of the hub repo is cached (or, online, reachable); else why not."""
    from huggingface_hub import constants, file_exists, try_to_load_from_cache

    filenames = [filenames] if isinstance(filenames, str) else filenames
    if any(isinstance(try_to_load_from_cache(repo_id, f, revision=revision), str) for f in filenames):
        return None
    if constants.HF_HUB_OFFLINE:
        return "is not in the local Hugging Face cache and HF_HUB_OFFLINE=1: download it once online (unset HF_HUB_OFFLINE)"
    try:
        if any(file_exists(repo_id, f, revision=revision) for f in filenames):
            return None
        return f"has no {filenames[0]} on the Hugging Face hub"
    except Exception as err:  # noqa: BLE001 - no network, no such repo, gated repo: all say the same to the user
        return f"is not cached and the Hugging Face hub cannot be reached ({type(err).__name__})"


def check_resume(config):
    """resume_from's LoRA, and its AdamW state unless ``train.fresh_optimizer``, exist and (for a
    round of a run) match that round's train.done. Raises the first problem."""
    from b2diffurl.records import LORA_WEIGHTS_NAME, OPTIMIZER_NAME, read_lora_file

    if not config.resume_from:
        return
    if not os.path.isdir(config.resume_from):
        raise ConfigError(
            "resume_from", config.resume_from, "is not a folder: point it at the previous round's lora/ folder"
        )
    for name in (LORA_WEIGHTS_NAME, OPTIMIZER_NAME):
        if name == OPTIMIZER_NAME and config.train.fresh_optimizer:
            continue
        try:
            read_lora_file(config.resume_from, name)
        except RecordError as err:
            if name == LORA_WEIGHTS_NAME:
                raise
            from b2diffurl.schedule import round_index

            try:
                variable = f" (run_process.sh: FreshOptimizer={round_index(config.run_name)[1]})"
            except ValueError:
                variable = ""
            raise RecordError(
                f"{err}; AdamW would restart from zero: to do that on purpose pass --config.train.fresh_optimizer=True{variable}"
            ) from None


def check_history(config):
    """The earlier rounds this round's selection normalises with: finished, their scores.json intact.
    Checked before sampling too, so a broken history stops the round before its heavy work."""
    from b2diffurl.records import read_verified, round_dir
    from b2diffurl.selection import STAGE, history_rounds

    if re.search(r"\d$", config.run_name) is None:  # not a numbered round: no earlier rounds to read
        return
    for folder in history_rounds(os.path.dirname(round_dir(config)), config.run_name, config.eval.history_cnt):
        read_verified(folder, STAGE, "scores.json")


def _require_stage_done(config, stage, script):
    from b2diffurl.records import marker_path, round_dir

    path = marker_path(round_dir(config), stage)
    if not os.path.isfile(path):
        raise RecordError(
            f"run_name={config.run_name!r}: {path} is missing, so stage {stage!r} has not finished: run {script} first"
        )


def check_stage(config, stage, num_processes=1):
    """Everything a stage script checks before loading a model: the config (all problems raised
    together), the previous stage's marker, and the LoRA and AdamW state it resumes from. The
    evaluation's prompt files and sizes are not a stage's (a stage started by hand may carry the
    preset's): the driver checks them before round 0 with the run's EvalImages and EvalSets, and
    python -m b2diffurl.evaluate checks them again."""
    checker, _ = check_config(config, num_processes, eval_prompts=False)
    if stage == "select":
        checker.require(
            re.search(r"\d$", config.run_name) is not None,
            "run_name",
            config.run_name,
            "must end with the round number (e.g. round_003) so earlier rounds' scores can be found",
        )
    checker.raise_first()
    if stage == "select":
        _require_stage_done(config, "sample", "run_sample.py")
    if stage in ("sample", "select"):
        check_history(config)
    if stage == "train":
        _require_stage_done(config, "select", "run_select.py")
    if stage in ("sample", "train"):
        check_resume(config)
