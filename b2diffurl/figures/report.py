"""The tables to write (tables.md sections and their CSVs, with captions) and summary.csv."""

import csv
import io
import os

from b2diffurl.figures.budget import budget_text, pick
from b2diffurl.figures.metrics import CLIPSCORE, IS_PER_PROMPT, IS_POOLED, TOY_METRICS, prompts_name
from b2diffurl.figures.runs import PROMPT_SETS
from b2diffurl.figures.stats import plain
from b2diffurl.figures.tables import algorithm_cells, grid, markdown_table, table_csv, template_cells

TABLES_HEADER = "# B2-DiffuRL tables\n\n"
SUMMARY_FIELDS = [
    "label",
    "run",
    "prompt_set",
    "round",
    "round_index",
    "reward_queries",
    "at_budget",
    "clipscore_mean",
    "clipscore_sem",
    "inception_score_per_prompt",
    "inception_score_per_prompt_sem",
    "inception_score",
    "template",
    "algorithm",
    "method",
    "model",
    "learning_rate",
    "seed",
    # the optional metrics (empty when the evaluation has none): evaluate.metrics, the toy world's
    "bertscore_mean",
    "bertscore_sem",
    "toycaption_mean",
    "toycaption_sem",
    "alignment_mean",
    "alignment_sem",
    "background_entropy",
]
PER_PROMPT_LEADS = (
    "The per-prompt IS (the IS within each prompt's images, averaged over prompts; one run's own SE is its SE over "
    "prompts) leads: the paper's values (SD 1.32 / 1.41 / 1.36 on templates 1-3) are close to 1, which fits diversity "
    "WITHIN a prompt (style collapse), while an IS pooled over dozens of different subjects is far larger; the pooled "
    "IS follows in its own table."
)
POOLED = (
    "The pooled IS (one IS over all images of the prompt set; one run's own SE = inception_score_std / "
    "sqrt(is_splits)) "
    "mixes dozens of different subjects, so it is far larger than the paper's values; compare those with the "
    "per-prompt IS table."
)


def caption(prompt_set, budget, extra="", base=True):
    """The text under a table: prompt set, budget, what a cell shows."""
    sd = "; (base) = the base model, 0 q" if base else ""
    text = (
        f"Drawn from the {prompts_name(prompt_set)} (eval/{prompt_set}.json), {budget_text(budget)}. Each cell "
        f"shows the reward queries it stands for (q; a range when its runs differ{sd}). "
        "Mean ± SE over seeds (n ≥ 2; n per cell in the CSV); a cell of one run shows that evaluation's own SE, "
        "or the mean alone when it has none; - = no data."
    )
    return f"{text} {extra}" if extra else text


def has_evaluations(groups, prompt_set, metric=None):
    """Whether any run has an evaluation on the prompt set (one with ``metric`` when given)."""
    return any(
        metric is None or metric.value(e) is not None
        for runs in groups.values()
        for run in runs
        for e in run.evaluations(prompt_set)
    )


