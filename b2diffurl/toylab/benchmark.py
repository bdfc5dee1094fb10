"""The paper in miniature on the toy world: ``python -m b2diffurl.toyworld benchmark --part NAME``.

Runs the protocol of :mod:`b2diffurl.toylab.protocol` part by part (``grid``, then ``fig5``,
``fig7``, ``fig8``, ``caption``, ``f1``; ``all`` runs them in that order), each (method, seed) one
``bash run_process.sh`` on the ``toy`` preset, in a run folder under ``--save-path`` (default
``model/toy_benchmark``, out of git). Each run that finishes is recorded at once in the committed
record ``docs/results/toy_benchmark/`` (:mod:`ledger`: its evaluations, progress and settings), and
a recorded run is never run again, so the benchmark's hours can be spread over sessions and
machines (``--record`` names another checkout's record: the report goes to that checkout's docs/,
:func:`report_paths`). A run folder that is there but not recorded resumes (finished rounds and evaluations are
skipped; recorded settings that differ stop it with the driver's one-line-per-setting message). After
the runs, docs/RESULTS.md and docs/figures/toy_benchmark/ are rewritten from the record (parts not
run yet are named there), a ``## Discussion`` section already in RESULTS.md kept as it is.

``--quick`` runs the pipeline end to end in a short run (its time: docs/TOYWORLD.md; B2-DiffuRL vs
DDPO, 2 seeds, 4 rounds, the grid's learning rates when it has picked them, else the toy preset's),
records nothing and writes its report to ``<save-path>/quick/RESULTS.md`` and its figures beside it;
docs/ is left alone.

Beside the run folders: ``logs/<run key>.log`` (each run's output). ``--jobs N`` runs N run folders
at once, the cores shared out between them (:func:`b2diffurl.toylab.runner.run_plan`).
"""

import os
import subprocess
import sys
import time

from b2diffurl import configs, records
from b2diffurl.toylab import ledger, protocol, results
from b2diffurl.toylab.ledger import f1_dir, final_dir, grid_runs, read_picks
from b2diffurl.toylab.protocol import METHODS, PARTS
from b2diffurl.toylab.runner import BenchmarkError, past, planned_run, run_plan, threads_per_run
from b2diffurl.toylab.verdicts import at_budget, pick_learning_rate


def report_paths(record_root):
    """(RESULTS.md, figures folder) written from the record at ``record_root``: the docs/RESULTS.md and
    docs/figures/toy_benchmark/ of the checkout that holds it when it sits at <checkout>/docs/results/<name>
    (so a worktree that runs the benchmark into another checkout's record leaves its own docs alone),
    else RESULTS.md and figures/ inside the record folder."""
    record_root = os.path.abspath(record_root)
    results_dir = os.path.dirname(record_root)
    docs = os.path.dirname(results_dir)
    if os.path.basename(results_dir) == "results" and os.path.basename(docs) == "docs":
        return os.path.join(docs, "RESULTS.md"), os.path.join(docs, "figures", "toy_benchmark")
    return os.path.join(record_root, "RESULTS.md"), os.path.join(record_root, "figures")


def run_variables(run_dir, label, template, seed, lr, rounds, eval_interval, eval_sets):
    """run_process.sh's variables for one run of the protocol (SavePath aside: where it runs is not what it is)."""
    method = METHODS[label]
    variables = {
        "CONFIG": f"config/stage_process.py:toy{method.presets}",
        "ExpName": os.path.basename(run_dir),
        "Seed": protocol.SEED_STRIDE * seed,
        "StageCnt": rounds,
        "EvalInterval": eval_interval,
        "EvalSets": eval_sets,
        "EvalImages": protocol.eval_images(template),
        "PromptFile": protocol.prompt_file(template),
        **method.variables,
    }
    if lr is not None:
        variables["LR"] = lr
    return {k: str(v) for k, v in variables.items()}


