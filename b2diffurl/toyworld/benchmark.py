"""B2-DiffuRL vs BPT-only vs DDPO on the toy world at equal reward queries: ``python -m b2diffurl.toyworld benchmark``.

Each (method, seed) is one ``bash run_process.sh`` on the ``toy`` preset (resumable: a rerun skips
finished rounds and evaluations), with held-out evaluation every ``--eval-interval`` rounds. Every
method scores the same number of images per round (:data:`TRAJECTORIES_PER_ROUND`):

- **B2-DiffuRL**: ``toy`` as is: 4 batches x 8 prompts x 3 branches, thresholds +-0.5, k from 14 to 20.
- **BPT-only** (Fig. 7's ablation): ``toy,bpt_only``: no branching, so 12 batches x 8 prompts; every
  trajectory selected; the same backward-growing interval.
- **DDPO**: ``toy,ddpo``: no branching, 12 batches x 8 prompts, all 20 steps trained every round, every
  trajectory selected.

All three share the toy preset's optimizer (learning rate, 4 accumulation steps; the ddpo preset's 128
accumulation steps of Table 6 would make one update per round here), its LoRA, reward and evaluation.
Then ``python -m b2diffurl.figures --queries <rounds x 96>`` draws the curves and tables into ``docs/figures/toy_benchmark/`` and
``docs/RESULTS.md`` is written from them, with the settings, the machine and the wall times. A section
headed ``## Discussion`` already in RESULTS.md is kept as it is.
"""

import json
import os
import platform
import subprocess
import sys
import time

from b2diffurl.driver import REPO_ROOT