def plan_tables(groups, budget):
    """(outputs, sections, notes): the table CSVs, the Markdown sections of tables.md in order, notes."""
    outputs, sections, notes = [], [], []

    def add(title, corner, shape, metric, file_name, extra, prompt_set):
        rows, columns, cells = shape
        table, lacking = grid(rows, columns, cells, metric)
        if lacking:
            why = " (format_version 1 files lack it)" if metric is IS_PER_PROMPT else ""
            notes.append(
                f"{title.split(' (')[0]} has {lacking} cell(s) shown as - because their evaluations have no "
                f"{metric.json_key}{why}"
            )
        text = caption(prompt_set, budget, extra, base=bool(rows) and rows[0].endswith("(base)"))
        sections.append(markdown_table(title, corner, rows, columns, table, text))
        outputs.append((file_name, table_csv(rows, columns, table)))

    at = f"at ≤ {budget:,} reward queries"
    if has_evaluations(groups, "train"):
        shape = template_cells(groups, "train", budget)
        add(
            f"Table 1: diversity (per-prompt Inception Score, training prompts, {at})",
            "Method",
            shape,
            IS_PER_PROMPT,
            "table1_diversity.csv",
            PER_PROMPT_LEADS,
            "train",
        )
        add(
            f"Table 1, pooled IS: diversity (pooled Inception Score, training prompts, {at})",
            "Method",
            shape,
            IS_POOLED,
            "table1_diversity_pooled.csv",
            POOLED,
            "train",
        )
        shape = algorithm_cells(groups, "train", budget)
        if shape[0]:
            add(
                f"Table 2: algorithms (per-prompt Inception Score, training prompts, {at})",
                "Algorithm",
                shape,
                IS_PER_PROMPT,
                "table2_algorithms.csv",
                PER_PROMPT_LEADS,
                "train",
            )
            add(
                f"Table 2, pooled IS: algorithms (pooled Inception Score, training prompts, {at})",
                "Algorithm",
                shape,
                IS_POOLED,
                "table2_algorithms_pooled.csv",
                POOLED,
                "train",
            )
        else:
            notes.append(
                "Table 2 skipped: no run's train evaluation at the budget has method.label vanilla or "
                "B2-DiffuRL with a method.algorithm"
            )
    else:
        notes.append("Tables 1-2 skipped: no run has eval/train.json files")
    if has_evaluations(groups, "test"):
        add(
            f"Table 3: generalization (CLIPScore, held-out prompts, {at})",
            "Method",
            template_cells(groups, "test", budget),
            CLIPSCORE,
            "table3_generalization.csv",
            "",
            "test",
        )
    else:
        notes.append("Table 3 skipped: no run has eval/test.json files")
    for metric in TOY_METRICS:
        for prompt_set in PROMPT_SETS:
            if has_evaluations(groups, prompt_set, metric):
                add(
                    f"Toy world: {metric.name}, {prompts_name(prompt_set)}, {at}",
                    "Method",
                    template_cells(groups, prompt_set, budget),
                    metric,
                    f"table_toy_{metric.key}_{prompt_set}.csv",
                    "",
                    prompt_set,
                )
    return outputs, sections, notes


def summary_csv(groups, budget, folder):
    """CSV text, one line per (run, prompt set, evaluation), base included; at_budget = 1 for the
    evaluation budget.pick chose for that run and set. ``run`` is the run folder relative to ``folder``
    (the CSV's folder): the file stays right when the tree that holds both moves to another machine."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for label, runs in groups.items():
        for run in runs:
            for prompt_set in PROMPT_SETS:
                chosen = pick(run.evaluations(prompt_set), budget)
                for e in run.evaluations(prompt_set):
                    writer.writerow(
                        {
                            "label": label,
                            "run": os.path.relpath(run.path, folder),
                            "prompt_set": prompt_set,
                            "round": e.round,
                            "round_index": e.index,
                            "reward_queries": e.reward_queries,
                            "at_budget": int(e is chosen),
                            "clipscore_mean": plain(e.clipscore),
                            "clipscore_sem": plain(e.clipscore_sem),
                            "inception_score_per_prompt": plain(e.inception_pp),
                            "inception_score_per_prompt_sem": plain(e.inception_pp_sem),
                            "inception_score": plain(e.inception),
                            "template": e.template,
                            "algorithm": e.algorithm,
                            "method": e.method,
                            "model": e.model,
                            "learning_rate": plain(e.learning_rate),
                            "seed": "" if e.seed is None else e.seed,
                            "bertscore_mean": plain(e.bertscore),
                            "bertscore_sem": plain(e.bertscore_sem),
                            "toycaption_mean": plain(e.toycaption),
                            "toycaption_sem": plain(e.toycaption_sem),
                            "alignment_mean": plain(e.alignment),
                            "alignment_sem": plain(e.alignment_sem),
                            "background_entropy": plain(e.background_entropy),
                        }
                    )
    return out.getvalue()
