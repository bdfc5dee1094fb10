"""The per-round experiment log: a round's scalars and sample images sent to accelerate's trackers.

Off by default (``config.log_with = ""``). ``"tensorboard"`` writes event files under
``config.logging_dir`` (default ``<save_path>/<exp_name>/logs``), one run named ``exp_name``; it
needs no account and no network. View them with::

    tensorboard --logdir <save_path>/<exp_name>/logs

``"wandb"`` needs the ``wandb`` package and the user's login (``wandb login``) or offline mode
(``WANDB_MODE=offline``). Every round is its own process, so each call starts the wandb run with
the same id (from exp_name and the experiment folder) and ``resume="allow"``: all rounds land in one
run, plotted against a logged ``round`` value (tensorboard: the step is the round number).

Each round's point is written once, by run_train.py after the round has trained (a rerun that
finds train.done logs nothing). Everything heavy (accelerate, torch, wandb) is imported only when
a tracker is asked for.
"""

import hashlib
import math
import numbers
import os
import re

from b2diffurl import records
from b2diffurl.choices import tracker_names
from b2diffurl.summaries import read_summary

# train.done keys that are bookkeeping, not training curves
NOT_LOGGED = ("seconds", "num_processes")  # of a stage summary's numbers


def logging_dir(config):
    """The folder of the event files: ``config.logging_dir`` or ``<save_path>/<exp_name>/logs``."""
    return config.logging_dir or os.path.join(config.save_path, config.exp_name, "logs")


def _is_scalar(value):
    """A finite real number, numpy's included (bools and lists are not curves)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------- what a round logs


def round_summary(round_dir):
    """{tag: float} of a round, from the markers of its finished stages (unfinished ones are skipped).

    reward/mean, reward/std, select/selected, select/trajectories (select.done); sample/k (the
    interval length), sample/split_time (sample.done); train/<key> for every numeric key of
    train.done (loss, approx_kl, clipfrac, grad_norm, optimizer_steps, kl_reference with DPOK, ...);
    time/<stage>_seconds per stage and time/round_seconds for their sum.
    """
    summary = {}
    stages = {
        stage: read_summary(records.read_marker(round_dir, stage), stage).record()
        for stage in records.STAGES
        if records.is_done(round_dir, stage)
    }
    picks = {
        "sample": {"split_step": "sample/k", "split_time": "sample/split_time", "trajectories": "sample/trajectories"},
        "select": {
            "reward_mean": "reward/mean",
            "reward_std": "reward/std",
            "selected": "select/selected",
            "trajectories": "select/trajectories",
            "history_rounds": "select/history_rounds",
        },
    }
    for stage, names in picks.items():
        for key, tag in names.items():
            if _is_scalar(stages.get(stage, {}).get(key)):
                summary[tag] = float(stages[stage][key])
    for name, value in stages.get("select", {}).get("reward_components", {}).items():
        if _is_scalar(value):
            summary[f"reward/{name}"] = float(value)
    for key, value in stages.get("train", {}).items():
        if key not in NOT_LOGGED and _is_scalar(value):
            summary[f"train/{key}"] = float(value)
    seconds = {stage: m["seconds"] for stage, m in stages.items() if _is_scalar(m.get("seconds"))}
    for stage, value in seconds.items():
        summary[f"time/{stage}_seconds"] = float(value)
    if seconds:
        summary["time/round_seconds"] = float(sum(seconds.values()))
    return summary


def sample_grid(round_dir, n=16):
    """uint8 [H, W, 3] grid of the round's first ``n`` images (images/00000.png ...), or None if it has none.

    Images that are missing are left out; the grid is ceil(sqrt(count)) columns wide, each cell the
    size of the first image (others are resized), empty cells black.
    """
    import numpy as np
    from PIL import Image

    paths = [os.path.join(round_dir, records.image_name(i)) for i in range(n)]
    images = [Image.open(p).convert("RGB") for p in paths if os.path.isfile(p)]
    if not images:
        return None
    width, height = images[0].size
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    grid = np.zeros((rows * height, cols * width, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * height : (r + 1) * height, c * width : (c + 1) * width] = np.asarray(image.resize((width, height)))
    return grid


# ---------------------------------------------------------------- trackers


def wandb_run_id(config):
    """The wandb run id of the experiment: the same in every round's process, so rounds resume one run.

    exp_name (made id-safe) plus a hash of the experiment folder, so two experiments that share an
    exp_name under different save paths do not write into each other's run.
    """
    exp_dir = os.path.abspath(os.path.join(config.save_path, config.exp_name))
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", config.exp_name)[:48]
    return f"{safe}-{hashlib.sha256(exp_dir.encode()).hexdigest()[:8]}"


def _start_trackers(config):
    """Started accelerate trackers for ``config.log_with``; the caller finishes them."""
    from accelerate.state import PartialState
    from accelerate.tracking import TensorBoardTracker, WandBTracker

    # the trackers report through accelerate's logger, which needs its process state: run_train.py's
    # Accelerator made it; a process without one (an evaluation, the tests) gets the default state.
    # Only the main process writes.
    if not PartialState().is_main_process:
        return []
    folder = logging_dir(config)
    os.makedirs(folder, exist_ok=True)
    trackers = []
    try:
        for name in tracker_names(config.log_with):
            if name == "tensorboard":  # events in <folder>/<exp_name>/: one run, one event file per round's process
                tracker = TensorBoardTracker(config.exp_name, folder)
            else:  # project and run are both named exp_name
                tracker = WandBTracker(
                    config.exp_name, name=config.exp_name, id=wandb_run_id(config), resume="allow", dir=folder
                )
            tracker.start()
            trackers.append(tracker)
    except BaseException:  # e.g. wandb without a login: close the ones already open
        for tracker in trackers:
            tracker.finish()
        raise
    return trackers


def _log(config, step, scalars, grid=None, image_tag="samples"):
    """Write ``scalars`` ({tag: float}) and ``grid`` (uint8 [H, W, 3] or None) at ``step``, then close.

    A failing tracker (wandb not logged in, a full disk) costs this log point only: it is reported in
    one warning line, and the round's files, already saved, stay as they are."""
    try:
        _write(config, step, scalars, grid, image_tag)
    except Exception as err:  # noqa: BLE001 - any tracker failure; the run itself is not at stake
        import sys

        from b2diffurl.errors import first_line

        print(
            f"warning: experiment log ({config.log_with}) failed at round {step}: "
            f"{type(err).__name__}: {first_line(err)}; "
            "the run's files are saved, only this log point is missing",
            file=sys.stderr,
        )


