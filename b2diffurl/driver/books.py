"""The run folder's books: progress.csv, the cleanup that makes a stopped run's folder what an
uninterrupted run leaves, and a round's summary line."""

import csv
import io
import os
import shutil

from b2diffurl import layout, outcome, records
from b2diffurl.summaries import round_finished, round_row

COLUMNS = [
    "round",
    "run_name",
    "k",
    "split_time",
    "trajectories",
    "reward_queries",
    "reward_mean",
    "reward_std",
    "selected",
    "loss",
    "approx_kl",
    "clipfrac",
    "grad_norm",
    "optimizer_steps",
    "seconds",
    *outcome.EVAL_COLUMNS,
]


def progress_table(exp_dir):
    """CSV text of every finished round of the experiment, in round order (with cumulative reward queries
    and, where the round was evaluated, its evaluation's numbers: :data:`b2diffurl.outcome.EVAL_COLUMNS`)."""
    rows, queries = [], 0
    for r, name in layout.round_folders(exp_dir):
        if round_finished(os.path.join(exp_dir, name)):
            row = round_row(exp_dir, name)
            queries += row["trajectories"]
            rows.append({"round": r, "reward_queries": queries, **row, **outcome.eval_columns(exp_dir, name)})
    # a combined reward's components (reward_<name>_mean) follow reward_std
    components = list(
        dict.fromkeys(
            k for row in rows for k in row if k.startswith("reward_") and k.endswith("_mean") and k not in COLUMNS
        )
    )
    at = COLUMNS.index("reward_std") + 1
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS[:at] + components + COLUMNS[at:], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


# what a trained round no longer needs (process.save_interval)
INTERVAL_LATENTS = ("samples", "selected.safetensors")


def keeps_latents(r, save_interval):
    """Whether round r keeps its interval latents once trained: every save_interval-th round (0: none)."""
    return save_interval > 0 and r % save_interval == 0


def catch_up(exp_dir, save_interval):
    """Make the run folder what an uninterrupted run would have left, whatever stop came before:
    no temporary files or folders of finished stages, the interval latents (``samples/`` and
    ``selected.safetensors``) only in every ``save_interval``-th finished round (none for 0), and
    ``progress.csv`` rebuilt from the finished rounds' markers."""
    if not os.path.isdir(exp_dir):
        return
    records.purge_temporary_files(exp_dir, recursive=False)
    for r, name in layout.round_folders(exp_dir):
        round_dir = os.path.join(exp_dir, name)
        records.purge_temporary_files(round_dir, recursive=False)
        for stage in records.STAGES:
            if records.is_done(round_dir, stage) and os.path.isdir(layout.stage_tmp_dir(round_dir, stage)):
                shutil.rmtree(layout.stage_tmp_dir(round_dir, stage))
        if not keeps_latents(r, save_interval) and round_finished(round_dir):
            for name in INTERVAL_LATENTS:  # trained: nothing reads the interval latents any more
                path = os.path.join(round_dir, name)
                if os.path.isdir(path):
                    shutil.rmtree(path)
                elif os.path.isfile(path):
                    os.remove(path)
    path = layout.progress_path(exp_dir)
    table = progress_table(exp_dir)
    current = open(path).read() if os.path.isfile(path) else None
    if current != table:
        records.write_bytes(path, table.encode())
        records.fault_point(layout.PROGRESS_NAME)


def summary_line(exp_dir, run_name):
    row = round_row(exp_dir, run_name)
    return (
        f"{run_name} | k {row['k']} | reward {row['reward_mean']:.4f} +- {row['reward_std']:.4f} | "
        f"selected {row['selected']}/{row['trajectories']} | loss {row['loss']:.4f} | {row['seconds']:.1f} s"
    )
