"""Paper-style figures and tables from finished runs: ``python -m b2diffurl.figures RUN_DIR ... --out DIR``.

Each positional argument is a run folder (``<save_path>/<exp_name>``), written ``RUN_DIR`` or
``LABEL=RUN_DIR``. Runs with the same label are seeds of one experiment (a *group*). Without a
label, the label is the folder's name less a trailing seed suffix (``_seed2``, ``-s3``, ...), so
``b2_t1_seed1`` and ``b2_t1_seed2`` form the group ``b2_t1``.

What is read from a run folder:

- ``progress.csv``: the training reward (``reward_mean``) of each finished round against the
  cumulative ``reward_queries``.
- ``base/eval/<prompt_set>.json`` (the base model, no LoRA) and ``round_NNN/eval/<prompt_set>.json``
  (round NNN's LoRA), written by ``python -m b2diffurl.evaluate``; only the ``--prompt-set`` files.

How numbers are averaged (every figure, table and CSV):

- A group's value is the mean over its seeds (runs); its uncertainty is the standard error over
  seeds, SE = sample standard deviation (n - 1 in the denominator) / sqrt(n_seeds).
- A group of one seed has no spread over seeds; it shows the run's own standard error instead:
  ``clipscore_sem`` of the evaluation for CLIPScore, ``inception_score_std / sqrt(is_splits)`` for
  the Inception Score when ``is_splits > 1`` (none otherwise), ``reward_std / sqrt(trajectories)``
  of the round for the training reward (branches of one prompt share their start, so this one
  understates the spread). The CSVs say which in ``se_source`` (``seeds``, ``eval``, ``round``, or
  empty when there is no SE).
- Curves: a point (a reward-queries value) is averaged only when every seed of the group has it;
  points missing from some seed are left out and counted in a printed note. The base model sits at
  its evaluation's ``reward_queries`` (0).
- Bars and tables use each run's *final* evaluation: its highest evaluated round on the prompt set
  (seeds of one group may end at different rounds; a note says so). The "SD" / "SD (base)" entries
  average the distinct base evaluations of the runs given: runs that evaluated the base model with
  the same settings (same seeds, so the same numbers) count once, with that evaluation's own SE.
- Tables 1 and 3 have one column per template (``Temp. 1`` for ``template1``; the prompt file's name
  when the evaluation has no template); Table 2 pools every run with the same ``method.algorithm``
  and ``method.label`` (``vanilla`` -> "Vanilla", ``B2-DiffuRL`` -> "Ours+Vanilla"; other labels are
  not in it), with the template in the row name when the runs span several templates.

Outputs in ``--out`` (created if missing; one that lacks data is skipped with a note):
``curve_<prompt_set>.png`` / ``.csv``, ``curve_train_reward.png`` / ``.csv``, ``bars_<prompt_set>.png``,
``tables.md``, ``table1_diversity.csv``, ``table2_algorithms.csv``, ``table3_generalization.csv``,
``summary.csv``; for toy-world evaluations (``evaluate.alignment = "toyworld"``) also
``curve_<prompt_set>_alignment.png`` / ``.csv``, ``curve_<prompt_set>_background_entropy.png`` / ``.csv``,
``table_toy_alignment.csv``, ``table_toy_background_entropy.csv`` and their sections in ``tables.md``. A bad argument or file ends in one ``error: ...`` line on stderr and exit status 2,
with nothing written.
"""

import argparse
import csv
import functools
import io
import json
import math
import os
import re
import statistics
import sys
from dataclasses import dataclass, field

PROGRESS = "progress.csv"
BASE_DIR = "base"
ROUND_DIR = re.compile(r"^round_(\d+)$")
SEED_SUFFIX = re.compile(r"[_-](?:seed|s)\d+$", re.IGNORECASE)
TEMPLATE = re.compile(r"^template(\d+)$", re.IGNORECASE)
PROMPT_SET = re.compile(r"^[A-Za-z0-9_.-]+$")
ALGORITHM_NAMES = {"ppo": "PPO/DDPO", "pg": "PG", "dpok": "DPOK", "dpo": "DPO"}
VARIANTS = {"vanilla": "Vanilla", "b2-diffurl": "Ours+Vanilla"}  # method.label (lower case) -> Table 2 column
BASE_ROW = "SD"
BASE_BAR = "SD (base)"
CSV_FIELDS = ["row", "column", "mean", "se", "n", "se_source"]
CURVE_FIELDS = ["label", "reward_queries", "mean", "se", "n", "se_source"]
SUMMARY_FIELDS = [
    "label", "run", "prompt_set", "round", "round_index", "reward_queries", "clipscore_mean", "clipscore_sem",
    "inception_score", "template", "algorithm", "method",
]


