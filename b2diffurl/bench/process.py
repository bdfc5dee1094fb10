"""Measuring a process from outside: its wall time, its peak RSS and its output; the import time of a
fresh interpreter; and the name of the machine the numbers come from."""

import os
import subprocess
import sys
import time

from b2diffurl.configs import REPO_ROOT

# modules each stage script imports before it loads a model
STAGE_IMPORTS = {
    "sample": [
        "b2diffurl.cli",
        "b2diffurl.checks",
        "accelerate",
        "b2diffurl.models",
        "b2diffurl.sampler",
        "diffusers",
        "transformers",
    ],
    "select": [
        "b2diffurl.cli",
        "b2diffurl.checks",
        "accelerate",
        "b2diffurl.rewards",
        "b2diffurl.selection",
        "open_clip",
    ],
    "train": [
        "b2diffurl.cli",
        "b2diffurl.checks",
        "accelerate",
        "b2diffurl.models",
        "b2diffurl.trainer",
        "diffusers",
        "transformers",
        "peft",
    ],
}


def run_measured(argv, env=None):
    """Run ``argv`` as its own process; returns (wall seconds, peak RSS bytes of that process, output).
    A failure raises with the process's last output lines."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(argv[:2])} failed with exit status {proc.returncode}:\n{tail}")
    return wall, usage.ru_maxrss * 1024, output


def run_script(script, flags):
    """Run the repository's ``script`` (run_sample.py, ...) with ``flags``, as :func:`run_measured` does."""
    return run_measured([sys.executable, os.path.join(REPO_ROOT, script), *flags])


def import_seconds(modules):
    """Seconds a fresh interpreter takes to start and import ``modules`` (one run)."""
    wall, _, _ = run_measured([sys.executable, "-c", "import " + ", ".join(modules)])
    return wall


def device_name():
    """The machine the benchmark runs on: the GPU's name, or the CPU's and its core count."""
    import torch

    from b2diffurl.perf import cpu_name

    if torch.cuda.is_available():
        return f"1 x {torch.cuda.get_device_name(0)}"
    return f"CPU ({cpu_name()}, {os.cpu_count()} cores)"
