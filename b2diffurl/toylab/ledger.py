"""The toy benchmark's layout and its committed record.

Layout (the same under the working folder ``--save-path`` and under the record):
``grid/<method>_lr<rate>_seed<s>/``, ``final/<template>/<method>_seed<s>/`` (``quick/...`` for
``--quick``) and ``f1/base/stability_k<steps>/``.

The record, ``docs/results/toy_benchmark/`` in git, holds per finished run what the report reads and
nothing else: ``progress.csv``, ``settings.json`` (what the run's config was) and every
``base/eval/<set>.json`` and ``round_NNN/eval/<set>.json``, plus ``record.json`` (the protocol's
variables for the run, its wall time and threads), written last: a folder without it is not a
record. Beside the runs: ``timings.json`` (wall seconds per part), ``grid/picks.json`` and the
stability study's ``stability.json``. docs/RESULTS.md is written from the record alone, so it
regenerates on a clean checkout, and a run that is recorded is not run again: the benchmark's
many hours of CPU can be spread over machines and sessions, each committing what it finished. The
run folders themselves (images, LoRA weights, logs) stay in the working folder, out of git.
"""

import csv
import os
import platform
import shutil

from b2diffurl import configs, layout, records
from b2diffurl.perf import cpu_name
from b2diffurl.toylab import protocol
from b2diffurl.toylab.protocol import METHODS

RECORD_ROOT = configs.repo_path("docs", "results", "toy_benchmark")
RECORD = "record.json"
COPIED = (layout.PROGRESS_NAME, layout.SETTINGS_NAME)  # beside each run's eval/<set>.json files
PICKS = "picks.json"
TIMINGS = "timings.json"
STABILITY = "stability.json"


def grid_dir(root, label, lr, seed):
    return os.path.join(root, "grid", f"{METHODS[label].slug}_lr{protocol.lr_text(lr)}_seed{seed}")


def final_dir(root, label, template, seed, kind="final"):
    return os.path.join(root, kind, template, f"{METHODS[label].slug}_seed{seed}")


def f1_dir(root):
    """The stability study's round folder (python -m b2diffurl.stability writes stability.json there)."""
    return os.path.join(root, "f1", "base", f"stability_k{protocol.F1_STEPS}")


def grid_runs(root):
    """[(label, lr, seed, run folder)] of the learning-rate grid."""
    return [
        (label, lr, seed, grid_dir(root, label, lr, seed))
        for label, _ in protocol.PARTS["grid"].runs
        for lr in protocol.LR_GRID
        for seed in protocol.SELECTION_SEEDS
    ]


def read_timings(root):
    """timings.json: ``{"runs": {run key: seconds}, "parts": {part: {"wall_seconds", "jobs", "threads"}}}``.
    A recorded run's seconds are its :func:`work_seconds`."""
    path = os.path.join(root, TIMINGS)
    timings = records.read_json(path) if os.path.isfile(path) else {}
    if timings and "runs" not in timings and "parts" not in timings:  # written before parts were timed: run keys only
        timings = {"runs": timings}
    runs = dict(timings.get("runs", {}))
    for key in recorded_runs(root):
        runs[key] = work_seconds(os.path.join(root, key))
    return {"runs": runs, "parts": timings.get("parts", {})}


def add_part_time(root, part, wall, jobs, threads):
    """Add ``wall`` seconds to the part's wall time in timings.json."""
    path = os.path.join(root, TIMINGS)
    timings = records.read_json(path) if os.path.isfile(path) else {}
    entry = timings.setdefault("parts", {}).setdefault(part, {"wall_seconds": 0.0})
    entry.update(wall_seconds=round(entry["wall_seconds"] + wall, 1), jobs=jobs, threads=threads)
    os.makedirs(root, exist_ok=True)
    records.write_json(path, timings)


def read_picks(root):
    path = os.path.join(root, "grid", PICKS)
    if not os.path.isfile(path):
        return {}
    return {label: p["learning_rate"] for label, p in records.read_json(path)["picks"].items()}


def read_record(record_dir):
    """The run's record.json, or None when the run is not recorded (yet)."""
    path = os.path.join(record_dir, RECORD)
    return records.read_json(path) if os.path.isfile(path) else None


def recorded_runs(root):
    """{run key (path under root): record.json} of every recorded run under ``root``."""
    out = {}
    if not os.path.isdir(root):
        return out
    for folder, _, files in os.walk(root):
        if RECORD in files:
            out[os.path.relpath(folder, root)] = records.read_json(os.path.join(folder, RECORD))
    return out


def work_seconds(run_dir):
    """What a run's rounds and evaluations took, as they timed themselves (progress.csv's ``seconds``,
    each eval JSON's ``seconds``): the same however often the run was interrupted and resumed. Process
    start-ups are not in it (their cost: docs/TOYWORLD.md)."""
    total = 0.0
    progress = layout.progress_path(run_dir)
    if os.path.isfile(progress):
        with open(progress, newline="") as f:
            total += sum(float(row["seconds"]) for row in csv.DictReader(f) if row.get("seconds"))
    for rel in evaluation_files(run_dir):
        if rel.endswith(".json") and os.sep in rel:
            total += float(records.read_json(os.path.join(run_dir, rel)).get("seconds") or 0.0)
    return total


def differences(record, variables):
    """The protocol variables in which a record differs from the planned run, as 'NAME recorded A, planned B'."""
    old, new = record["variables"], {k: str(v) for k, v in variables.items()}
    return [
        f"{k} recorded {old.get(k, '(unset)')}, planned {new.get(k, '(unset)')}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]


def evaluation_files(run_dir):
    """Paths, relative to the run folder, of what a record keeps: COPIED and every <round>/eval/<set>.json."""
    out = [name for name in COPIED if os.path.isfile(os.path.join(run_dir, name))]
    for name in layout.evaluated_folders(run_dir):
        eval_dir = layout.eval_dir(run_dir, name)
        out += [os.path.join(name, layout.EVAL_DIR, f) for f in sorted(os.listdir(eval_dir)) if f.endswith(".json")]
    return out


def record_run(run_dir, record_dir, variables, wall_seconds, threads):
    """Copy a finished run's evaluations into ``record_dir`` (replacing an older record of it) and write
    its record.json last. Built beside the target and renamed into place, so an interruption leaves
    either the old record or the new one."""
    partial = record_dir.rstrip(os.sep) + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    for rel in evaluation_files(run_dir):
        os.makedirs(os.path.dirname(os.path.join(partial, rel)), exist_ok=True)
        shutil.copyfile(os.path.join(run_dir, rel), os.path.join(partial, rel))
    os.makedirs(partial, exist_ok=True)
    records.write_json(
        os.path.join(partial, RECORD),
        {
            "variables": {k: str(v) for k, v in variables.items()},
            "wall_seconds": round(wall_seconds, 1),
            "threads": threads,
            "machine": machine(),
        },
    )
    if os.path.isdir(record_dir):
        shutil.rmtree(record_dir)
    os.replace(partial, record_dir)


def machine():
    """This machine in one phrase (each record names where it ran), with the CPU's model: two CPU models
    train the same seeds into different runs (their float sums differ)."""
    return f"{platform.machine()} ({cpu_name()}), {os.cpu_count()} CPU cores, Python {platform.python_version()}"


def record_file(source, record_path):
    """Copy one result file (the stability study's) into the record."""
    os.makedirs(os.path.dirname(record_path), exist_ok=True)
    shutil.copyfile(source, record_path + ".partial")
    os.replace(record_path + ".partial", record_path)