class FiguresError(Exception):
    """A problem with the arguments or a run's files; printed as one line, exit status 2."""

    def __str__(self):
        return " ".join(super().__str__().split())


# ---------------------------------------------------------------- statistics

@dataclass(frozen=True)
class Stat:
    """A group's value: ``mean`` over ``n`` seeds with standard error ``se`` (None when unknown)."""

    mean: float
    se: float | None
    n: int
    source: str  # "seeds", "eval", "round", or "" when se is None


def mean_se(values):
    """Mean and standard error over seeds.

    values: list[tuple[float, float | None]], one ``(value, own_se)`` per seed, len >= 1; ``own_se`` is
    the run's own standard error, used only when there is a single seed.
    Returns Stat; n >= 2: se = stdev (ddof 1) / sqrt(n), source "seeds"; n == 1: se = own_se.
    """
    if not values:
        raise ValueError("mean_se needs at least one value")
    numbers = [v for v, _ in values]
    if len(numbers) == 1:
        own = values[0][1]
        return Stat(numbers[0], own, 1, "eval" if own is not None else "")
    return Stat(statistics.fmean(numbers), statistics.stdev(numbers) / math.sqrt(len(numbers)), len(numbers), "seeds")


def average_curves(curves, own_source="eval"):
    """Average per-seed curves of one group at the x values every seed has.

    curves: list[dict[int, tuple[float, float | None]]], one per seed: x -> (value, own_se).
    Returns (points, dropped): points = list[tuple[int, Stat]] sorted by x; dropped = number of x values
    present in some seeds but not all (left out). ``own_source`` names a single seed's own SE.
    """
    curves = [c for c in curves if c]
    if not curves:
        return [], 0
    common = set.intersection(*(set(c) for c in curves))
    every = set.union(*(set(c) for c in curves))
    points = []
    for x in sorted(common):
        stat = mean_se([c[x] for c in curves])
        if stat.source == "eval":
            stat = Stat(stat.mean, stat.se, stat.n, own_source)
        points.append((x, stat))
    return points, len(every - common)


# ---------------------------------------------------------------- reading runs

@dataclass
class Evaluation:
    """One ``eval/<prompt_set>.json`` of a run: the base model (index -1) or a round's LoRA."""

    round: str  # "base" or "round_003"
    index: int  # -1 for the base model
    reward_queries: int
    clipscore: float
    clipscore_sem: float | None
    inception: float | None
    inception_se: float | None  # inception_score_std / sqrt(is_splits) when is_splits > 1
    template: str  # table column: "Temp. 1", or the prompt file's name
    algorithm: str  # method.algorithm, lower case ("" when absent)
    method: str  # method.label ("" when absent)
    same_as: str = ""  # what makes two evaluations the same: the settings they record (their path when none)
    # the toy world's independent metrics (evaluate.alignment = "toyworld"), None when absent
    alignment: float | None = None
    alignment_sem: float | None = None
    background_entropy: float | None = None


@dataclass
class Run:
    label: str
    path: str
    progress: list = field(default_factory=list)  # list[dict]: round, reward_queries, reward_mean, reward_se
    evals: list = field(default_factory=list)  # list[Evaluation], base first then rounds in order

    @property
    def base(self):
        return next((e for e in self.evals if e.index < 0), None)

    @property
    def final(self):
        rounds = [e for e in self.evals if e.index >= 0]
        return rounds[-1] if rounds else None


