"""The paper in miniature on the toy world: ``python -m b2diffurl.toyworld benchmark --part NAME``.

Runs the protocol of :mod:`b2diffurl.toyworld.protocol` part by part (``grid``, then ``fig5``,
``fig7``, ``fig8``; ``all`` runs them in that order), each (method, seed) one ``bash run_process.sh``
on the ``toy`` preset. Everything is resumable: a rerun skips finished rounds and evaluations, and a
run folder whose recorded settings differ from the protocol's stops with the driver's one-line-per-
setting message. After the runs, docs/RESULTS.md and docs/figures/toy_benchmark/ are rewritten from
every run folder that exists (parts not run yet are named there), a ``## Discussion`` section already
in RESULTS.md kept as it is.

``--quick`` runs the pipeline end to end in under 30 minutes (B2-DiffuRL vs DDPO, 2 seeds, 4 rounds,
the grid's learning rates when it has picked them, else the toy preset's) and writes its report to
``<save-path>/quick/RESULTS.md`` and its figures beside it; docs/ is left alone.

Layout under ``--save-path`` (default ``model/toy_benchmark``):
``grid/<method>_lr<rate>_seed<s>/``, ``grid/picks.json`` (the learning rate picked per method),
``final/<template>/<method>_seed<s>/``, ``quick/<template>/<method>_seed<s>/``, ``timings.json``
(wall seconds per run folder and per part, with the runs at a time and their threads) and
``logs/<run folder>.log`` (each run's output). ``--jobs N`` runs N run folders at once, the cores
shared out between them (:func:`run_plan`).
"""

import os
import subprocess
import sys
import time

from b2diffurl import records
from b2diffurl.driver import REPO_ROOT
from b2diffurl.toyworld import protocol
from b2diffurl.toyworld.protocol import METHODS, PARTS
from b2diffurl.toyworld.verdicts import at_budget, pick_learning_rate

RESULTS = os.path.join(REPO_ROOT, "docs", "RESULTS.md")
FIGURES = os.path.join(REPO_ROOT, "docs", "figures", "toy_benchmark")
PICKS = "picks.json"


class BenchmarkError(Exception):
    """Printed as one ``error:`` line, exit status 2."""


def grid_dir(save_path, label, lr, seed):
    return os.path.join(save_path, "grid", f"{METHODS[label].slug}_lr{protocol.lr_text(lr)}_seed{seed}")


def final_dir(save_path, label, template, seed, kind="final"):
    return os.path.join(save_path, kind, template, f"{METHODS[label].slug}_seed{seed}")


def run_env(run_dir, label, template, seed, lr, rounds, eval_interval, eval_sets):
    """run_process.sh's environment for one run of the protocol."""
    method = METHODS[label]
    variables = {
        "CONFIG": f"config/stage_process.py:toy{method.presets}", "SavePath": os.path.dirname(run_dir),
        "ExpName": os.path.basename(run_dir), "Seed": protocol.SEED_STRIDE * seed, "StageCnt": rounds,
        "EvalInterval": eval_interval, "EvalSets": eval_sets, "EvalImages": protocol.EVAL_IMAGES, "PromptFile": protocol.prompt_file(template),
        **method.variables,
    }
    if lr is not None:
        variables["LR"] = lr
    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHON=sys.executable, **{k: str(v) for k, v in variables.items()})


def read_timings(save_path):
    """timings.json: ``{"runs": {run key: wall seconds}, "parts": {part: {"wall_seconds", "jobs", "threads"}}}``."""
    path = os.path.join(save_path, "timings.json")
    timings = records.read_json(path) if os.path.isfile(path) else {}
    if timings and "runs" not in timings:  # written before parts were timed: run keys only
        timings = {"runs": timings}
    return {"runs": timings.get("runs", {}), "parts": timings.get("parts", {})}