def grid_scores(root):
    """{label: {lr: [training-prompt alignment after GRID_ROUNDS rounds, per selection seed that has it]}}."""
    budget = protocol.GRID_ROUNDS * protocol.QUERIES_PER_ROUND
    scores = {}
    for label, lr, _, run_dir in grid_runs(root):
        result = at_budget(run_dir, "train", budget)
        scores.setdefault(label, {}).setdefault(lr, [])
        if result is not None and result["reward_queries"] == budget:
            scores[label][lr].append(result["alignment_mean"])
    return scores


def write_picks(root):
    """grid/picks.json: per method whose grid is complete, the picked rate and the scores it rests on."""
    picks = {}
    for label, by_lr in grid_scores(root).items():
        if all(len(v) == len(protocol.SELECTION_SEEDS) for v in by_lr.values()):
            picks[label] = {
                "learning_rate": pick_learning_rate(by_lr),
                "scores": {protocol.lr_text(lr): v for lr, v in by_lr.items()},
            }
    path = os.path.join(root, "grid", ledger.PICKS)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    records.write_json(
        path,
        {
            "rule": "highest mean training-prompt alignment over the selection seeds; ties to the smaller rate",
            "selection_seeds": list(protocol.SELECTION_SEEDS),
            "rounds": protocol.GRID_ROUNDS,
            "picks": picks,
        },
    )
    return {label: p["learning_rate"] for label, p in picks.items()}


def planned(save_path, part, seeds, picks, quick=False):
    """The plan (:func:`planned_run` entries) of one part."""
    if part == "grid":
        return [
            planned_run(
                f"grid {label} lr {protocol.lr_text(lr)} seed {seed}",
                run_dir,
                run_variables(
                    run_dir,
                    label,
                    protocol.MAIN_TEMPLATE,
                    seed,
                    lr,
                    protocol.GRID_ROUNDS,
                    protocol.GRID_ROUNDS,
                    "train",
                ),
            )
            for label, lr, seed, run_dir in grid_runs(save_path)
        ]
    if quick:
        runs, rounds, interval, kind = (
            [(label, protocol.MAIN_TEMPLATE) for label in protocol.QUICK["methods"]],
            protocol.QUICK["rounds"],
            protocol.QUICK["eval_interval"],
            "quick",
        )
    else:
        runs, rounds, interval, kind = PARTS[part].runs, protocol.FINAL_ROUNDS, protocol.EVAL_INTERVAL, "final"
        picks = {**picks, **{label: picks[other] for label, other in protocol.LR_FROM.items() if other in picks}}
        missing = sorted({label for label, _ in runs if label not in picks})
        if missing:
            raise BenchmarkError(
                f"--part {part}: no learning rate picked yet for {', '.join(missing)}: run --part grid first "
                f"(the final runs use the grid's picks, fixed before they start)"
            )
    return [
        planned_run(
            f"{kind if quick else part} {label} {template} seed {seed} "
            f"lr {protocol.lr_text(picks[label]) if label in picks else 'preset'}",
            final_dir(save_path, label, template, seed, kind),
            run_variables(
                final_dir(save_path, label, template, seed, kind),
                label,
                template,
                seed,
                picks.get(label),
                rounds,
                interval,
                protocol.eval_sets(template),
            ),
        )
        for seed in seeds
        for label, template in runs
    ]