def split_spec(spec):
    """``LABEL=RUN_DIR`` or ``RUN_DIR`` -> (label, path); the label of a bare folder drops a seed suffix."""
    label, path = None, spec
    if "=" in spec and not os.path.isdir(spec):
        label, path = spec.split("=", 1)
        if not label.strip():
            raise FiguresError(f"{spec!r}: empty label before '=' (write LABEL=RUN_DIR or RUN_DIR)")
        label = label.strip()
    if label is None:
        name = os.path.basename(os.path.normpath(path))
        label = SEED_SUFFIX.sub("", name) or name
    return label, path


def eval_files(run_dir, prompt_set=None):
    """The run's evaluation files: list[tuple[str, int, str]] of (round name, index, path), base first.

    prompt_set None: every ``eval/*.json`` (any prompt set); otherwise only ``eval/<prompt_set>.json``.
    """
    found = []
    for name in sorted(os.listdir(run_dir)):
        match = ROUND_DIR.match(name)
        if name != BASE_DIR and not match:
            continue
        eval_dir = os.path.join(run_dir, name, "eval")
        if not os.path.isdir(eval_dir):
            continue
        files = sorted(f for f in os.listdir(eval_dir) if f.endswith(".json"))
        if prompt_set is not None:
            files = [f for f in files if f == f"{prompt_set}.json"]
        index = int(match.group(1)) if match else -1
        found.extend((name, index, os.path.join(eval_dir, f)) for f in files)
    return sorted(found, key=lambda item: item[1])


def number(value, where, name, required=False):
    """A finite float from a JSON/CSV value; None when absent, empty or non-finite (error if required)."""
    if value is None or value == "":
        if required:
            raise FiguresError(f"{where}: has no {name}")
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise FiguresError(f"{where}: {name}={value!r} is not a number") from None
    if not math.isfinite(result):
        if required:
            raise FiguresError(f"{where}: {name}={value!r} is not finite")
        return None
    return result


def read_progress(path):
    """progress.csv -> list[dict] with int round, int reward_queries, float reward_mean, reward_se (float|None)."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"round", "reward_queries", "reward_mean"} - set(reader.fieldnames or [])
            if missing:
                raise FiguresError(f"{path}: no column {', '.join(sorted(missing))} (is it a run's progress.csv?)")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise FiguresError(f"{path}: cannot be read ({err})") from None
    out = []
    for line, row in enumerate(rows, start=2):
        where = f"{path} line {line}"
        std = number(row.get("reward_std"), where, "reward_std")
        trajectories = number(row.get("trajectories"), where, "trajectories")
        out.append({
            "round": int(number(row["round"], where, "round", required=True)),
            "reward_queries": int(number(row["reward_queries"], where, "reward_queries", required=True)),
            "reward_mean": number(row["reward_mean"], where, "reward_mean", required=True),
            "reward_se": std / math.sqrt(trajectories) if std is not None and trajectories else None,
        })
    return out


def template_column(template, prompt_file):
    """Table column of an evaluation: "Temp. N" for templateN, else the template, else the prompt file's name."""
    if template:
        match = TEMPLATE.match(template)
        return f"Temp. {int(match.group(1))}" if match else template
    if prompt_file:
        return os.path.splitext(os.path.basename(prompt_file))[0]
    return "?"


