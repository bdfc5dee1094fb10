"""The outcome of a run at a glance: what the driver prints at its end, and progress.csv's evaluation columns.

Per evaluated prompt set: the base model, the best and the last evaluated round, each with its
held-out alignment (the toy world's detector) or CLIPScore and its own standard error, the
diversity (per-prompt IS, and the toy world's background entropy), and the last round's paired
difference from the base model over prompts (same prompts, same evaluation seeds: the standard
error of the per-prompt differences; for the toy world's alignment also over images: the same image
seeds before and after, the standard error of the per-image 0/1 differences, which is smaller because
it does not count the spread between prompts). "Best" is picked on the evaluation itself and says so:
it is a look at the run, not a model selection (that would need a separate validation set).
"""

import os

from b2diffurl import layout, records, stats
from b2diffurl.layout import BASE
from b2diffurl.summaries import round_finished, round_row

PROMPT_SET_NAMES = {"train": "training prompts", "test": "held-out prompts"}
# progress.csv columns taken from a round's eval/<set>.json (empty where the round was not evaluated)
EVAL_FIELDS = {
    "alignment": "alignment_mean",
    "alignment_sem": "alignment_sem",
    "clipscore": "clipscore_mean",
    "clipscore_sem": "clipscore_sem",
    "is_per_prompt": "inception_score_per_prompt",
}
EVAL_SETS = ("train", "test")
EVAL_COLUMNS = [f"{s}_{c}" for s in EVAL_SETS for c in EVAL_FIELDS]


def evaluation(exp_dir, name, prompt_set):
    """The round's (or base model's) evaluation on ``prompt_set``, or None."""
    path = layout.eval_json(exp_dir, name, prompt_set)
    return records.read_json(path) if os.path.isfile(path) else None


def eval_columns(exp_dir, name):
    """progress.csv's evaluation cells of one round ("" where absent)."""
    row = {}
    for prompt_set in EVAL_SETS:
        result = evaluation(exp_dir, name, prompt_set) or {}
        for column, key in EVAL_FIELDS.items():
            value = result.get(key)
            row[f"{prompt_set}_{column}"] = "" if value is None else round(value, 6)
    return row


def headline(result):
    """(metric name, key, as-percent) of the number that tells whether a policy improved."""
    if "alignment_mean" in result:
        return "alignment", "alignment", True
    return "CLIPScore", "clipscore", False


def value_text(result, key, percent):
    mean, sem = result[f"{key}_mean"], result[f"{key}_sem"]
    return f"{mean:.1%} ± {sem:.1%}" if percent else f"{mean:.4f} ± {sem:.4f}"


def paired_difference(last, base, key):
    """(mean, SE) of last - base over the prompts both evaluated (per-prompt means); None if < 2 prompts."""
    diffs = [
        last["per_prompt"][p][key] - base["per_prompt"][p][key]
        for p in last.get("per_prompt", {})
        if p in base.get("per_prompt", {}) and key in last["per_prompt"][p] and key in base["per_prompt"][p]
    ]
    return _mean_se(diffs)


def _mean_se(diffs):
    """(mean, standard error (n - 1), n) of paired differences (:func:`b2diffurl.stats.mean_se`); None for
    fewer than 2."""
    return stats.mean_se(diffs) if len(diffs) >= 2 else None


def image_paired_difference(last, base):
    """(mean, SE, n) of last - base over images (the toy world's per-image ``aligned`` 0/1 lists, same
    seeds and order); None when either lacks them or they differ in length."""
    a, b = last.get("aligned"), base.get("aligned")
    if not a or not b or len(a) != len(b):
        return None
    return _mean_se([float(x) - float(y) for x, y in zip(a, b)])


def difference_text(diff, percent, unit):
    mean, se, n = diff
    shown = f"{mean * 100:+.1f} points" if percent else f"{mean:+.4f}"
    shown_se = f"{se * 100:.1f}" if percent else f"{se:.4f}"
    ratio = f" = {mean / se:+.1f} SE" if se > 0 else ""
    return f"{shown} ± {shown_se} (paired over {n} {unit}{ratio})"


def set_lines(exp_dir, rounds, prompt_set):
    """The report lines of one prompt set (empty when nothing was evaluated on it)."""
    base = evaluation(exp_dir, BASE, prompt_set)
    evaluated = [(name, result) for name in rounds if (result := evaluation(exp_dir, name, prompt_set))]
    if base is None and not evaluated:
        return []
    any_result = base or evaluated[0][1]
    label, key, percent = headline(any_result)
    lines = [
        f"{PROMPT_SET_NAMES.get(prompt_set, prompt_set)} ({any_result['num_prompts']} prompts, "
        f"{any_result['num_images']} images):"
    ]
    picks = [(BASE, base)]
    if evaluated:
        best = max(evaluated, key=lambda item: item[1][f"{key}_mean"])
        picks += [(f"best {best[0]}", best[1]), (f"last {evaluated[-1][0]}", evaluated[-1][1])]
    for title, result in picks:
        if result is None:
            lines.append(f"  {title:<16} not evaluated")
            continue
        diversity = f"IS per prompt {result['inception_score_per_prompt']:.3f}"
        if "background_entropy" in result:
            diversity += f", background entropy {result['background_entropy']:.2f} bits"
        lines.append(
            f"  {title:<16} {label} {value_text(result, key, percent)} | {diversity} | {result['reward_queries']} "
            "reward queries"
        )
    if base is not None and evaluated:
        diff = paired_difference(evaluated[-1][1], base, key)
        if diff is not None:
            lines.append(f"  last - base      {difference_text(diff, percent, 'prompts')}")
        by_image = image_paired_difference(evaluated[-1][1], base) if key == "alignment" else None
        if by_image is not None:
            lines.append(
                f"  {'' if diff is not None else 'last - base':<16} "
                f"{difference_text(by_image, percent, 'images, same seeds')}"
            )
    return lines


def report(exp_dir, figures_dir=""):
    """The block the driver prints when a run has finished (text, several lines)."""
    rounds = [name for _, name in layout.round_folders(exp_dir) if round_finished(os.path.join(exp_dir, name))]
    lines = [f"||=========== outcome of {exp_dir} ===========||"]
    if rounds:
        first, last = round_row(exp_dir, rounds[0]), round_row(exp_dir, rounds[-1])
        queries = sum(round_row(exp_dir, name)["trajectories"] for name in rounds)
        lines.append(
            f"{len(rounds)} rounds trained, {queries} reward queries; training reward (the sampled images' mean) "
            f"{first['reward_mean']:.4f} ({rounds[0]}) -> {last['reward_mean']:.4f} ({rounds[-1]})"
        )
    evaluated = False
    for prompt_set in EVAL_SETS:
        block = set_lines(exp_dir, rounds, prompt_set)
        evaluated |= bool(block)
        lines += block
    if not evaluated:
        lines.append(
            "no evaluations (EvalInterval=0): the training reward alone does not show whether the model improved; "
            "rerun with EvalInterval=1 to evaluate (finished rounds are not retrained)"
        )
    else:
        lines.append("best = highest on this evaluation itself (a look at the run, not a model selection)")
    lines.append(f"per-round table: {layout.progress_path(exp_dir)}")
    if figures_dir:
        lines.append(f"figures and tables: {figures_dir}")
    return "\n".join(lines)