BRANCHES = 3
BATCH_SIZE = 8
TRAJECTORIES_PER_ROUND = 4 * BATCH_SIZE * BRANCHES
METHODS = {
    # label -> (config presets after toy, run_process.sh variables)
    "B2-DiffuRL": ("", {}),
    "BPT-only": (",bpt_only", {"BatchCnt": TRAJECTORIES_PER_ROUND // BATCH_SIZE}),
    "DDPO": (",ddpo", {"BatchCnt": TRAJECTORIES_PER_ROUND // BATCH_SIZE, "AccStep": 4}),
}
# run_process.sh's Seed of benchmark seed s (round r uses Seed + r: seeds this far apart share no round seed)
SEED_STRIDE = 1000
RESULTS = os.path.join(REPO_ROOT, "docs", "RESULTS.md")
FIGURES = os.path.join(REPO_ROOT, "docs", "figures", "toy_benchmark")
DISCUSSION = "## Discussion"


def run_name(label, seed):
    return f"{label.lower().replace('-', '_')}_seed{seed}"


def run_one(save_path, label, seed, rounds, eval_interval, prompt_file, log):
    """One method x seed through run_process.sh; returns its wall seconds (0 when nothing was left to do)."""
    presets, variables = METHODS[label]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHON=sys.executable, CONFIG=f"config/stage_process.py:toy{presets}",
               SavePath=save_path, ExpName=run_name(label, seed), Seed=str(SEED_STRIDE * seed), StageCnt=str(rounds),
               EvalInterval=str(eval_interval), PromptFile=prompt_file, **{k: str(v) for k, v in variables.items()})
    started = time.time()
    with open(log, "a") as out:
        proc = subprocess.run(["bash", os.path.join(REPO_ROOT, "run_process.sh")], cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"error: {label} seed {seed} failed (exit {proc.returncode}); see {log}")
    return time.time() - started


def read_eval(exp_dir, name):
    path = os.path.join(exp_dir, name, "eval", "test.json")
    with open(path) as f:
        return json.load(f)


def final_round(exp_dir):
    rounds = sorted(d for d in os.listdir(exp_dir) if d.startswith("round_") and os.path.isfile(os.path.join(exp_dir, d, "eval", "test.json")))
    return rounds[-1]


def comparison_lines(save_path, labels, seeds):
    """Per method: final alignment, background entropy, CLIPScore (mean +- SE over seeds) and the
    difference of B2-DiffuRL's final alignment from each baseline's, in SE of the difference."""
    import statistics

    finals = {}
    for label in labels:
        values = [read_eval(os.path.join(save_path, run_name(label, s)), final_round(os.path.join(save_path, run_name(label, s)))) for s in seeds]
        finals[label] = {k: [v[k] for v in values] for k in ("alignment_mean", "background_entropy", "clipscore_mean", "reward_queries")}

    def mean_se(xs):
        return statistics.fmean(xs), (statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else 0.0)

    lines = []
    for label, f in finals.items():
        a, b, c = mean_se(f["alignment_mean"]), mean_se(f["background_entropy"]), mean_se(f["clipscore_mean"])
        lines.append(f"- {label} ({f['reward_queries'][0]} reward queries): alignment {a[0]:.1%} ± {a[1]:.1%}, "
                     f"background entropy {b[0]:.2f} ± {b[1]:.2f} bits, CLIPScore {c[0]:.4f} ± {c[1]:.4f}")
    ours = finals.get("B2-DiffuRL")
    for label, f in finals.items():
        if ours is None or label == "B2-DiffuRL":
            continue
        (m1, s1), (m2, s2) = mean_se(ours["alignment_mean"]), mean_se(f["alignment_mean"])
        se = (s1 ** 2 + s2 ** 2) ** 0.5
        z = f"{(m1 - m2) / se:+.1f} SE" if se > 0 else "no SE"
        lines.append(f"- B2-DiffuRL - {label}, final alignment: {m1 - m2:+.1%} ({z})")
    return lines


def write_results(save_path, labels, seeds, rounds, eval_interval, prompt_file, timings, figures_tables):
    base = read_eval(os.path.join(save_path, run_name(labels[0], seeds[0])), "base")
    discussion = ""
    if os.path.isfile(RESULTS):
        text = open(RESULTS).read()
        if DISCUSSION in text:
            discussion = text[text.index(DISCUSSION):]
    per_method = {label: sum(timings.get(run_name(label, s), 0.0) for s in seeds) for label in labels}
    rel = os.path.relpath(FIGURES, os.path.dirname(RESULTS))
    test_file = prompt_file.replace("_train", "_test")
    lines = [
        "# Results: B2-DiffuRL vs BPT-only vs DDPO on the toy world",
        "",
        "Written by `python -m b2diffurl.toyworld benchmark` (see the command below); every number here comes from",
        f"the run folders under `{os.path.relpath(save_path, REPO_ROOT) if save_path.startswith(REPO_ROOT) else save_path}`.",
        "",
        "## Setup",
        "",
        "- Model: the committed toy world (`b2diffurl/toyworld/model`, built by `python -m b2diffurl.toyworld build`), "
        "reward: its CLIP (CLIPScore), held-out metric: the colour-blob detector (`b2diffurl.toyworld.score`), which never saw the reward.",
        f"- Training prompts `{prompt_file}`, held-out evaluation on `{test_file}` "
        f"({base['num_prompts']} prompts, {base['num_images']} images, fixed seeds, the same for every policy).",
        f"- {rounds} rounds per run, {TRAJECTORIES_PER_ROUND} reward queries per round for every method, "
        f"{len(seeds)} seeds ({', '.join(map(str, seeds))}; run_process.sh's Seed = {SEED_STRIDE} x seed), evaluation every {eval_interval} rounds and after the last.",
        "- Methods (config presets): " + "; ".join(f"{label}: `toy{METHODS[label][0]}`"
                                                   + (f" with {', '.join(f'{k}={v}' for k, v in METHODS[label][1].items())}" if METHODS[label][1] else "")
                                                   for label in labels) + ".",
        f"- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}; "
        "wall time per method (all seeds, evaluations included): " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in per_method.items())
        + f"; total {sum(per_method.values()) / 60:.1f} min.",
        "",
        "## Final evaluation (mean ± SE over seeds)",
        "",
        f"- Base model: alignment {base['alignment_mean']:.1%} ± {base['alignment_sem']:.1%} (SE over images), "
        f"background entropy {base['background_entropy']:.2f} bits, CLIPScore {base['clipscore_mean']:.4f}",
        *comparison_lines(save_path, labels, seeds),
        "",
        "## Images",
        "",
        f"Held-out prompts, base model (left) and {labels[0]} seed {seeds[0]}'s last round (right), on the same seeds:",
        "",
        f"![base vs final]({rel}/grid_base_vs_final.png)",
        "",
        "## Curves",
        "",
        f"![alignment on the training prompts vs reward queries]({rel}/curve_train_alignment.png)",
        "",
        f"![CLIPScore on the training prompts vs reward queries (Fig. 5)]({rel}/curve_train.png)",
        "",
        f"![held-out alignment vs reward queries]({rel}/curve_test_alignment.png)",
        "",
        f"![background entropy vs reward queries]({rel}/curve_test_background_entropy.png)",
        "",
        f"![held-out CLIPScore vs reward queries]({rel}/curve_test.png)",
        "",
        f"![training reward vs reward queries]({rel}/curve_train_reward.png)",
        "",
        "## Tables (from `python -m b2diffurl.figures`)",
        "",
        figures_tables.replace("\n## ", "\n### ").replace("# B2-DiffuRL tables\n", "").strip(),
        "",
        "## Rerun",
        "",
        "```",
        f"python -m b2diffurl.toyworld benchmark --seeds {' '.join(map(str, seeds))} --rounds {rounds} --eval-interval {eval_interval}",
        "```",
        "",
    ]
    with open(RESULTS, "w") as f:
        f.write("\n".join(lines) + ("\n" + discussion if discussion else ""))


def benchmark(save_path, seeds, rounds, eval_interval, prompt_file, methods=tuple(METHODS)):
    save_path = os.path.abspath(save_path)
    os.makedirs(save_path, exist_ok=True)
    log = os.path.join(save_path, "benchmark.log")
    timings_path = os.path.join(save_path, "timings.json")
    timings = json.load(open(timings_path)) if os.path.isfile(timings_path) else {}
    for seed in seeds:
        for label in methods:
            name = run_name(label, seed)
            print(f"{label}, seed {seed} ({rounds} rounds) ...", flush=True)
            seconds = run_one(save_path, label, seed, rounds, eval_interval, prompt_file, log)
            if seconds > 5 or name not in timings:  # a rerun that only skipped keeps the first timing
                timings[name] = round(seconds, 1)
            with open(timings_path, "w") as f:
                json.dump(timings, f, indent=1)
            exp_dir = os.path.join(save_path, name)
            last = read_eval(exp_dir, final_round(exp_dir))
            print(f"  {timings[name] / 60:.1f} min; final alignment {last['alignment_mean']:.1%} +- {last['alignment_sem']:.1%}", flush=True)
    runs = [f"{label}={os.path.join(save_path, run_name(label, s))}" for label in methods for s in seeds]
    budget = rounds * TRAJECTORIES_PER_ROUND  # every method's last round: bars and tables compare at equal reward queries
    proc = subprocess.run([sys.executable, "-m", "b2diffurl.figures", *runs, "--out", FIGURES, "--queries", str(budget)],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: figures failed: {proc.stderr.strip()}")
    from b2diffurl.toyworld.compare import compare

    compare(os.path.join(save_path, run_name(methods[0], seeds[0])), os.path.join(FIGURES, "grid_base_vs_final.png"))
    tables = open(os.path.join(FIGURES, "tables.md")).read()
    write_results(save_path, list(methods), seeds, rounds, eval_interval, prompt_file, timings, tables)
    print(f"wrote {RESULTS} and {FIGURES}/")