def read_evaluation(path, round_name, index, prompt_set, progress):
    """One eval JSON -> Evaluation. reward_queries falls back to progress.csv's row of the round (0 for base)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise FiguresError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(data, dict):
        raise FiguresError(f"{path}: not a JSON object")
    if data.get("prompt_set") not in (None, prompt_set):
        raise FiguresError(f"{path}: prompt_set={data['prompt_set']!r} but the file is named {prompt_set}.json")
    queries = number(data.get("reward_queries"), path, "reward_queries")
    if queries is None:
        row = next((r for r in progress if r["round"] == index), None)
        if index < 0:
            queries = 0
        elif row is not None:
            queries = row["reward_queries"]
        else:
            raise FiguresError(f"{path}: has no reward_queries and progress.csv has no row for round {index}")
    inception = number(data.get("inception_score"), path, "inception_score")
    inception_std = number(data.get("inception_score_std"), path, "inception_score_std")
    splits = number(data.get("is_splits"), path, "is_splits") or 1
    method = data.get("method") if isinstance(data.get("method"), dict) else {}
    return Evaluation(
        round=round_name,
        index=index,
        reward_queries=int(queries),
        clipscore=number(data.get("clipscore_mean"), path, "clipscore_mean", required=True),
        clipscore_sem=number(data.get("clipscore_sem"), path, "clipscore_sem"),
        inception=inception,
        inception_se=inception_std / math.sqrt(splits) if inception_std is not None and splits > 1 else None,
        template=template_column(data.get("template"), data.get("prompt_file")),
        algorithm=str(method.get("algorithm") or "").lower(),
        method=str(method.get("label") or ""),
        same_as=json.dumps(data["settings"], sort_keys=True) if "settings" in data else os.path.abspath(path),
        alignment=number(data.get("alignment_mean"), path, "alignment_mean"),
        alignment_sem=number(data.get("alignment_sem"), path, "alignment_sem"),
        background_entropy=number(data.get("background_entropy"), path, "background_entropy"),
    )


def distinct(evaluations):
    """The evaluations, each identical one once: runs of one template share the base model's evaluation
    (same settings, same seeds, same numbers), which is one measurement, not one per seed."""
    seen = {}
    for evaluation in evaluations:
        seen.setdefault(evaluation.same_as, evaluation)
    return list(seen.values())


def load_runs(specs, prompt_set):
    """Positional arguments -> dict[label, list[Run]] in the order labels first appear."""
    groups, seen = {}, {}
    for spec in specs:
        label, path = split_spec(spec)
        if not os.path.isdir(path):
            raise FiguresError(f"{path}: no such run folder")
        real = os.path.realpath(path)
        if real in seen:
            raise FiguresError(f"{path}: given twice (also as {seen[real]!r}); each run counts once")
        seen[real] = spec
        progress_path = os.path.join(path, PROGRESS)
        has_progress = os.path.isfile(progress_path)
        if not has_progress and not eval_files(path):
            raise FiguresError(
                f"{path}: neither {PROGRESS} nor any base/eval/*.json or round_NNN/eval/*.json: not a run folder "
                "(evaluate it with python -m b2diffurl.evaluate, or give <save_path>/<exp_name>)"
            )
        run = Run(label=label, path=os.path.abspath(path))
        run.progress = read_progress(progress_path) if has_progress else []
        run.evals = [read_evaluation(p, name, index, prompt_set, run.progress) for name, index, p in eval_files(path, prompt_set)]
        groups.setdefault(label, []).append(run)
    return groups


# ---------------------------------------------------------------- curves, bars, tables (pure)

def eval_curve(run):
    """Run -> dict[int, tuple[float, float | None]]: reward_queries -> (clipscore_mean, clipscore_sem), base included."""
    return {e.reward_queries: (e.clipscore, e.clipscore_sem) for e in run.evals}


def train_curve(run):
    """Run -> dict[int, tuple[float, float | None]]: reward_queries -> (reward_mean, reward_std / sqrt(trajectories))."""
    return {r["reward_queries"]: (r["reward_mean"], r["reward_se"]) for r in run.progress}


def group_curves(groups, curve, own_source):
    """dict[label, list[Run]] -> (dict[label, list[tuple[int, Stat]]], notes: list[str]); groups without points left out."""
    out, notes = {}, []
    for label, runs in groups.items():
        points, dropped = average_curves([curve(run) for run in runs], own_source)
        if dropped:
            notes.append(f"{label}: {dropped} point(s) not in every seed's data left out of the average")
        if points:
            out[label] = points
    return out, notes


def inception_of(evaluation):
    """Evaluation -> (inception_score, own SE) or None when it has no Inception Score."""
    return None if evaluation.inception is None else (evaluation.inception, evaluation.inception_se)


def clipscore_of(evaluation):
    """Evaluation -> (clipscore_mean, clipscore_sem)."""
    return evaluation.clipscore, evaluation.clipscore_sem


def alignment_of(evaluation):
    """Evaluation -> (alignment_mean, alignment_sem) of the toy world's detector, or None."""
    return None if evaluation.alignment is None else (evaluation.alignment, evaluation.alignment_sem)


def background_entropy_of(evaluation):
    """Evaluation -> (background_entropy, None) of the toy world (no per-run SE), or None."""
    return None if evaluation.background_entropy is None else (evaluation.background_entropy, None)


