"""Tables at the budget: which evaluations fill each cell (Tables 1 and 3: group x template; Table 2:
algorithm x vanilla/B2-DiffuRL), the cells' mean ± SE with their reward queries, as Markdown and CSV."""

import csv
import io
import re
from typing import NamedTuple

from b2diffurl.figures.budget import picked, queries_cell, queries_csv
from b2diffurl.figures.runs import base_label, distinct
from b2diffurl.figures.stats import mean_se, plain

ALGORITHM_NAMES = {"ppo": "PPO/DDPO", "pg": "PG", "dpok": "DPOK", "dpo": "DPO"}
VARIANTS = {"vanilla": "Vanilla", "b2-diffurl": "Ours+Vanilla"}  # method.label (lower case) -> Table 2 column
CSV_FIELDS = ["row", "column", "mean", "se", "n", "se_source", "reward_queries"]


class Cell(NamedTuple):
    stat: object  # Stat | None: None where no evaluation of the cell has the metric
    queries: tuple  # reward queries of the evaluations averaged (empty when stat is None)


def column_order(column):
    """Sort key of table columns: "Temp. N" by N first, then the rest by name."""
    match = re.match(r"^Temp\. (\d+)$", column)
    return (0, int(match.group(1)), "") if match else (1, 0, column)


def template_cells(groups, prompt_set, budget):
    """Tables 1 and 3 (and the toy tables): (rows, columns, cells), cells dict[(row, column), list[Evaluation]].

    Rows: the base model (when any run has a base evaluation on the set) then every group label, also those
    without a pick (their cells stay empty); columns: the templates of the evaluations used. Each
    distinct base evaluation goes to the base row ("<checkpoint> (base)", runs.base_label), each run's pick
    (budget.pick) to its group.
    """
    bases = distinct(b for runs in groups.values() for run in runs if (b := run.base(prompt_set)) is not None)
    base_row = base_label(bases)
    entries = [(base_row, b) for b in bases]
    entries += [(label, e) for label, evaluations in picked(groups, prompt_set, budget).items() for e in evaluations]
    cells = {}
    for row, evaluation in entries:
        cells.setdefault((row, evaluation.template), []).append(evaluation)
    rows = ([base_row] if bases else []) + list(groups)
    return rows, sorted({column for _, column in cells}, key=column_order), cells


def algorithm_cells(groups, prompt_set, budget):
    """Table 2: (rows, columns, cells) like template_cells; rows = algorithms, columns = "Vanilla", "Ours+Vanilla".

    Every run whose pick has method.label vanilla or B2-DiffuRL and a method.algorithm joins the cell
    of its algorithm; the row name carries the template when those runs span several templates.
    """
    chosen = [
        e
        for evaluations in picked(groups, prompt_set, budget).values()
        for e in evaluations
        if e.method.lower() in VARIANTS and e.algorithm
    ]
    several = len({e.template for e in chosen}) > 1
    order = list(ALGORITHM_NAMES)
    keys = sorted(
        {(e.algorithm, e.template) for e in chosen},
        key=lambda k: (order.index(k[0]) if k[0] in order else len(order), k[0], column_order(k[1])),
    )

    def row_name(algorithm, template):
        name = ALGORITHM_NAMES.get(algorithm, algorithm.upper())
        return f"{name} ({template})" if several else name

    cells = {}
    for e in chosen:
        cells.setdefault((row_name(e.algorithm, e.template), VARIANTS[e.method.lower()]), []).append(e)
    return [row_name(*k) for k in keys], list(VARIANTS.values()), cells


def grid(rows, columns, cells, metric):
    """-> (dict[(row, column), Cell | None], lacking): every cell's mean ± SE of ``metric`` with its
    reward queries (None where the cell has no evaluation); lacking = cells whose evaluations all
    lack the metric (Cell(None, ()))."""
    out, lacking = {}, 0
    for key in ((r, c) for r in rows for c in columns):
        evaluations = cells.get(key)
        if not evaluations:
            out[key] = None
            continue
        used = [(v, e.reward_queries) for e in evaluations if (v := metric.value(e)) is not None]
        out[key] = Cell(mean_se([v for v, _ in used]), tuple(q for _, q in used)) if used else Cell(None, ())
        lacking += not used
    return out, lacking


def format_stat(stat):
    """Stat | None -> "0.3100 ± 0.0100" (4 decimals), the mean alone without an SE, "-" when missing."""
    if stat is None:
        return "-"
    return f"{stat.mean:.4f}" if stat.se is None else f"{stat.mean:.4f} ± {stat.se:.4f}"


def format_cell(cell):
    """Cell | None -> "0.3500 ± 0.0100 (25,344 q)", "(25,088–25,344 q)" when its runs differ; "-" when empty."""
    if cell is None or cell.stat is None:
        return "-"
    return f"{format_stat(cell.stat)} ({queries_cell(cell.queries)})"


def markdown_table(title, corner, rows, columns, cells, caption):
    """A Markdown section: '## title', a table with ``corner`` over the row names, then ``caption``."""

    def text(value):
        return str(value).replace("|", "\\|")

    lines = [
        f"## {title}",
        "",
        "| " + " | ".join(text(t) for t in [corner, *columns]) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    lines += ["| " + " | ".join([text(r)] + [format_cell(cells[r, c]) for c in columns]) + " |" for r in rows]
    return "\n".join(lines + ["", caption, ""])


def table_csv(rows, columns, cells):
    """CSV text, one line per cell: row, column, mean, se, n, se_source, reward_queries (empty mean,
    n = 0 and empty reward_queries where the cell is empty)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        for c in columns:
            cell = cells[r, c]
            s = cell.stat if cell else None
            writer.writerow(
                {
                    "row": r,
                    "column": c,
                    "mean": plain(s and s.mean),
                    "se": plain(s and s.se),
                    "n": s.n if s else 0,
                    "se_source": s.source if s else "",
                    "reward_queries": queries_csv(cell.queries) if s else "",
                }
            )
    return out.getvalue()
