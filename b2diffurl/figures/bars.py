"""Bars at the budget (Fig. 7/8 style) on the training prompts: CLIPScore, per-prompt IS, pooled IS,
each bar labelled with its value and the reward queries it stands for (matplotlib inside
:func:`plot_bars` only)."""

import functools
import math
from typing import NamedTuple

from b2diffurl.figures.budget import budget_text, picked, queries_short
from b2diffurl.figures.metrics import CLIPSCORE, IS_PER_PROMPT, IS_POOLED
from b2diffurl.figures.runs import base_label, distinct
from b2diffurl.figures.stats import mean_se, se_note
from b2diffurl.figures.tables import column_order

PROMPT_SET = "train"
PANELS = (
    (CLIPSCORE, "CLIPScore (alignment)"),
    (IS_PER_PROMPT, "Inception Score per prompt (diversity)"),
    (IS_POOLED, "Inception Score pooled over all images"),
)


class Bar(NamedTuple):
    name: str  # group label, or "<checkpoint> (base)" (", Temp. 2" added when the base evaluations span templates)
    stat: object  # Stat | None (no value)
    queries: tuple  # reward queries of the evaluations averaged (empty without a value)


def budget_bars(groups, prompt_set, budget, metric):
    """One bar per base template then one per group, at the budget.

    groups: dict[label, list[Run]]; metric: Metric. Base bars average the distinct base evaluations
    (identical ones once); a group's bar averages its runs' picks (budget.pick). A group without a pick
    or without the metric gets Bar(label, None, ()).
    """
    bases = distinct(b for runs in groups.values() for run in runs if (b := run.base(prompt_set)) is not None)
    templates = sorted({b.template for b in bases}, key=column_order)
    bars = []
    for template in templates:
        values = [v for b in bases if b.template == template and (v := metric.value(b)) is not None]
        name = base_label([b for b in bases if b.template == template])
        name = name if len(templates) == 1 else f"{name}, {template}"
        bars.append(Bar(name, mean_se(values) if values else None, (0,) * len(values)))
    for label, evaluations in picked(groups, prompt_set, budget).items():
        used = [(v, e.reward_queries) for e in evaluations if (v := metric.value(e)) is not None]
        bars.append(Bar(label, mean_se([v for v, _ in used]) if used else None, tuple(q for _, q in used)))
    return bars


def plot_bars(path, panels, colors, title):
    """Panels of bars with ±1 SE error bars (none where unknown), each labelled "value\\nqueries".

    panels: list[tuple[str, list[Bar]]] (panel title, bars); colors: dict[label, colour] (base bars grey).
    """
    from b2diffurl.figures.curves import new_figure

    fig, axes = new_figure(4.2 * len(panels), 4.8, panels=len(panels))
    for ax, (panel_title, bars) in zip(axes, panels):
        heights = [b.stat.mean if b.stat else math.nan for b in bars]
        errors = [b.stat.se if b.stat and b.stat.se is not None else math.nan for b in bars]
        ax.bar(
            range(len(bars)),
            heights,
            yerr=errors,
            capsize=4,
            color=[colors.get(b.name, "0.6") for b in bars],
            alpha=0.85,
        )
        ax.set_ylabel(panel_title.split(" (")[0])
        for i, bar in enumerate(bars):
            if bar.stat is None:  # no evaluation at the budget: say so where the bar would stand
                ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize="x-small")
            else:  # above the error bar, so neither hides the other
                top = bar.stat.mean + (bar.stat.se or 0.0)
                ax.annotate(
                    f"{bar.stat.mean:.3f}\n{queries_short(bar.queries)}",
                    (i, top),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize="x-small",
                )
        ax.set_xticks(range(len(bars)), [b.name for b in bars], rotation=20, ha="right")
        ax.set_xlim(-0.6, len(bars) - 0.4)  # a bar without a value keeps its place
        ax.set_title(panel_title, fontsize="medium")
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.15)
    fig.suptitle(title, fontsize="medium")
    fig.savefig(path)


def plan_bars(groups, colors, budget):
    """bars_train.png: (outputs, notes) like curves.plan_curves."""
    name = f"bars_{PROMPT_SET}.png"
    if not any(run.evaluations(PROMPT_SET) for runs in groups.values() for run in runs):
        return [], [f"{name} skipped: no run has eval/{PROMPT_SET}.json files"]
    panels = [(title, budget_bars(groups, PROMPT_SET, budget, metric)) for metric, title in PANELS]
    stats = [b.stat for _, bars in panels for b in bars if b.stat is not None]
    if not stats:
        return [], [f"{name} skipped: no base or trained {PROMPT_SET} evaluation at ≤ {budget:,} reward queries"]
    own = "the evaluation's own SE"
    title = f"Training prompts, {budget_text(budget)}\nerror bars: {se_note((s.n for s in stats), own)}"
    return [(name, functools.partial(plot_bars, panels=panels, colors=colors, title=title))], []