def metric_curve(metric):
    """Run -> dict[int, tuple[float, float | None]] of ``metric`` (Evaluation -> (value, own_se) | None)."""
    def curve(run):
        return {e.reward_queries: value for e in run.evals if (value := metric(e)) is not None}
    return curve


def final_bars(groups, metric):
    """One bar per group (after the base bars) of each run's final evaluation.

    groups: dict[label, list[Run]]; metric: Evaluation -> (value, own_se) | None.
    Returns list[tuple[str, Stat | None]]: base bars ("SD (base)", or one per template when the base
    evaluations span several) then every group that has a final evaluation, None where the metric is missing.
    """
    runs = [run for runs in groups.values() for run in runs]
    bases = distinct(run.base for run in runs if run.base is not None)
    templates = sorted({b.template for b in bases}, key=column_order)
    bars = []
    for template in templates:
        values = [v for b in bases if b.template == template and (v := metric(b)) is not None]
        name = BASE_BAR if len(templates) == 1 else f"{BASE_BAR}, {template}"
        bars.append((name, mean_se(values) if values else None))
    for label, members in groups.items():
        finals = [run.final for run in members if run.final is not None]
        if finals:
            values = [v for f in finals if (v := metric(f)) is not None]
            bars.append((label, mean_se(values) if values else None))
    return bars


def column_order(column):
    """Sort key of table columns: "Temp. N" by N first, then the rest by name."""
    match = re.match(r"^Temp\. (\d+)$", column)
    return (0, int(match.group(1)), "") if match else (1, 0, column)


def template_cells(groups, metric):
    """Tables 1 and 3: (rows, columns, cells) with cells dict[(row, column), list[(value, own_se)]].

    Rows: "SD" (when any run has a base evaluation) then every group label; columns: the template
    columns of the evaluations used. Each distinct base evaluation goes to "SD", each run's final one to its label.
    """
    cells, columns, has_base = {}, set(), False
    bases = distinct(run.base for runs in groups.values() for run in runs if run.base is not None)
    entries = [(BASE_ROW, base) for base in bases] + [(label, run.final) for label, runs in groups.items() for run in runs]
    for row, evaluation in entries:
        if evaluation is None:
            continue
        columns.add(evaluation.template)
        has_base = has_base or row == BASE_ROW
        value = metric(evaluation)
        if value is not None:
            cells.setdefault((row, evaluation.template), []).append(value)
    rows = ([BASE_ROW] if has_base else []) + list(groups)
    return rows, sorted(columns, key=column_order), cells


def algorithm_cells(groups, metric):
    """Table 2: (rows, columns, cells) like template_cells; rows = algorithms, columns = "Vanilla", "Ours+Vanilla".

    Every run whose final evaluation's method.label is vanilla or B2-DiffuRL joins the cell of its
    method.algorithm; the row name carries the template when those runs span several templates.
    """
    finals = [
        run.final for runs in groups.values() for run in runs
        if run.final is not None and run.final.method.lower() in VARIANTS and run.final.algorithm
    ]
    several = len({f.template for f in finals}) > 1
    order = list(ALGORITHM_NAMES)
    keys = sorted({(f.algorithm, f.template) for f in finals},
                  key=lambda k: (order.index(k[0]) if k[0] in order else len(order), k[0], column_order(k[1])))

    def row_name(algorithm, template):
        name = ALGORITHM_NAMES.get(algorithm, algorithm.upper())
        return f"{name} ({template})" if several else name

    cells = {}
    for f in finals:
        value = metric(f)
        if value is not None:
            cells.setdefault((row_name(f.algorithm, f.template), VARIANTS[f.method.lower()]), []).append(value)
    return [row_name(*k) for k in keys], list(VARIANTS.values()), cells


def grid_stats(rows, columns, cells):
    """(rows, columns, cells) -> dict[(row, column), Stat | None]: every cell, None where there is no value."""
    return {(r, c): mean_se(cells[r, c]) if cells.get((r, c)) else None for r in rows for c in columns}


