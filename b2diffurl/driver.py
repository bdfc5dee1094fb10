"""Helpers for run_process.sh (light imports only: no torch, starts in milliseconds).

    python -m b2diffurl.driver defaults CONFIG        shell assignments of the driver's defaults
    python -m b2diffurl.driver schedule N LEFT RIGHT  k of every round (BPT), space separated
    python -m b2diffurl.driver report EXP_DIR ROUND   the round's summary line, and progress.csv

The defaults come from the config (one source of truth); the driver's variable names are the
official run_process.sh's.
"""

import csv
import io
import json
import os
import shlex
import sys

from b2diffurl.schedule import interval_length, round_index

# official driver variable -> config field
DRIVER_VARIABLES = {
    "SaveInterval": "process.save_interval",
    "SavePath": "save_path",
    "PromptFile": "prompt_file",
    "RandomPrompt": "prompt_random_choose",
    "ExpName": "exp_name",
    "Seed": "seed",
    "Beta1": "train.beta1",
    "Beta2": "train.beta2",
    "BatchCnt": "sample.num_batches_per_epoch",
    "StageCnt": "process.stage_cnt",
    "SplitStepLeft": "process.split_step_left",
    "SplitStepRight": "process.split_step_right",
    "TrainEpoch": "train.num_epochs",
    "AccStep": "train.gradient_accumulation_steps",
    "LR": "train.learning_rate",
    "NumStep": "sample.num_steps",
    "History_Cnt": "eval.history_cnt",
    "PosThreshold": "eval.pos_threshold",
    "NegThreshold": "eval.neg_threshold",
    "SplitTime": "split_time",
}

COLUMNS = [
    "round", "run_name", "k", "split_time", "trajectories", "reward_queries", "reward_mean", "reward_std",
    "selected", "loss", "approx_kl", "clipfrac", "grad_norm", "optimizer_steps", "seconds",
]


def load_config(spec):
    """``path/to/config.py[:preset]`` -> ConfigDict, as absl's config_flags reads it."""
    import importlib.util

    path, _, preset = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("_driver_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(preset) if preset else module.get_config()


def defaults(spec):
    """``Default_<Var>=<value>`` lines for every driver variable."""
    config = load_config(spec)
    lines = []
    for var, field in DRIVER_VARIABLES.items():
        value = config
        for part in field.split("."):
            value = value[part]
        lines.append(f"Default_{var}={shlex.quote(str(value))}")
    return "\n".join(lines)


def schedule(n_rounds, left, right):
    if n_rounds < 1:
        raise SystemExit(f"error: StageCnt={n_rounds} must be >= 1")
    if not 1 <= left <= right:
        raise SystemExit(f"error: SplitStepLeft={left}, SplitStepRight={right}: need 1 <= SplitStepLeft <= SplitStepRight")
    return " ".join(str(interval_length(r, n_rounds, left, right)) for r in range(n_rounds))


def _read(path):
    with open(path) as f:
        return json.load(f)


def round_row(exp_dir, run_name):
    """The progress row of a finished round, from its sample/select/train markers and manifest."""
    round_dir = os.path.join(exp_dir, run_name)
    sample, select, train = (_read(os.path.join(round_dir, f"{s}.done")) for s in ("sample", "select", "train"))
    return {
        "run_name": run_name,
        "k": sample["split_step"],
        "split_time": sample["split_time"],
        "trajectories": select["trajectories"],
        "reward_mean": select["reward_mean"],
        "reward_std": select["reward_std"],
        "selected": select["selected"],
        "loss": train["loss"],
        "approx_kl": train["approx_kl"],
        "clipfrac": train["clipfrac"],
        "grad_norm": train["grad_norm"],
        "optimizer_steps": train["optimizer_steps"],
        "seconds": round(sample["seconds"] + select["seconds"] + train["seconds"], 2),
    }


def progress_table(exp_dir):
    """CSV text of every finished round of the experiment, in round order (with cumulative reward queries)."""
    names = []
    for name in os.listdir(exp_dir):
        if os.path.isfile(os.path.join(exp_dir, name, "train.done")):
            try:
                names.append((round_index(name)[1], name))
            except ValueError:
                continue
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    queries = 0
    for r, name in sorted(names):
        row = round_row(exp_dir, name)
        queries += row["trajectories"]
        writer.writerow({"round": r, "reward_queries": queries, **row})
    return out.getvalue()


def report(exp_dir, run_name):
    """Print the round's summary line; rewrite progress.csv only if its content changed."""
    row = round_row(exp_dir, run_name)
    print(
        f"{run_name} | k {row['k']} | reward {row['reward_mean']:.4f} +- {row['reward_std']:.4f} | "
        f"selected {row['selected']}/{row['trajectories']} | loss {row['loss']:.4f} | {row['seconds']:.1f} s"
    )
    path = os.path.join(exp_dir, "progress.csv")
    table = progress_table(exp_dir)
    if not os.path.isfile(path) or open(path).read() != table:
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(table)
        os.replace(tmp, path)


def main(argv):
    command, args = argv[0], argv[1:]
    if command == "defaults":
        print(defaults(args[0]))
    elif command == "schedule":
        print(schedule(*map(int, args)))
    elif command == "report":
        report(*args)
    else:
        raise SystemExit(f"unknown command {command!r}: use defaults, schedule or report")


if __name__ == "__main__":
    main(sys.argv[1:])