def run_f1(save_path, record_root):
    """App. F.1 on the base model: python -m b2diffurl.stability with the protocol's settings (resumable:
    the sampled images are reused), its stability.json then recorded. Returns the wall seconds, 0 when
    the record has it already."""
    record = os.path.join(f1_dir(record_root), ledger.STABILITY)
    if os.path.isfile(record):
        print(f"already recorded: {record}", flush=True)
        return 0.0
    command = [
        sys.executable,
        "-m",
        "b2diffurl.stability",
        "--config",
        f"{configs.REPO_ROOT}/config/stage_process.py:toy",
        "--config.save_path",
        os.path.join(save_path, "f1"),
        "--config.exp_name",
        "base",
        "--config.prompt_file",
        configs.repo_path(protocol.prompt_file(protocol.MAIN_TEMPLATE)),
        "--config.seed",
        str(protocol.SEED_STRIDE * 7),
        "--steps",
        str(protocol.F1_STEPS),
        "--groups",
        str(protocol.F1_GROUPS),
        "--rewards",
        ",".join(protocol.F1_REWARDS),
        "--threshold",
        str(protocol.F1_THRESHOLD),
    ]
    started = time.time()
    proc = subprocess.run(
        command, cwd=configs.REPO_ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise BenchmarkError(
            "the stability study failed: "
            f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
        )
    print(proc.stdout.strip(), flush=True)
    ledger.record_file(os.path.join(f1_dir(save_path), ledger.STABILITY), record)
    return time.time() - started


def run_part(save_path, record_root, part, seeds, quick=False, jobs=1, deadline=None):
    """One part: its runs work in ``save_path`` and are recorded under ``record_root``, where the grid's
    picks and the parts' wall times are kept (``--quick`` reads the picks there, records nothing and
    keeps its times in ``save_path``). Returns how many of its runs were not started (``deadline``)."""
    if part == "f1":
        wall = run_f1(save_path, record_root)
        if wall:
            ledger.add_part_time(record_root, "f1", wall, 1, threads_per_run(1))
        return 0
    picks = read_picks(record_root)
    plan = planned(save_path, part, seeds, picks, quick)
    wall, worked, left = run_plan(save_path, plan, jobs, record_root=None if quick else record_root, deadline=deadline)
    if worked:  # a rerun that only skipped finished runs adds nothing to the part's wall time
        ledger.add_part_time(
            save_path if quick else record_root, "quick" if quick else part, wall, jobs, threads_per_run(jobs)
        )
    print(f"part {part}: {wall / 60:.1f} min wall, {jobs} run(s) at a time", flush=True)
    if left:
        print(
            f"part {part}: stopped at --stop-after with {left} of its {len(plan)} runs not started; the runs that "
            f"finished are recorded: the same command goes on with the rest",
            flush=True,
        )
        return left
    if part == "grid":
        picks = write_picks(record_root)
        print("picked: " + ", ".join(f"{label} {protocol.lr_text(lr)}" for label, lr in picks.items()), flush=True)


def benchmark(save_path, parts, seeds=None, quick=False, jobs=1, record_root=ledger.RECORD_ROOT, stop_after=None):
    """Run ``parts`` (names of :data:`protocol.PARTS`), then write the report. Runs work in ``save_path``;
    each finished one is recorded under ``record_root`` (:mod:`ledger`), from which the report is
    written. ``--quick`` records nothing: its report reads ``save_path``. With ``stop_after`` (seconds),
    no run starts after that long: the running ones finish and are recorded, no later part starts, and
    the report is written from what is recorded. Returns the report's path."""
    save_path = os.path.abspath(save_path)
    os.makedirs(save_path, exist_ok=True)
    seeds = tuple(seeds or (protocol.QUICK["seeds"] if quick else protocol.FINAL_SEEDS))
    deadline = None if stop_after is None else time.time() + stop_after
    for part in ["quick"] if quick else parts:
        if past(deadline):
            print(f"=== part {part}: not started (--stop-after) ===", flush=True)
            continue
        print(f"=== part {part} ===", flush=True)
        run_part(save_path, record_root, "fig5" if part == "quick" else part, seeds, quick, jobs, deadline)
    if quick:
        return results.write(
            save_path,
            os.path.join(save_path, "quick", "RESULTS.md"),
            os.path.join(save_path, "quick", "figures"),
            quick=True,
        )
    return results.write(record_root, *report_paths(record_root))