def format_stat(stat):
    """Stat | None -> "0.3100 ± 0.0100" (4 decimals), the mean alone without an SE, "-" when missing."""
    if stat is None:
        return "-"
    return f"{stat.mean:.4f}" if stat.se is None else f"{stat.mean:.4f} ± {stat.se:.4f}"


def markdown_table(title, corner, rows, columns, stats, note):
    """A Markdown section: '## title', a table with ``corner`` over the row names, then ``note``."""
    def cell(text):
        return str(text).replace("|", "\\|")

    lines = [f"## {title}", "", "| " + " | ".join(cell(t) for t in [corner, *columns]) + " |",
             "|" + "---|" * (len(columns) + 1)]
    lines += ["| " + " | ".join([cell(r)] + [format_stat(stats[r, c]) for c in columns]) + " |" for r in rows]
    return "\n".join(lines + ["", note, ""])


def plain(x):
    """A number for a CSV cell: full precision, empty for None."""
    return "" if x is None else repr(float(x))


def table_csv(rows, columns, stats):
    """CSV text, one line per cell: row, column, mean, se, n, se_source (empty mean and n = 0 where missing)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        for c in columns:
            s = stats[r, c]
            writer.writerow({"row": r, "column": c, "mean": plain(s and s.mean), "se": plain(s and s.se),
                             "n": s.n if s else 0, "se_source": s.source if s else ""})
    return out.getvalue()


def curve_csv(curves):
    """dict[label, list[tuple[int, Stat]]] -> CSV text: label, reward_queries, mean, se, n, se_source."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CURVE_FIELDS, lineterminator="\n")
    writer.writeheader()
    for label, points in curves.items():
        for x, s in points:
            writer.writerow({"label": label, "reward_queries": x, "mean": plain(s.mean), "se": plain(s.se),
                             "n": s.n, "se_source": s.source})
    return out.getvalue()


