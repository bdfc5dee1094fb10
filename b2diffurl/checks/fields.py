"""The rules of single fields: names and paths, sampling, runtime, the policy, selection, the driver's schedule.

Each function adds its lines to a :class:`~b2diffurl.checks.checker.Checker` in a fixed order (the
order the problems are reported in); the training fields are :mod:`b2diffurl.checks.training`'s.
"""

import re

from b2diffurl.checks.checker import is_int
from b2diffurl.choices import ATTENTIONS, LATENT_DTYPES, MIXED_PRECISION

PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.+=@,-]+$")


def check_names(c):
    """exp_name and run_name are plain folder names; save_path is set; seed >= 0."""
    config = c.config
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


def check_sampling(c):
    """The DDIM sampling of a round: steps, interval length, branches, eta, guidance, batches, latents."""
    config = c.config
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
    _check_latent_dtype(c)


def _check_latent_dtype(c):
    if c.config.sample.latent_dtype == "bf16":
        c.require(
            False,
            "sample.latent_dtype",
            "bf16",
            "rounds a stored latent by up to 73% of the last DDIM step's standard "
            "deviation (an 8-bit mantissa), which changes the trajectories being learned: "
            "use fp16 (the default: 9% at most) or fp32",
        )
    else:
        c.one_of(
            "sample.latent_dtype",
            LATENT_DTYPES,
            f"must be one of {', '.join(LATENT_DTYPES)} "
            "(fp16 halves the interval latents on disk, exactly recomputable)",
        )


def check_runtime(c):
    """How the UNet runs: memory layout, compilation, the collectives' timeout, attention."""
    for name in ("channels_last", "compile_unet"):
        c.flag(f"runtime.{name}")
    c.number("runtime.dist_timeout", 0, above=True, hint=" (seconds a process waits in a collective for the others)")
    c.one_of(
        "runtime.attention",
        ATTENTIONS,
        f"must be one of {', '.join(ATTENTIONS)} (sdpa: torch's fused attention; math: the plain reference)",
    )


def check_batches(c, num_processes):
    """A round's batches divide over the processes; the prompt draw is 0 or 1."""
    config = c.config
    if c.integer("sample.num_batches_per_epoch", 1):
        c.require(
            config.sample.num_batches_per_epoch % num_processes == 0,
            "sample.num_batches_per_epoch",
            config.sample.num_batches_per_epoch,
            f"does not divide over {num_processes} processes: use a multiple of {num_processes}",
        )
    c.require(
        config.prompt_random_choose in (0, 1) and is_int(config.prompt_random_choose),
        "prompt_random_choose",
        config.prompt_random_choose,
        "must be 0 or 1",
    )


def check_policy(c):
    """The policy's precision and its LoRA."""
    c.one_of("mixed_precision", MIXED_PRECISION, f"must be one of {', '.join(MIXED_PRECISION)}")
    c.flag("allow_tf32")
    c.integer("lora.rank", 1)
    c.require(
        len(c.config.lora.target_modules) > 0,
        "lora.target_modules",
        c.config.lora.target_modules,
        "is empty: use ('to_q', 'to_k', 'to_v', 'to_out.0')",
    )


def check_selection(c):
    """The selection's history and thresholds (``eval.*``)."""
    c.integer("eval.history_cnt", 0, hint=" (the paper uses 8)")
    c.number("eval.pos_threshold", allow_inf=True, hint=" (-inf keeps every group's best)")
    c.number("eval.neg_threshold", allow_inf=True, hint=" (inf keeps every group's worst)")


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
        and is_int(steps)
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
