"""The benchmark's numbers from its run folders: each run's evaluation at the budget, paired differences
over seeds with their standard errors and verdicts, the learning-rate picks and stability.

Pure functions over run folders (``progress.csv``, ``base/eval/<set>.json``, ``round_NNN/eval/<set>.json``);
nothing here runs a model.
"""

import csv
import os
import statistics

from b2diffurl import layout, records
from b2diffurl.stats import mean_se
from b2diffurl.toylab import protocol


def evaluations(run_dir, prompt_set):
    """[(reward_queries, eval dict)] of the run's trained rounds on ``prompt_set``, in round order."""
    out = []
    for _, name in layout.round_folders(run_dir):
        path = layout.eval_json(run_dir, name, prompt_set)
        if os.path.isfile(path):
            result = records.read_json(path)
            out.append((result["reward_queries"], result))
    return out


def at_budget(run_dir, prompt_set, budget):
    """The run's evaluation on ``prompt_set`` with the most reward queries <= ``budget`` (the figures'
    budget rule; on equal queries the later round), or None."""
    picks = [result for queries, result in evaluations(run_dir, prompt_set) if queries <= budget]
    return picks[-1] if picks else None


def base_eval(run_dir, prompt_set):
    path = layout.eval_json(run_dir, layout.BASE, prompt_set)
    return records.read_json(path) if os.path.isfile(path) else None


def paired(a, b):
    """Paired difference of two methods over the seeds both have.

    a, b: dict[seed, float] (one value per seed). Returns (mean of a[s] - b[s], SE over seeds, n,
    seeds) with SE = stdev(differences) / sqrt(n) (None for n < 2; :func:`b2diffurl.stats.mean_se`)."""
    seeds = sorted(set(a) & set(b))
    mean, se, n = mean_se([a[s] - b[s] for s in seeds])
    return mean, se, n, seeds


def read_kl(run_dir):
    """Largest approx KL over the run's rounds (progress.csv), or None without a table."""
    path = layout.progress_path(run_dir)
    if not os.path.isfile(path):
        return None
    with open(path, newline="") as f:
        values = [float(row["approx_kl"]) for row in csv.DictReader(f) if row.get("approx_kl") not in (None, "")]
    return max(values) if values else None


def stability(run_dir, budget):
    """(KL above the limit in some round, final training-prompt alignment below the base model's) of
    one run; each None when unknown."""
    kl = read_kl(run_dir)
    last, base = at_budget(run_dir, "train", budget), base_eval(run_dir, "train")
    below = None
    if last is not None and base is not None and "alignment_mean" in last:
        below = last["alignment_mean"] < base["alignment_mean"]
    return (None if kl is None else kl > protocol.KL_LIMIT), below


def share(flags):
    """'k/n' of the known flags (None left out), '-' when none is known."""
    known = [f for f in flags if f is not None]
    return f"{sum(known)}/{len(known)}" if known else "-"


def pick_learning_rate(scores):
    """The grid's pick: scores = dict[lr, list[float]] (one training-prompt alignment per selection seed).
    The rate with the highest mean over its seeds; ties go to the smaller rate; rates without scores
    are left out. Returns the rate, or None when no rate has a score."""
    means = {lr: statistics.fmean(v) for lr, v in scores.items() if v}
    if not means:
        return None
    best = max(means.values())
    return min(lr for lr, m in means.items() if m == best)