def summary_csv(groups, prompt_set):
    """CSV text, one line per (group, run, evaluated round on prompt_set), base rows included."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for label, runs in groups.items():
        for run in runs:
            for e in run.evals:
                writer.writerow({
                    "label": label, "run": run.path, "prompt_set": prompt_set, "round": e.round,
                    "round_index": e.index, "reward_queries": e.reward_queries, "clipscore_mean": plain(e.clipscore),
                    "clipscore_sem": plain(e.clipscore_sem), "inception_score": plain(e.inception),
                    "template": e.template, "algorithm": e.algorithm, "method": e.method,
                })
    return out.getvalue()


# ---------------------------------------------------------------- plots (matplotlib imported here only)

def new_figure(width, height, panels=1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg backend, without pyplot's global state
    return fig, fig.subplots(1, panels) if panels > 1 else fig.subplots()


def plot_curves(path, curves, colors, title, ylabel, band_note):
    """Lines of mean vs reward queries, one per group, with a shaded +-1 SE band where the SE is known.

    curves: dict[label, list[tuple[int, Stat]]]; colors: dict[label, matplotlib colour].
    """
    fig, ax = new_figure(6.4, 4.4)
    for label, points in curves.items():
        color = colors[label]
        xs = [x for x, _ in points]
        means = [s.mean for _, s in points]
        lows = [s.mean - s.se if s.se is not None else math.nan for _, s in points]
        highs = [s.mean + s.se if s.se is not None else math.nan for _, s in points]
        seeds = max(s.n for _, s in points)
        ax.plot(xs, means, marker="o", color=color, label=f"{label} (n={seeds})")
        ax.fill_between(xs, lows, highs, color=color, alpha=0.2, linewidth=0)
    ax.set_title(title)
    ax.set_xlabel("reward queries (trajectories scored)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(title=band_note, fontsize="small", title_fontsize="small")
    fig.savefig(path)


def plot_bars(path, clip_bars, inception_bars, colors, prompt_set):
    """Two panels of bars (final CLIPScore, Inception Score), error bars = SE (none where unknown).

    clip_bars, inception_bars: list[tuple[str, Stat | None]] from final_bars (same names, same order);
    colors: dict[label, matplotlib colour] of the groups (base bars are grey).
    """
    fig, axes = new_figure(10, 4.4, panels=2)
    for ax, bars, ylabel, title in (
        (axes[0], clip_bars, "CLIPScore (mean)", f"Final alignment ({prompt_set} prompts)"),
        (axes[1], inception_bars, "Inception Score", f"Diversity ({prompt_set} prompts)"),
    ):
        names = [name for name, _ in bars]
        stats = [s for _, s in bars]
        heights = [s.mean if s else math.nan for s in stats]
        errors = [s.se if s and s.se is not None else math.nan for s in stats]
        drawn = ax.bar(range(len(names)), heights, yerr=errors, capsize=4,
                       color=[colors.get(n, "0.6") for n in names], alpha=0.85)
        ax.bar_label(drawn, labels=[f"{h:.3f}" if math.isfinite(h) else "n/a" for h in heights], fontsize="small")
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Final evaluation per method: mean ± 1 SE over seeds")
    fig.savefig(path)


# ---------------------------------------------------------------- command line

class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise FiguresError(message)


def parse_args(argv):
    parser = ArgumentParser(
        prog="python -m b2diffurl.figures",
        description="Figures (Fig. 5, 7/8 style) and tables (Tables 1-3 style) from run folders; see the module docstring.",
    )
    parser.add_argument("runs", nargs="+", metavar="[LABEL=]RUN_DIR",
                        help="run folder <save_path>/<exp_name>; same label = seeds of one experiment")
    parser.add_argument("--out", required=True, help="folder for the figures and tables (created if missing)")
    parser.add_argument("--prompt-set", default="test", help="evaluation prompt set: eval/<prompt_set>.json (default test)")
    args = parser.parse_args(argv)
    if not PROMPT_SET.match(args.prompt_set):
        raise FiguresError(f"--prompt-set={args.prompt_set!r}: a plain name such as test or train")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise FiguresError(f"--out={args.out}: exists and is not a folder")
    return args


def plan_outputs(groups, prompt_set):
    """Everything to write: (outputs, tables_markdown, notes).

    outputs: list[tuple[str, str | callable]]: file name -> text, or a function(path) drawing a figure;
    tables_markdown: str (empty without tables); notes: list[str].
    """
    outputs, notes, sections = [], [], []
    any_eval = any(run.evals for runs in groups.values() for run in runs)
    colors = {label: f"C{i % 10}" for i, label in enumerate(groups)}  # one colour per group in every figure

    curves, curve_notes = group_curves(groups, eval_curve, "eval")
    notes += [f"curve_{prompt_set}: {n}" for n in curve_notes]
    if curves:
        title = ("Held-out CLIPScore" if prompt_set == "test" else f"CLIPScore ({prompt_set} prompts)") + " vs reward queries"
        outputs.append((f"curve_{prompt_set}.png", functools.partial(
            plot_curves, curves=curves, colors=colors, title=title, ylabel=f"CLIPScore ({prompt_set} prompts)",
            band_note="mean ± 1 SE over seeds")))
        outputs.append((f"curve_{prompt_set}.csv", curve_csv(curves)))
    else:
        notes.append(f"curve_{prompt_set}.png skipped: no run has eval/{prompt_set}.json files")

    toy_metrics = (("alignment", alignment_of, "held-out alignment (toy-world detector)"),
                   ("background_entropy", background_entropy_of, "background entropy (bits, diversity)"))
    toy_sections = []
    for key, metric, ylabel in toy_metrics:
        points, point_notes = group_curves(groups, metric_curve(metric), "eval")
        if not points:
            continue
        notes += [f"curve_{prompt_set}_{key}: {n}" for n in point_notes]
        outputs.append((f"curve_{prompt_set}_{key}.png", functools.partial(
            plot_curves, curves=points, colors=colors, title=f"{ylabel[0].upper()}{ylabel[1:]} vs reward queries",
            ylabel=ylabel, band_note="mean ± 1 SE over seeds")))
        outputs.append((f"curve_{prompt_set}_{key}.csv", curve_csv(points)))
        rows, columns, cells = template_cells(groups, metric)
        stats = grid_stats(rows, columns, cells)
        toy_sections.append(markdown_table(f"Toy world: {ylabel} (final evaluation, {prompt_set} prompts)",
                                           "Method", rows, columns, stats,
                                           "mean ± standard error over seeds; a cell of one run shows its own SE when it has one."))
        outputs.append((f"table_toy_{key}.csv", table_csv(rows, columns, stats)))

    rewards, reward_notes = group_curves(groups, train_curve, "round")
    notes += [f"curve_train_reward: {n}" for n in reward_notes]
    if rewards:
        outputs.append(("curve_train_reward.png", functools.partial(
            plot_curves, curves=rewards, colors=colors, title="Training reward vs reward queries",
            ylabel="training reward (round mean)", band_note="mean ± 1 SE over seeds")))
        outputs.append(("curve_train_reward.csv", curve_csv(rewards)))
    else:
        notes.append(f"curve_train_reward.png skipped: no run has rounds in {PROGRESS}")

    for label, runs in groups.items():
        ends = {run.final.round for run in runs if run.final is not None}
        if len(ends) > 1:
            notes.append(f"{label}: seeds end at different evaluated rounds ({', '.join(sorted(ends))}); each uses its last")

    clip_bars = final_bars(groups, clipscore_of)
    if clip_bars:
        inception_bars = final_bars(groups, inception_of)
        outputs.append((f"bars_{prompt_set}.png", functools.partial(
            plot_bars, clip_bars=clip_bars, inception_bars=inception_bars, colors=colors, prompt_set=prompt_set)))
    else:
        notes.append(f"bars_{prompt_set}.png skipped: no base or round evaluation on {prompt_set} prompts")

    cell_note = ("mean ± standard error over seeds (n per cell in the CSV); a cell of one run shows that "
                 "evaluation's own standard error, or the mean alone when it has none; - = no data.")
    if any_eval:
        rows, columns, cells = template_cells(groups, inception_of)
        stats = grid_stats(rows, columns, cells)
        sections.append(markdown_table(f"Table 1: diversity (Inception Score, final evaluation, {prompt_set} prompts)",
                                       "Method", rows, columns, stats, cell_note))
        outputs.append(("table1_diversity.csv", table_csv(rows, columns, stats)))

        rows, columns, cells = algorithm_cells(groups, inception_of)
        if rows:
            stats = grid_stats(rows, columns, cells)
            sections.append(markdown_table(f"Table 2: algorithms (Inception Score, final evaluation, {prompt_set} prompts)",
                                           "Algorithm", rows, columns, stats, cell_note))
            outputs.append(("table2_algorithms.csv", table_csv(rows, columns, stats)))
        else:
            notes.append("table 2 skipped: no run's evaluation has method.label vanilla or B2-DiffuRL with a method.algorithm")

        rows, columns, cells = template_cells(groups, clipscore_of)
        stats = grid_stats(rows, columns, cells)
        what = "held-out prompts" if prompt_set == "test" else f"{prompt_set} prompts"
        sections.append(markdown_table(f"Table 3: generalization (CLIPScore, final evaluation, {what})",
                                       "Method", rows, columns, stats, cell_note))
        outputs.append(("table3_generalization.csv", table_csv(rows, columns, stats)))
        sections += toy_sections
        outputs.append(("tables.md", "# B2-DiffuRL tables\n\n" + "\n".join(sections)))
        outputs.append(("summary.csv", summary_csv(groups, prompt_set)))
    else:
        notes.append(f"tables and summary.csv skipped: no run has eval/{prompt_set}.json files")
    return outputs, "\n".join(sections), notes


def main(argv=None):
    """The command line; returns the exit status (0, or 2 after one ``error:`` line on stderr)."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        groups = load_runs(args.runs, args.prompt_set)
        outputs, tables, notes = plan_outputs(groups, args.prompt_set)
        if not outputs:
            raise FiguresError(
                f"nothing to write: no eval/{args.prompt_set}.json in any run and no rounds in any {PROGRESS} "
                f"(run python -m b2diffurl.evaluate first, or pick another --prompt-set)"
            )
    except FiguresError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}")
    os.makedirs(args.out, exist_ok=True)
    for name, content in outputs:
        path = os.path.join(args.out, name)
        if callable(content):
            content(path)
        else:
            with open(path, "w", newline="") as f:
                f.write(content)
        print(f"wrote {path}")
    if tables:
        print()
        print(tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
