"""What a run was run with: ``<exp_dir>/settings.json``, written by the driver before round 0.

It holds the effective config (every field, after presets and driver variables), the driver
variables, the package versions, the project's git commit and what the model resolved to (``model``:
its pipeline class, backbone and the scheduler's prediction type). Each stage's marker holds the
config that stage ran with (:func:`b2diffurl.records.config_record`).

A rerun compares its settings with the recorded ones before it does anything. Once a stage of the
run has finished, a changed field stops the rerun with one line per field (``LR 0.005 -> 0.002``),
except the fields that cannot change what the finished rounds are (:data:`FREE_FIELDS`: more or
fewer rounds, the evaluation, logging, which latents are kept, a fresh optimizer); ``AllowChanges=1``
goes on with the new settings and records the change (``changes``: from which round, old -> new).
A changed code version or commit is reported in a note line and recorded, never refused. The
record is written before round 0 of a new run and when a change is allowed; a free change reaches it
at the end of the run (:func:`finish`), so a rerun that stops early leaves the record as it was.

The settings are those the driver has already checked (``python -m b2diffurl.driver prepare``): it
writes them once, with the record they make, to a file (:func:`write_prepared`) that the start and
the end of the run read (:func:`read_prepared`); neither loads or checks the config again.
"""

import os
import subprocess
import sys

from b2diffurl import layout, records, runlock
from b2diffurl.backbones import checkpoint_record
from b2diffurl.configs import REPO_ROOT, flatten
from b2diffurl.errors import Problems, show
from b2diffurl.variables import DRIVER_VARIABLES, field_name

# fields a rerun may change freely: they do not alter what a finished round is, or they are meant to
# change between reruns (the number of rounds, the evaluation, logging, kept latents, processes per round)
FREE_FIELDS = (
    "process.stage_cnt",
    "process.save_interval",
    "process.one_process",
    "log_with",
    "evaluate.",
    "FreshOptimizer",
    "runtime.dist_timeout",
)
# the per-round fields the driver sets for every round (not run settings), and where the run lives
ROUND_FIELDS = ("run_name", "split_step", "resume_from", "save_path", "train.fresh_optimizer")
PACKAGES = ("torch", "diffusers", "transformers", "peft", "accelerate", "open_clip_torch", "safetensors", "numpy")


def versions():
    from importlib import metadata

    found = {"python": sys.version.split()[0]}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def git_commit():
    """The project's commit (``+dirty`` with uncommitted changes to tracked files), or "unknown"."""
    try:
        head = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", REPO_ROOT, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_settings(config, values):
    """The record of a run: {config, variables, versions, commit}. ``values``: the driver's prepared variables."""
    config_fields = {k: v for k, v in flatten(config.to_dict()).items() if not k.startswith(ROUND_FIELDS)}
    variables = {name: values[name] for name in (*DRIVER_VARIABLES, "NUM_PROCESSES", "FreshOptimizer", "CONFIG")}
    # for the record: 2 x 1 processes run as 1 x 2 (not compared)
    variables["NUM_MACHINES"] = values.get("NUM_MACHINES", 1)
    variables.pop("SavePath")  # where the run lives is not a setting of it
    record = {"config": config_fields, "variables": variables, **environment_record(config_fields)}
    return records.json_safe(record)  # as it reads back from the file (tuples are lists, inf is "inf")


def environment_record(config_fields):
    """What the run's record reads off this machine now rather than from its settings: the package
    versions, the commit, and what the model resolves to (a tiny model built by the first stage has
    no model_index.json before it). ``config_fields``: the record's flat config."""
    model = checkpoint_record(config_fields["pretrained.model"], config_fields["pretrained.revision"])
    return {"versions": versions(), "commit": git_commit(), "model": model}


def compared(old, new):
    """{field: (old, new)} of every run setting (config field, NUM_PROCESSES) that differs."""
    before = {
        **old["config"],
        "NUM_PROCESSES": old["variables"].get("NUM_PROCESSES"),
        "FreshOptimizer": old["variables"].get("FreshOptimizer"),
    }
    after = {
        **new["config"],
        "NUM_PROCESSES": new["variables"]["NUM_PROCESSES"],
        "FreshOptimizer": new["variables"]["FreshOptimizer"],
    }
    return {k: (before.get(k), after.get(k)) for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}


def finished_stages(exp_dir):
    """[(round name, stage)] of every finished stage of the run."""
    return [
        (name, stage)
        for _, name in layout.round_folders(exp_dir)
        for stage in records.STAGES
        if records.is_done(os.path.join(exp_dir, name), stage)
    ]


