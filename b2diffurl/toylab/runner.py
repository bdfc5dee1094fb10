"""Running a benchmark plan: each (method, seed) one ``bash run_process.sh`` in its run folder,
``--jobs`` of them at once, each finished one recorded (:mod:`b2diffurl.toylab.ledger`) or timed.

Beside the run folders: ``logs/<run key>.log`` (each run's output). ``--jobs N`` runs N run folders
at once, the cores shared out between them (:func:`threads_per_run`).
"""

import os
import subprocess
import sys
import time

from b2diffurl import configs, records
from b2diffurl.toylab import ledger

DRIVER = ("bash", configs.repo_path("run_process.sh"))  # the command each planned run is


class BenchmarkError(Exception):
    """Printed as one ``error:`` line, exit status 2."""


def planned_run(what, run_dir, variables):
    """One entry of a plan: (what, run folder, environment, protocol variables)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHON=sys.executable, SavePath=os.path.dirname(run_dir), **variables)
    return what, run_dir, env, variables


def threads_per_run(jobs):
    """Threads each of ``jobs`` concurrent runs gets: the cores shared out (OMP_NUM_THREADS, when set, wins)."""
    return int(os.environ.get("OMP_NUM_THREADS") or max(1, (os.cpu_count() or 1) // jobs))


def past(deadline):
    """Whether ``deadline`` (a ``time.time()``, or None: none) has passed."""
    return deadline is not None and time.time() >= deadline


def unrecorded(save_path, plan, record_root):
    """The plan's runs not recorded under ``record_root`` (all of them without one); BenchmarkError
    when a record's variables differ from the plan's."""
    todo, stale = [], []
    for entry in plan:
        what, run_dir, _, variables = entry
        key = os.path.relpath(run_dir, save_path)
        record = ledger.read_record(os.path.join(record_root, key)) if record_root else None
        if record is None:
            todo.append(entry)
        elif ledger.differences(record, variables):
            stale.append(f"{os.path.join(record_root, key)} ({'; '.join(ledger.differences(record, variables))})")
    if stale:
        raise BenchmarkError(
            "recorded runs differ from the protocol: "
            + ", ".join(stale)
            + ": delete those record folders to run them again"
        )
    return todo


def start(save_path, entry, command, threads):
    """Start one planned run, its output appended to its log; returns (process, what it runs)."""
    what, run_dir, env, variables = entry
    key = os.path.relpath(run_dir, save_path)
    log = os.path.join(save_path, "logs", key + ".log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    out = open(log, "a")
    out.write(f"\n===== {what}: {run_dir} ({threads} thread(s))\n")
    out.flush()
    env = dict(env, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.Popen(list(command), cwd=configs.REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, (what, run_dir, variables, key, log, out, time.time())


def time_run(save_path, key, seconds):
    """A run's wall time in ``save_path``'s timings.json (a rerun that only skipped keeps the first)."""
    path = os.path.join(save_path, ledger.TIMINGS)
    timings = records.read_json(path) if os.path.isfile(path) else {}
    runs = timings.setdefault("runs", {})
    if seconds > 20 or key not in runs:
        runs[key] = round(seconds, 1)
    records.write_json(path, timings)


def run_plan(
    save_path,
    plan,
    jobs=1,
    command=DRIVER,
    record_root=None,
    deadline=None,
):
    """Run ``plan`` (:func:`planned_run` entries), ``jobs`` at a time, each with :func:`threads_per_run`
    threads, each's output in ``logs/<run key>.log`` (the run key: its folder under ``save_path``).

    With ``record_root``, a run recorded there (:mod:`ledger`) is skipped, a record whose variables
    differ from the plan's stops everything before any run starts, and each run that finishes is
    recorded at once. Without it, each run's wall time goes to ``save_path``'s timings.json.
    Returns the plan's wall time, whether any run did work (took over 20 s) and how many runs were not
    started: none starts after ``deadline`` (a ``time.time()``; benchmark --stop-after), the ones
    running finish and are recorded, and the same plan later goes on with the rest. After a failed run
    no new one starts; the ones running finish, then BenchmarkError names every failed run and its log.

    How many jobs share the cores best, and how a round's time changes with them: docs/TOYWORLD.md.
    The float sums differ with the thread count, so a run's numbers depend on it; the report states it."""
    threads = threads_per_run(jobs)
    todo = unrecorded(save_path, plan, record_root)
    if len(todo) < len(plan):
        print(f"{len(plan) - len(todo)} of {len(plan)} run(s) already recorded under {record_root}", flush=True)
    started, running, failed, done, worked = time.time(), {}, [], 0, False
    total = len(todo)
    try:
        while todo or running:
            while todo and len(running) < jobs and not failed and not past(deadline):
                proc, state = start(save_path, todo.pop(0), command, threads)
                running[proc] = state
                print(f"[{total - len(todo)}/{total}] {state[0]} ...", flush=True)
            if not running:
                break  # a run failed or the deadline passed: nothing more starts
            finished = [proc for proc in running if proc.poll() is not None]
            if not finished:
                time.sleep(0.5)
                continue
            for proc in finished:
                what, run_dir, variables, key, log, out, t0 = running.pop(proc)
                out.close()
                seconds = time.time() - t0
                if proc.returncode != 0:
                    failed.append(f"{what} (exit {proc.returncode}; its output: {log})")
                    continue
                done += 1
                worked = worked or seconds > 20
                if record_root:
                    ledger.record_run(run_dir, os.path.join(record_root, key), variables, seconds, threads)
                else:
                    time_run(save_path, key, seconds)
                print(f"  done: {what}, {seconds / 60:.1f} min", flush=True)
    finally:
        for proc, (*_, out, _) in running.items():  # interrupted: the runs stop with their driver's message
            proc.wait()
            out.close()
    if failed:
        raise BenchmarkError(
            "failed: "
            + "; ".join(failed)
            + (f"; {total - done - len(failed)} run(s) not finished" if total > done + len(failed) else "")
        )
    return time.time() - started, worked, len(todo)
