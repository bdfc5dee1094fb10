"""What the machine must provide: a writable save path, the device, the state to resume from, the models."""

import os
import tempfile

from b2diffurl import layout
from b2diffurl.checks.hub import model_problems
from b2diffurl.checks.preconditions import check_resume
from b2diffurl.errors import ConfigError, RecordError


def environment_problems(config):
    """What the machine must provide: a writable save path, the device, the model and the reward."""
    problems = []
    if reason := _not_writable(layout.exp_dir(config)):
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
    return problems + model_problems(config)


def check_device(config, device_type):
    """fp16 needs an accelerator; refuse it on the CPU instead of failing deep inside a kernel."""
    if config.mixed_precision == "fp16" and device_type == "cpu":
        raise ConfigError(
            "mixed_precision",
            "fp16",
            "needs a GPU and none is visible: on a CPU use mixed_precision 'no' or 'bf16' "
            "(run_process.sh: MixedPrecision=no, or CONFIG=config/stage_process.py:toy for the CPU demo)",
        )


def _not_writable(folder):
    """Why run folders cannot be created under ``folder`` (nothing is created), or None."""
    path = os.path.abspath(folder)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        return f"cannot hold the run: {path} is a file"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".b2diffurl-write-test-", dir=path))
    except OSError as err:
        return f"is not writable ({path}: {err.strerror}): pick a folder you can write to"
    return None