def schedule_notes(exp_dir, ks):
    """Notes on finished rounds whose k differs from the new schedule (a changed StageCnt)."""
    notes = []
    for r, name in layout.round_folders(exp_dir):
        round_dir = os.path.join(exp_dir, name)
        if r < len(ks) and records.is_done(round_dir, "sample"):
            k = records.read_marker(round_dir, "sample")["split_step"]
            if k != ks[r]:
                notes.append(
                    f"note: {name} was sampled with k {k}; the new schedule gives it k {ks[r]} (finished rounds are "
                    "kept as they are)"
                )
    return notes


def write_prepared(path, values, config):
    """Hand the checked run on: its driver values and the settings record they make, as JSON (an infinite
    threshold reads back as "inf", as in settings.json: start reads only ``AllowChanges`` and ``Ks``)."""
    records.write_json(path, records.json_safe({"values": values, "record": run_settings(config, values)}))


def read_prepared(path):
    """({driver variable: value}, the run's settings record) that :func:`write_prepared` wrote."""
    prepared = records.read_json(path)
    return prepared["values"], prepared["record"]


def start(exp_dir, fd, prepared):
    """The driver's start: lock the run folder (on the shell's descriptor ``fd``), compare this run's
    settings (``prepared``: :func:`read_prepared`'s values and record) with the recorded ones, and write
    ``settings.json``. Prints notes; raises on a change that needs ``AllowChanges=1``."""
    runlock.acquire(exp_dir, fd=fd, command="driver")
    values, new = prepared[0], dict(prepared[1])
    path = layout.settings_path(exp_dir)
    old = records.read_json(path) if os.path.isfile(path) else None
    done = finished_stages(exp_dir)
    changes = list(old.get("changes", [])) if old else []
    notes = []
    if old and done:
        diff = compared(old, new)
        refused = {k: v for k, v in diff.items() if not k.startswith(FREE_FIELDS)}
        if refused and values["AllowChanges"] != "1":
            stages = ", ".join(f"{name}/{stage}" for name, stage in done[-3:])
            lines = [
                f"{field_name(k)} {show(a)} -> {show(b)}: the finished stages of this run ({stages}) used {show(a)}"
                for k, (a, b) in refused.items()
            ]
            lines.append(
                f"{exp_dir} was run with other settings (above): rerun with its settings, choose another ExpName, "
                f"or set AllowChanges=1 to continue with the new ones (recorded in {layout.SETTINGS_NAME})"
            )
            raise Problems(lines)
        if "process.stage_cnt" in diff:
            notes += schedule_notes(exp_dir, values["Ks"])
        code = {k: (old.get(k), new[k]) for k in ("commit", "versions") if old.get(k) != new[k]}
        for key, (a, b) in code.items():
            if key == "commit":
                notes.append(f"note: code commit {a} -> {b} since this run last started")
            else:
                notes.append(
                    "note: package versions changed since this run last started: "
                    + ", ".join(f"{p} {a.get(p)} -> {b.get(p)}" for p in b if (a or {}).get(p) != b.get(p))
                )
        if refused or code:
            rounds = layout.round_folders(exp_dir)
            first_open = next(
                (r for r, name in rounds if not records.is_done(os.path.join(exp_dir, name), "train")), None
            )
            changes.append(
                {
                    "from_round": first_open if first_open is not None else len(rounds),
                    "fields": {field_name(k): [a, b] for k, (a, b) in {**refused, **code}.items()},
                }
            )
            if refused:
                notes += [
                    f"note: AllowChanges=1: {field_name(k)} {show(a)} -> {show(b)} from round "
                    f"{changes[-1]['from_round']} on"
                    for k, (a, b) in refused.items()
                ]
    for line in notes:
        print(line, file=sys.stderr)
    new["changes"] = changes
    if old is None or not done or changes != old.get("changes", []):
        records.write_json(path, new)  # a new run, or a change the user allowed (or new code): recorded now


def finish(exp_dir, prepared):
    """At the end of a run: record its settings as they are now. Free changes (more rounds, another
    evaluation) reach settings.json here, once the run has used them; a run that stopped on the way
    (a damaged file, Ctrl-C) leaves the record as its finished stages knew it."""
    path = layout.settings_path(exp_dir)
    old = records.read_json(path) if os.path.isfile(path) else {}
    record = prepared[1]
    new = {**record, **records.json_safe(environment_record(record["config"])), "changes": old.get("changes", [])}
    if new != old:
        records.write_json(path, new)
