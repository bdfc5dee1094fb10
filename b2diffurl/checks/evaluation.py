"""The evaluation's settings (``evaluate.*``) and, when asked, the prompt lists of its prompt sets."""

import copy

from b2diffurl.checks.checker import Checker
from b2diffurl.checks.prompts import check_prompts
from b2diffurl.checks.rewards import check_bertscore, reward_components
from b2diffurl.choices import ALIGNMENT_METRICS, PROMPT_SETS, REWARD_NAMES, eval_metrics
from b2diffurl.errors import ConfigError
from b2diffurl.prompt_sets import eval_prompt_sets, held_out_prompt_file

NOT_CHECKED = object()  # check_evaluation's train_prompts: the caller has not checked the training list


def check_evaluation(c, with_prompts, train_prompts=NOT_CHECKED):
    """The ``evaluate`` fields; with ``with_prompts``, also its prompt sets' files: returns {set: prompts}
    (None for a broken file), else None. ``train_prompts``: the training list when the caller has
    checked it already (:func:`~b2diffurl.checks.config.check_config`; None when it is broken), so its
    problems are not reported twice."""
    config = c.config
    sets = eval_prompt_sets(config)
    c.require(
        bool(sets) and all(s in PROMPT_SETS for s in sets),
        "evaluate.prompt_sets",
        config.evaluate.prompt_sets,
        "must name train and/or test, comma-separated (train: the training prompts, Figs. 5/7/8 and Tables 1-2; "
        "test: the held-out prompts, Table 3)",
    )
    valid = _check_sizes(c)
    alignment = config.evaluate.get("alignment", "")
    c.require(
        alignment in ALIGNMENT_METRICS,
        "evaluate.alignment",
        alignment,
        f"is not known: use one of {list(ALIGNMENT_METRICS)}",
    )
    _check_metrics(c)
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
        if prompts is not None and alignment == "toyworld" and not toy_captions_checked:
            toy_captions_checked = _toy_caption_problem(c, alignment, prompt_set, prompts)
    if valid["num_images"]:
        _check_images_per_prompt(c, found)
    return found


def _check_sizes(c):
    """The image counts, batch size, splits and seeds; {field: valid} of the four sizes."""
    evaluate = c.config.evaluate
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
    return valid


def _check_metrics(c):
    """``evaluate.metrics`` names rewards; a bertscore metric needs the bertscore settings."""
    config = c.config
    metrics = eval_metrics(config)
    unknown = [n for n in metrics if n not in REWARD_NAMES]
    c.require(
        not unknown,
        "evaluate.metrics",
        config.evaluate.get("metrics", ""),
        f"names {', '.join(map(repr, unknown))}, which is no reward: use reward names, comma-separated, "
        f"from {list(REWARD_NAMES)}",
    )
    if "bertscore" in metrics and "bertscore" not in reward_components(config.reward.name):
        check_bertscore(c)  # (the training reward's check covers it otherwise)


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


def _toy_caption_problem(c, alignment, prompt_set, prompts):
    """Whether a prompt of ``prompt_set`` is no toy-world caption (then one line is added for it)."""
    from b2diffurl.toyworld.world import parse  # (numpy: only when the toy world's alignment is asked for)

    for prompt in prompts:
        try:
            parse(prompt)
        except ValueError:
            c.require(
                False,
                "evaluate.alignment",
                alignment,
                f"needs toy-world captions, but the {prompt_set} prompts hold {prompt!r}, not a toy-world caption: "
                "use the prompts/toy*_train.json captions (and their _test lists)",
            )
            return True  # one line, not one per prompt set
    return False


def _check_images_per_prompt(c, found):
    """One line for the set with the most prompts when it gets fewer than 2 images per prompt."""
    evaluate = c.config.evaluate
    largest = max(((len(p), name) for name, p in found.items() if p is not None), default=None)
    if largest is not None:
        n_prompts, name = largest
        c.require(
            evaluate.num_images >= 2 * n_prompts,
            "evaluate.num_images",
            evaluate.num_images,
            f"gives fewer than 2 images to some of the {n_prompts} {name} prompts (the per-prompt Inception Score "
            f"needs 2): use at least {2 * n_prompts}",
        )
