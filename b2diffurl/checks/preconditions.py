"""What a stage needs before it loads a model: a valid config, the previous stage's marker, the
earlier rounds' scores, and the LoRA and AdamW state it resumes from."""

import os
import re

from b2diffurl import layout
from b2diffurl.checks.config import check_config
from b2diffurl.errors import ConfigError, RecordError
from b2diffurl.records import LORA_WEIGHTS_NAME, OPTIMIZER_NAME, read_lora_file, read_verified


def check_resume(config):
    """resume_from's LoRA, and its AdamW state unless ``train.fresh_optimizer``, exist and (for a
    round of a run) match that round's train.done. Raises the first problem."""
    if not config.resume_from:
        return
    if not os.path.isdir(config.resume_from):
        raise ConfigError(
            "resume_from", config.resume_from, "is not a folder: point it at the previous round's lora/ folder"
        )
    read_lora_file(config.resume_from, LORA_WEIGHTS_NAME)
    if config.train.fresh_optimizer:
        return
    try:
        read_lora_file(config.resume_from, OPTIMIZER_NAME)
    except RecordError as err:
        raise RecordError(
            f"{err}; AdamW would restart from zero: to do that on purpose pass "
            f"--config.train.fresh_optimizer=True{_fresh_optimizer_variable(config.run_name)}"
        ) from None


def _fresh_optimizer_variable(run_name):
    """`` (run_process.sh: FreshOptimizer=<round>)`` for a numbered round, else ""."""
    try:
        return f" (run_process.sh: FreshOptimizer={layout.round_index(run_name)[1]})"
    except ValueError:
        return ""


def check_history(config):
    """The earlier rounds this round's selection normalises with: finished, their scores.json intact.
    Checked before sampling too, so a broken history stops the round before its heavy work."""
    from b2diffurl.selection import STAGE, history_rounds  # (torch: the selection's own import)

    if re.search(r"\d$", config.run_name) is None:  # not a numbered round: no earlier rounds to read
        return
    for folder in history_rounds(os.path.dirname(layout.round_dir(config)), config.run_name, config.eval.history_cnt):
        read_verified(folder, STAGE, "scores.json")


def _require_stage_done(config, stage, script):
    path = layout.marker_path(layout.round_dir(config), stage)
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
