"""Where everything of a run lives: the one place that names the run folder's files and folders.

    <save_path>/<exp_name>/                 the run folder (:func:`exp_dir`)
      settings.json progress.csv figures/   the run's record, its table and its figures
      .run.lock                             who works on the folder now (b2diffurl.runlock)
      base/eval/<set>.json <set>_grid.png   the base model's evaluation (:data:`BASE`)
      round_000/                            a round (:func:`round_name`; any ``<prefix><number>``
        sample.done select.done train.done    works for stages run by hand: :data:`ROUND_NAME`)
        .<stage>.tmp/                        a stage's outputs while it runs
        samples/ images/ prompts.json scores.json selected.safetensors lora/ metrics.json
        eval/<set>.json <set>_grid.png       the round's evaluation

Pure path arithmetic and directory listings: no torch, no config beyond the three fields that name
a round's folder. Every reader of a run folder (driver, selection, evaluation, figures, the toy
world's tools) lists rounds through :func:`round_folders` and names files through the functions here.
"""

import os
import re

BASE = "base"  # folder of the base model's evaluation inside the run folder
ROUND_PREFIX = "round_"  # the driver's round folders: round_000, round_001, ...
ROUND_WIDTH = 3
# a round folder's name: <prefix><number> (round_003, or the official code's stage3)
ROUND_NAME = re.compile(r"(.*?)(\d+)")
SETTINGS_NAME = "settings.json"
PROGRESS_NAME = "progress.csv"
FIGURES_NAME = "figures"
LORA_DIR = "lora"
EVAL_DIR = "eval"


def exp_dir(config):
    """<save_path>/<exp_name>: the run folder."""
    return os.path.join(config.save_path, config.exp_name)


def round_dir(config):
    """<save_path>/<exp_name>/<run_name>: the folder of the round a stage works on."""
    return os.path.join(config.save_path, config.exp_name, config.run_name)


def round_name(r, prefix=ROUND_PREFIX, width=ROUND_WIDTH):
    """round_003 for r = 3."""
    return f"{prefix}{r:0{width}d}"


def round_index(run_name):
    """(prefix, r) of a round folder name such as round_003 or stage3."""
    match = ROUND_NAME.fullmatch(run_name)
    if match is None:
        raise ValueError(
            f"run_name={run_name!r} must end with the round number (e.g. round_003) to find earlier rounds"
        )
    return match.group(1), int(match.group(2))


def round_folders(exp_dir, prefix=ROUND_PREFIX):
    """[(r, folder name)] of the run's round folders named ``<prefix><number>``, in round order."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)$")
    found = []
    for name in os.listdir(exp_dir) if os.path.isdir(exp_dir) else []:
        match = pattern.match(name)
        if match and os.path.isdir(os.path.join(exp_dir, name)):
            found.append((int(match.group(1)), name))
    return sorted(found)


def earlier_round_names(exp_dir, run_name, count):
    """The names of the ``count`` rounds before ``run_name`` (fewer for the first rounds), oldest
    first: the existing folders of its prefix, or the name a missing one would have (same width)."""
    prefix, r = round_index(run_name)
    siblings = dict(round_folders(exp_dir, prefix))
    width = len(run_name) - len(prefix)
    return [siblings.get(i, f"{prefix}{i:0{width}d}") for i in range(max(0, r - count), r)]


def marker_path(round_dir, stage):
    """A finished stage's marker: ``<round>/<stage>.done``."""
    return os.path.join(round_dir, f"{stage}.done")


def stage_tmp_dir(round_dir, stage):
    """Where a stage builds its outputs before they move into the round folder."""
    return os.path.join(round_dir, f".{stage}.tmp")


def settings_path(exp_dir):
    return os.path.join(exp_dir, SETTINGS_NAME)


def progress_path(exp_dir):
    return os.path.join(exp_dir, PROGRESS_NAME)


def eval_dir(exp_dir, name):
    """<run>/<name>/eval: the evaluations of a round (or of the base model, ``name = BASE``)."""
    return os.path.join(exp_dir, name, EVAL_DIR)


def eval_json(exp_dir, name, prompt_set):
    """<run>/<name>/eval/<prompt_set>.json: one evaluation (written last: its marker)."""
    return os.path.join(exp_dir, name, EVAL_DIR, f"{prompt_set}.json")


def eval_grid(exp_dir, name, prompt_set):
    """<run>/<name>/eval/<prompt_set>_grid.png: that evaluation's labelled image grid."""
    return os.path.join(exp_dir, name, EVAL_DIR, f"{prompt_set}_grid.png")


def evaluated_folders(exp_dir, prefix=ROUND_PREFIX):
    """[BASE] (when it has an eval folder) followed by the round folders that have one, in round order."""
    names = [BASE] if os.path.isdir(eval_dir(exp_dir, BASE)) else []
    return names + [name for _, name in round_folders(exp_dir, prefix) if os.path.isdir(eval_dir(exp_dir, name))]
