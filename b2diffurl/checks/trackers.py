"""The experiment log's settings: ``log_with``, ``logging_dir`` and the run_name a round's point needs.

Tracker packages are looked up, never imported (wandb is slow to import).
"""

import importlib.util
import re

from b2diffurl.choices import TRACKER_MODULES, TRACKERS, tracker_names


def _installed(module):
    """Whether ``module`` can be imported (found, not imported; a bare folder of that name, such as
    the ./wandb run folder wandb leaves behind, is a namespace package and does not count)."""
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.origin is not None


def check_logging(c):
    """log_with names known trackers whose package is installed; logging_dir is a string; the step of
    a round's point needs a numbered run_name."""
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
    if not c.require(
        all(name in TRACKERS for name in names),
        "log_with",
        log_with,
        "must be '' (no experiment log), 'tensorboard', 'wandb' or 'tensorboard,wandb' (comma-separated)",
    ):
        return
    _check_installed(c, log_with, names)
    if names:
        c.require(
            re.search(r"\d$", config.run_name) is not None,
            "run_name",
            config.run_name,
            f"must end with the round number (e.g. round_003) when log_with={log_with!r}: "
            "it is the step of the round's log",
        )


def _check_installed(c, log_with, names):
    """One line per tracker whose package is missing, with the other way to go on."""
    for name in dict.fromkeys(names):
        modules, package = TRACKER_MODULES[name]
        other = "log_with=tensorboard (no account needed)" if name == "wandb" else "log_with='' to log nothing"
        c.require(
            any(_installed(m) for m in modules),
            "log_with",
            log_with,
            f"needs the {package} package, which is not installed: pip install {package}, or use {other}",
        )