def _write(config, step, scalars, grid, image_tag):
    trackers = _start_trackers(config)
    try:
        for tracker in trackers:
            if tracker.name == "wandb":
                _log_wandb(tracker, step, scalars, grid, image_tag)
                continue
            tracker.log(scalars, step=step)
            if grid is not None:  # a batch of one image, [1, H, W, 3]: add_images takes arrays, not lists
                tracker.log_images({image_tag: grid[None]}, step=step, dataformats="NHWC")
    finally:
        for tracker in trackers:
            tracker.finish()


def _log_wandb(tracker, round_index, scalars, grid, image_tag):
    """wandb: everything plotted against a logged ``round`` value instead of wandb's own step.

    A resumed wandb run continues its step after the last one logged and drops any log at an earlier
    step, so an evaluation of round r that comes after round r's log (another process) would be lost
    with step=r. The grid goes into the same history row as the scalars (commit=False, then commit).
    """
    tracker.run.define_metric("round")
    for tag in [*scalars, image_tag]:
        tracker.run.define_metric(tag, step_metric="round")
    if grid is not None:
        tracker.log_images({image_tag: grid[None]}, commit=False)
    tracker.log({"round": round_index, **scalars})


def log_round(config, round_index, round_dir, extra=None):
    """Log round ``round_index``'s :func:`round_summary`, ``extra`` ({tag: number}) and its
    :func:`sample_grid` at step=round_index. Nothing happens (nothing heavy is imported) when
    ``config.log_with`` is empty; only the main process writes."""
    if not tracker_names(config.log_with):
        return
    scalars = {**round_summary(round_dir), **{k: float(v) for k, v in (extra or {}).items() if _is_scalar(v)}}
    _log(config, round_index, scalars, sample_grid(round_dir))


def log_evaluation(config, round_index, results, grid=None):
    """Log an evaluation of round ``round_index``'s policy at step=round_index.

    ``results``: dict whose finite numeric top-level values (clipscore_mean, clipscore_sem,
    inception_score, reward_queries, ...) are logged as ``eval/<prompt_set>/<key>``, prompt_set being
    ``results["prompt_set"]`` ("test" if absent); ``grid``: uint8 [H, W, 3] of evaluation images, or
    None. Nothing happens when ``config.log_with`` is empty; only the main process writes.
    """
    if not tracker_names(config.log_with):
        return
    prompt_set = results.get("prompt_set", "test")
    scalars = {f"eval/{prompt_set}/{k}": float(v) for k, v in results.items() if _is_scalar(v)}
    _log(config, round_index, scalars, grid, image_tag=f"eval/{prompt_set}/samples")
