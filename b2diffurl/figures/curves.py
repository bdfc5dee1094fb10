"""Curves against reward queries: per-group mean ± SE of evaluations (every evaluated point) and of the
training reward, their CSVs, and the plot (matplotlib imported inside :func:`plot_curves` only)."""

import csv
import functools
import io
import math

from b2diffurl.figures.metrics import CAPTION_METRICS, CLIPSCORE, TOY_METRICS, prompts_name
from b2diffurl.figures.runs import PROGRESS
from b2diffurl.figures.stats import average_curves, plain, se_note

CURVE_FIELDS = ["label", "reward_queries", "mean", "se", "n", "se_source"]


def eval_curve(run, prompt_set, metric):
    """dict[int, tuple[float, float | None]]: reward_queries -> metric (value, own SE), base included."""
    return {e.reward_queries: value for e in run.evaluations(prompt_set) if (value := metric.value(e)) is not None}


def train_curve(run):
    """dict[int, tuple[float, float | None]]: reward_queries -> (reward_mean, reward_std / sqrt(trajectories))."""
    return {r["reward_queries"]: (r["reward_mean"], r["reward_se"]) for r in run.progress}


def group_curves(groups, curve, own_source, name):
    """dict[label, list[Run]] -> (dict[label, list[tuple[int, Stat]]], notes); groups without points left out.

    curve: Run -> dict[int, (value, own SE)]; name: the output's name in the notes on dropped points.
    """
    out, notes = {}, []
    for label, runs in groups.items():
        points, dropped = average_curves([curve(run) for run in runs], own_source)
        if dropped:
            notes.append(f"{name}: {label}: {dropped} point(s) not in every seed's data left out of the average")
        if points:
            out[label] = points
    return out, notes


def curve_csv(curves):
    """dict[label, list[tuple[int, Stat]]] -> CSV text: label, reward_queries, mean, se, n, se_source."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CURVE_FIELDS, lineterminator="\n")
    writer.writeheader()
    for label, points in curves.items():
        for x, s in points:
            writer.writerow(
                {
                    "label": label,
                    "reward_queries": x,
                    "mean": plain(s.mean),
                    "se": plain(s.se),
                    "n": s.n,
                    "se_source": s.source,
                }
            )
    return out.getvalue()


def new_figure(width, height, panels=1):
    """A matplotlib Figure on the Agg canvas (no pyplot state) and its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, panels) if panels > 1 else fig.subplots()


def plot_curves(path, curves, colors, title, ylabel, band_note, budget):
    """Lines of mean vs reward queries, one per group, a shaded ±1 SE band where the SE is known, and a
    dashed vertical line at the budget (a legend entry only, when the budget lies beyond the last point:
    a line far to the right would squeeze the curves).

    curves: dict[label, list[tuple[int, Stat]]]; colors: dict[label, matplotlib colour]; budget: int.
    """
    plot_panels(path, [(curves, title, ylabel)], colors, band_note, budget)


def plot_panels(path, panels, colors, band_note, budget):
    """:func:`plot_curves` side by side: panels is a list of (curves, title, ylabel), one axis each."""
    fig, axes = new_figure(6.6 * len(panels), 4.6, panels=len(panels))
    for ax, (curves, title, ylabel) in zip(axes if len(panels) > 1 else [axes], panels):
        _draw_curves(ax, curves, colors, title, ylabel, band_note, budget)
    fig.savefig(path)


def _draw_curves(ax, curves, colors, title, ylabel, band_note, budget):
    from matplotlib.ticker import StrMethodFormatter

    for label, points in curves.items():
        color = colors[label]
        xs = [x for x, _ in points]
        lows = [s.mean - s.se if s.se is not None else math.nan for _, s in points]
        highs = [s.mean + s.se if s.se is not None else math.nan for _, s in points]
        ax.plot(
            xs, [s.mean for _, s in points], marker="o", color=color, label=f"{label} (n={max(s.n for _, s in points)})"
        )
        ax.fill_between(xs, lows, highs, color=color, alpha=0.2, linewidth=0)
    last = max(x for points in curves.values() for x, _ in points)
    if budget <= 1.05 * last:
        ax.axvline(budget, color="0.35", linestyle="--", linewidth=1, label=f"budget {budget:,}")
    else:
        ax.plot([], [], " ", label=f"budget {budget:,} (beyond the last point)")
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel("reward queries (training images scored by the reward)")
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(title=f"shaded: {band_note}", fontsize="small", title_fontsize="small")


