"""What every stage script shares: the ``--config`` flag, errors as one line, Ctrl-C, the accelerator.

A stage script's problems end in one ``error: ...`` line and an exit status, never a traceback:
a bad flag or config (2), a stage file that cannot be trusted (2), a NaN/inf stop (3), Ctrl-C (130).
Under ``accelerate launch`` an error every rank raises is printed by the main process only.
"""

import atexit
import os
import sys

from absl import flags
from ml_collections import config_flags

from b2diffurl import heap
from b2diffurl.configs import DEFAULT_CONFIG_PATH, config_spec_problem
from b2diffurl.errors import EXIT_LOST_PEER, LOST_PEER, UserError, first_line

INTERRUPTED = "stopped (Ctrl-C): rerun the same command to continue where it stopped"
EXIT_INTERRUPTED = 130


def define_config_flag(help_text):
    config_flags.DEFINE_config_file("config", DEFAULT_CONFIG_PATH, help_text, lock_config=True)
    return flags.FLAGS


def _is_main_process():
    return os.environ.get("RANK", "0") == "0"


def fail(message, code=2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def parse_flags(argv):
    """Parse absl flags; any problem (bad value, unknown field, broken config) exits with one line."""
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None and "--config" in argv[:-1]:
        spec = argv[argv.index("--config") + 1]
    if spec is not None:
        if problem := config_spec_problem(spec):
            fail(f"--config={spec} {problem}")
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        fail(f"{lines[0]} {lines[-1]}" if len(lines) > 1 and "Traceback" in str(err) else " ".join(lines))
    except (KeyError, AttributeError) as err:  # ml_collections: --config.<field> names no field
        given = [a.split("=", 1)[0] for a in argv if a.startswith("--config.")]
        fail(
            f"unknown config field in {' '.join(given) or 'the flags'} ({first_line(err).strip(chr(34))}): "
            "see config/stage_process.py for the fields"
        )


def run(main):
    """Run a stage's ``main(argv)`` with one-line errors and a one-line Ctrl-C."""
    try:
        argv = parse_flags(sys.argv)
        quiet_libraries()
        heap.hold()  # no garbage collection until the stage's imports and models are in (heap.settle)
        main(argv)
    except UserError as err:
        if _is_main_process() or not err.same_on_every_rank:
            for problem in getattr(err, "problems", [err]):
                print(f"error: {problem}", file=sys.stderr)
        leave(err.exit_code)
    except KeyboardInterrupt:
        if _is_main_process() and not os.environ.get("B2DIFFURL_DRIVER"):  # the driver prints its own line
            print(INTERRUPTED, file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except RuntimeError as err:
        # Another rank stopped (its error is printed by it) and this one lost its peers mid-collective.
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and _lost_peer(err):
            several_machines = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])) < int(
                os.environ["WORLD_SIZE"]
            )
            if several_machines and int(os.environ.get("LOCAL_RANK", "0")) == 0:  # a dead machine printed nothing here
                print(f"error: {LOST_PEER} ({first_line(err)})", file=sys.stderr)
            leave(EXIT_LOST_PEER)
        raise
    leave(0)


def leave(code):
    """End a stage process with ``code`` without the interpreter's teardown: freeing the millions of
    objects torch, diffusers and transformers leave costs seconds a process (docs/PERFORMANCE.md, "The three
    stages"); the stage's files are closed and its trackers finished by then. The atexit
    handlers (logging, accelerate) still run, then stdout and stderr are flushed."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


DIST_TIMEOUT = 1800  # seconds: torch's default for a process group


def _lost_peer(err):
    text = str(err).lower()
    return any(
        s in text
        for s in ("connection closed by peer", "connection reset by peer", "broken pipe", "timed out", "timeout")
    )


def quiet_libraries():
    """Keep the libraries' info chatter out of the stage logs. diffusers and transformers are not
    imported here (selection needs neither: importing them costs a second or two of start-up); the
    model loader quiets them when it imports them (:func:`b2diffurl.models.quiet_model_libraries`)."""
    import logging

    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    for name in ("diffusers", "transformers", "open_clip", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)


def lock_run_folder(config):
    """Stop at once when another live process works on this run folder (b2diffurl.runlock); main process only."""
    if _is_main_process():
        from b2diffurl.runlock import acquire_for_stage

        acquire_for_stage(os.path.join(config.save_path, config.exp_name))


def make_accelerator(config):
    """An Accelerator for a stage; the config is checked against the device before any model loads."""
    from datetime import timedelta

    import torch
    from accelerate import Accelerator, InitProcessGroupKwargs

    from b2diffurl.checks import check_device
    from b2diffurl.tf32 import set_tf32

    has_gpu = torch.cuda.is_available()
    check_device(config, "cuda" if has_gpu else "cpu")
    # cpu=True without a GPU: under `accelerate launch --multi_gpu` the ranks then join with gloo
    # (MULTI_CPU) instead of each running alone.
    # runtime.dist_timeout: how long a rank waits in a collective for the others (a machine that died
    # without closing its connections is noticed after it)
    timeout = InitProcessGroupKwargs(timeout=timedelta(seconds=config.runtime.get("dist_timeout", DIST_TIMEOUT)))
    accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=not has_gpu, kwargs_handlers=[timeout])
    # the UNet's matmuls (sampling, training, evaluation's sampling); rewards score without TF32
    # whatever this says (b2diffurl.tf32.full_precision inside b2diffurl.rewards)
    set_tf32(config.allow_tf32)
    return accelerator
