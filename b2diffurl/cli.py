"""What every stage script shares: the ``--config`` flag, config errors as one line, the accelerator."""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from b2diffurl.checks import ConfigError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO_ROOT, "config", "stage_process.py")


def define_config_flag(help_text):
    config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, help_text, lock_config=True)
    return flags.FLAGS


def run(main):
    """``absl.app.run(main)``, with a ConfigError printed as ``error: <message>`` and exit status 2."""

    def guarded(argv):
        try:
            return main(argv)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    # The config file imports the package: make the repo importable whatever the working directory.
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)
    quiet_libraries()
    app.run(guarded)


def quiet_libraries():
    """Keep the libraries' info chatter (and per-component load bars) out of the stage logs."""
    import logging

    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    for name in ("diffusers", "transformers", "open_clip", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def make_accelerator(config):
    """An Accelerator for a stage; the config is checked against the device before any model loads."""
    import torch
    from accelerate import Accelerator

    from b2diffurl.checks import check_device

    has_gpu = torch.cuda.is_available()
    check_device(config, "cuda" if has_gpu else "cpu")
    # cpu=True without a GPU: under `accelerate launch --multi_gpu` the ranks then join with gloo
    # (MULTI_CPU) instead of each running alone.
    accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=not has_gpu)
    if config.allow_tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return accelerator