def _curve(name, curves, colors, title, ylabel, own, budget):
    """The (file name, content) pairs of one curve: the PNG (drawn later) and the CSV."""
    note = se_note((max(s.n for _, s in points) for points in curves.values()), own)
    draw = functools.partial(
        plot_curves, curves=curves, colors=colors, title=title, ylabel=ylabel, band_note=note, budget=budget
    )
    return [(f"{name}.png", draw), (f"{name}.csv", curve_csv(curves))]


def plan_curves(groups, colors, budget):
    """Every curve to write: (outputs, notes). outputs: list[(file name, text or function(path))]."""
    outputs, notes = [], []
    own = "the evaluation's own SE"
    titles = {
        "train": ("Fig. 5: CLIPScore on the training prompts vs reward queries", "CLIPScore (training prompts)"),
        "test": (
            "CLIPScore on held-out prompts vs reward queries\n(extra; not a figure of the paper)",
            "CLIPScore (held-out prompts; extra)",
        ),
    }
    for prompt_set, (title, ylabel) in titles.items():
        name = f"curve_{prompt_set}"
        curves, dropped = group_curves(groups, lambda run, s=prompt_set: eval_curve(run, s, CLIPSCORE), "eval", name)
        if curves:
            notes += dropped
            outputs += _curve(name, curves, colors, title, ylabel, own, budget)
        else:
            notes.append(f"{name}.png skipped: no run has eval/{prompt_set}.json files")
    for prompt_set in titles:
        for metric in TOY_METRICS:
            name = f"curve_{prompt_set}_{metric.key}"
            curves, dropped = group_curves(
                groups, lambda run, s=prompt_set, m=metric: eval_curve(run, s, m), "eval", name
            )
            if curves:  # only toy-world evaluations have these keys
                notes += dropped
                what = f"{metric.name[0].upper()}{metric.name[1:]}, {prompts_name(prompt_set)}"
                outputs += _curve(name, curves, colors, f"{what} vs reward queries", what, own, budget)
    for prompt_set in titles:  # Fig. 7a: CLIPScore and BERTScore (or its toy stand-in) side by side
        name = f"fig7a_{prompt_set}"
        for metric in CAPTION_METRICS:
            second, dropped = group_curves(
                groups, lambda run, s=prompt_set, m=metric: eval_curve(run, s, m), "eval", name
            )
            if second:
                break
        if second:
            clip, _ = group_curves(groups, lambda run, s=prompt_set: eval_curve(run, s, CLIPSCORE), "eval", name)
            notes += dropped
            where = prompts_name(prompt_set)
            note = se_note((max(s.n for _, s in points) for points in second.values()), own)
            panels = [
                (clip, f"CLIPScore, {where}", f"CLIPScore ({where})"),
                (second, f"{metric.name[0].upper()}{metric.name[1:]}, {where}", f"{metric.name} ({where})"),
            ]
            outputs += [
                (
                    f"{name}.png",
                    functools.partial(plot_panels, panels=panels, colors=colors, band_note=note, budget=budget),
                ),
                (f"curve_{prompt_set}_{metric.key}.csv", curve_csv(second)),
            ]
    rewards, dropped = group_curves(groups, train_curve, "round", "curve_train_reward")
    if rewards:
        notes += dropped
        outputs += _curve(
            "curve_train_reward",
            rewards,
            colors,
            "Training reward vs reward queries",
            "training reward (round mean)",
            "the round's own SE",
            budget,
        )
    else:
        notes.append(f"curve_train_reward.png skipped: no run has rounds in {PROGRESS}")
    return outputs, notes