def threads_per_run(jobs):
    """Threads each of ``jobs`` concurrent runs gets: the cores shared out (OMP_NUM_THREADS, when set, wins)."""
    return int(os.environ.get("OMP_NUM_THREADS") or max(1, (os.cpu_count() or 1) // jobs))


def run_plan(save_path, plan, jobs=1, command=("bash", os.path.join(REPO_ROOT, "run_process.sh"))):
    """Run ``plan`` ([(what, run folder, env)]), ``jobs`` at a time, each with :func:`threads_per_run`
    threads, each's output in ``logs/<run key>.log``. Records each run's wall time (timings.json's
    ``runs``); returns the plan's wall time and whether any run did work (took over 20 s). After a failed run no new one starts; the ones running
    finish, then BenchmarkError names every failed run and its log.

    Two runs at 1 thread each on 2 cores finish a round in about 130 s each, one run at 2 threads in
    about 95 s (the toy world's rounds are too small for two threads to share well): 2 jobs are
    about 1.45x the throughput. The float sums differ with the thread count, so a run's numbers
    depend on it; the report states it."""
    threads = threads_per_run(jobs)
    started, running, failed, done, worked = time.time(), {}, [], 0, False
    todo = list(plan)
    try:
        while todo or running:
            while todo and len(running) < jobs and not failed:
                what, run_dir, env = todo.pop(0)
                key = os.path.relpath(run_dir, save_path)
                log = os.path.join(save_path, "logs", key + ".log")
                os.makedirs(os.path.dirname(log), exist_ok=True)
                out = open(log, "a")
                out.write(f"\n===== {what}: {run_dir} ({threads} thread(s))\n")
                out.flush()
                env = dict(env, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
                proc = subprocess.Popen(list(command), cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
                running[proc] = (what, key, log, out, time.time())
                print(f"[{len(plan) - len(todo)}/{len(plan)}] {what} ...", flush=True)
            if not running:
                break  # a run failed: nothing more starts
            finished = [proc for proc in running if proc.poll() is not None]
            if not finished:
                time.sleep(0.5)
                continue
            for proc in finished:
                what, key, log, out, t0 = running.pop(proc)
                out.close()
                seconds = time.time() - t0
                if proc.returncode != 0:
                    failed.append(f"{what} (exit {proc.returncode}; its output: {log})")
                    continue
                done += 1
                worked = worked or seconds > 20
                timings = read_timings(save_path)
                if seconds > 20 or key not in timings["runs"]:  # a rerun that only skipped keeps the first timing
                    timings["runs"][key] = round(seconds, 1)
                records.write_json(os.path.join(save_path, "timings.json"), timings)
                print(f"  done: {what}, {timings['runs'][key] / 60:.1f} min", flush=True)
    finally:
        for proc, (_, _, _, out, _) in running.items():  # interrupted: the runs stop with their driver's message
            proc.wait()
            out.close()
    if failed:
        raise BenchmarkError("failed: " + "; ".join(failed) + (f"; {len(plan) - done - len(failed)} run(s) not finished" if len(plan) > done + len(failed) else ""))
    return time.time() - started, worked


def grid_runs(save_path):
    """[(label, lr, seed, run folder)] of the learning-rate grid."""
    return [(label, lr, seed, grid_dir(save_path, label, lr, seed))
            for label, _ in PARTS["grid"].runs for lr in protocol.LR_GRID for seed in protocol.SELECTION_SEEDS]


def grid_scores(save_path):
    """{label: {lr: [training-prompt alignment after GRID_ROUNDS rounds, per selection seed that has it]}}."""
    budget = protocol.GRID_ROUNDS * protocol.QUERIES_PER_ROUND
    scores = {}
    for label, lr, _, run_dir in grid_runs(save_path):
        result = at_budget(run_dir, "train", budget)
        scores.setdefault(label, {}).setdefault(lr, [])
        if result is not None and result["reward_queries"] == budget:
            scores[label][lr].append(result["alignment_mean"])
    return scores


def write_picks(save_path):
    """grid/picks.json: per method whose grid is complete, the picked rate and the scores it rests on."""
    picks = {}
    for label, by_lr in grid_scores(save_path).items():
        if all(len(v) == len(protocol.SELECTION_SEEDS) for v in by_lr.values()):
            picks[label] = {"learning_rate": pick_learning_rate(by_lr), "scores": {protocol.lr_text(lr): v for lr, v in by_lr.items()}}
    path = os.path.join(save_path, "grid", PICKS)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    records.write_json(path, {"rule": "highest mean training-prompt alignment over the selection seeds; ties to the smaller rate",
                              "selection_seeds": list(protocol.SELECTION_SEEDS), "rounds": protocol.GRID_ROUNDS, "picks": picks})
    return {label: p["learning_rate"] for label, p in picks.items()}


def read_picks(save_path):
    path = os.path.join(save_path, "grid", PICKS)
    if not os.path.isfile(path):
        return {}
    return {label: p["learning_rate"] for label, p in records.read_json(path)["picks"].items()}


def planned(save_path, part, seeds, picks, quick=False):
    """[(what, run folder, env)] of one part."""
    if part == "grid":
        return [(f"grid {label} lr {protocol.lr_text(lr)} seed {seed}", run_dir,
                 run_env(run_dir, label, protocol.MAIN_TEMPLATE, seed, lr, protocol.GRID_ROUNDS, protocol.GRID_ROUNDS, "train"))
                for label, lr, seed, run_dir in grid_runs(save_path)]
    if quick:
        runs, rounds, interval, kind = [(label, protocol.MAIN_TEMPLATE) for label in protocol.QUICK["methods"]], protocol.QUICK["rounds"], protocol.QUICK["eval_interval"], "quick"
    else:
        runs, rounds, interval, kind = PARTS[part].runs, protocol.FINAL_ROUNDS, protocol.EVAL_INTERVAL, "final"
        picks = {**picks, **{label: picks[other] for label, other in protocol.LR_FROM.items() if other in picks}}
        missing = sorted({label for label, _ in runs if label not in picks})
        if missing:
            raise BenchmarkError(f"--part {part}: no learning rate picked yet for {', '.join(missing)}: run --part grid first "
                                 f"(the final runs use the grid's picks, fixed before they start)")
    return [(f"{kind if quick else part} {label} {template} seed {seed} lr {protocol.lr_text(picks[label]) if label in picks else 'preset'}",
             final_dir(save_path, label, template, seed, kind),
             run_env(final_dir(save_path, label, template, seed, kind), label, template, seed, picks.get(label), rounds, interval, "train,test"))
            for seed in seeds for label, template in runs]


def f1_dir(save_path):
    """The stability study's round folder (python -m b2diffurl.stability writes stability.json there)."""
    return os.path.join(save_path, "f1", "base", f"stability_k{protocol.F1_STEPS}")


def run_f1(save_path):
    """App. F.1 on the base model: python -m b2diffurl.stability with the protocol's settings (resumable:
    the sampled images are reused)."""
    command = [sys.executable, "-m", "b2diffurl.stability", "--config", f"{REPO_ROOT}/config/stage_process.py:toy",
               "--config.save_path", os.path.join(save_path, "f1"), "--config.exp_name", "base",
               "--config.prompt_file", os.path.join(REPO_ROOT, protocol.prompt_file(protocol.MAIN_TEMPLATE)),
               "--config.seed", str(protocol.SEED_STRIDE * 7), "--steps", str(protocol.F1_STEPS), "--groups", str(protocol.F1_GROUPS),
               "--rewards", ",".join(protocol.F1_REWARDS), "--threshold", str(protocol.F1_THRESHOLD)]
    started = time.time()
    proc = subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchmarkError(f"the stability study failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    print(proc.stdout.strip(), flush=True)
    return time.time() - started


def run_part(save_path, part, seeds, quick=False, jobs=1):
    if part == "f1":
        wall = run_f1(save_path)
        timings = read_timings(save_path)
        timings["parts"]["f1"] = {"wall_seconds": round(wall, 1), "jobs": 1, "threads": threads_per_run(1)}
        records.write_json(os.path.join(save_path, "timings.json"), timings)
        return
    picks = read_picks(save_path)
    plan = planned(save_path, part, seeds, picks, quick)
    wall, worked = run_plan(save_path, plan, jobs)
    if worked:  # a rerun that only skipped finished runs adds nothing to the part's wall time
        timings = read_timings(save_path)
        entry = timings["parts"].setdefault("quick" if quick else part, {"wall_seconds": 0.0})
        entry.update(wall_seconds=round(entry["wall_seconds"] + wall, 1), jobs=jobs, threads=threads_per_run(jobs))
        records.write_json(os.path.join(save_path, "timings.json"), timings)
    print(f"part {part}: {wall / 60:.1f} min wall, {jobs} run(s) at a time", flush=True)
    if part == "grid":
        picks = write_picks(save_path)
        print("picked: " + ", ".join(f"{label} {protocol.lr_text(lr)}" for label, lr in picks.items()), flush=True)


def draw_figures(runs, out, budget):
    """python -m b2diffurl.figures on ``runs`` ([(label, run folder)]) into ``out``; its note lines."""
    specs = [f"{label}={path}" for label, path in runs if os.path.isdir(path)]
    if not specs:
        return []
    proc = subprocess.run([sys.executable, "-m", "b2diffurl.figures", *specs, "--out", out, "--queries", str(budget)],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchmarkError(f"figures for {out} failed: {proc.stderr.strip()}")
    return [line for line in proc.stdout.splitlines() if line.startswith("note:")]


def benchmark(save_path, parts, seeds=None, quick=False, jobs=1):
    """Run ``parts`` (names of :data:`protocol.PARTS`), then write the report. Returns the report's path."""
    from b2diffurl.toyworld import results

    save_path = os.path.abspath(save_path)
    os.makedirs(save_path, exist_ok=True)
    seeds = tuple(seeds or (protocol.QUICK["seeds"] if quick else protocol.FINAL_SEEDS))
    for part in (["quick"] if quick else parts):
        print(f"=== part {part} ===", flush=True)
        run_part(save_path, "fig5" if part == "quick" else part, seeds, quick, jobs)
    if quick:
        return results.write(save_path, os.path.join(save_path, "quick", "RESULTS.md"), os.path.join(save_path, "quick", "figures"), quick=True)
    return results.write(save_path, RESULTS, FIGURES)
