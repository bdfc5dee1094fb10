"""The command line: arguments, the plan of every output, writing them (see the package docstring)."""

import argparse
import os
import re
import sys

from b2diffurl.figures.bars import plan_bars
from b2diffurl.figures.budget import DEFAULT_QUERIES, shortfall_notes
from b2diffurl.figures.curves import plan_curves
from b2diffurl.figures.metrics import TOY_METRICS, prompts_name
from b2diffurl.figures.report import TABLES_HEADER, has_evaluations, plan_tables, summary_csv
from b2diffurl.figures.runs import PROGRESS, PROMPT_SETS, FiguresError, load_runs, split_spec


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise FiguresError(message)


def whole_number(text):
    """--queries: a whole number >= 0 ("25600"); anything else is a FiguresError."""
    if not re.fullmatch(r"\s*\d+\s*", text):
        raise FiguresError(f"--queries={text!r}: a whole number of reward queries >= 0, such as {DEFAULT_QUERIES}")
    return int(text)


def parse_args(argv):
    parser = ArgumentParser(
        prog="python -m b2diffurl.figures",
        description="Figures (Fig. 5, 7/8 style) and tables (Tables 1-3 style) from run folders, compared at equal "
        "reward queries; see the package docstring (python -c 'help(\"b2diffurl.figures\")').",
    )
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="[LABEL=]RUN_DIR",
        help="run folder <save_path>/<exp_name>; same label = seeds of one experiment",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="folder for the figures and tables (created if missing); default RUN_DIR/figures for one run folder",
    )
    parser.add_argument(
        "--queries",
        default=str(DEFAULT_QUERIES),
        metavar="N",
        help="reward-query budget: bars and tables use each run's last trained evaluation with "
        f"reward_queries <= N (default {DEFAULT_QUERIES})",
    )
    args = parser.parse_args(argv)
    args.queries = whole_number(args.queries)
    if args.out is None:
        if len(args.runs) != 1:
            raise FiguresError("--out is needed with several run folders (one run folder writes to RUN_DIR/figures)")
        args.out = os.path.join(split_spec(args.runs[0])[1], "figures")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise FiguresError(f"--out={args.out}: exists and is not a folder")
    return args


def left_out_of(groups, prompt_set):
    """What a run without a pick on ``prompt_set`` is left out of, for the budget notes."""
    parts = ["bars_train.png and Tables 1-2"] if prompt_set == "train" else ["Table 3"]
    if any(has_evaluations(groups, prompt_set, metric) for metric in TOY_METRICS):
        parts.append(f"the toy tables on {prompts_name(prompt_set)}")
    return " and ".join(parts)


def plan_outputs(groups, budget, out):
    """Everything to write into the folder ``out``: (outputs, tables_markdown, notes).

    outputs: list[tuple[str, str | callable]]: file name -> text, or a function(path) drawing a figure;
    tables_markdown: str (empty without tables); notes: list[str].
    """
    colors = {label: f"C{i % 10}" for i, label in enumerate(groups)}  # one colour per group in every figure
    outputs, notes = plan_curves(groups, colors, budget)
    for prompt_set in PROMPT_SETS:
        if has_evaluations(groups, prompt_set):
            notes += shortfall_notes(groups, prompt_set, budget, left_out_of(groups, prompt_set))
    bars, bar_notes = plan_bars(groups, colors, budget)
    outputs += bars
    notes += bar_notes
    tables, sections, table_notes = plan_tables(groups, budget)
    outputs += tables
    notes += table_notes
    if sections:
        outputs.append(("tables.md", TABLES_HEADER + "\n".join(sections)))
    if any(has_evaluations(groups, s) for s in PROMPT_SETS):
        outputs.append(("summary.csv", summary_csv(groups, budget, os.path.abspath(out))))
    return outputs, "\n".join(sections), notes


def require_matplotlib():
    """Before anything is written: the figures need matplotlib, in the project's venv."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise FiguresError(
            f"matplotlib is not installed for {sys.executable}: run .venv/bin/python -m b2diffurl.figures "
            "(the project's venv, pip install -r requirements.txt)"
        )


def write_if_changed(path, content):
    """Write ``content`` (text, or a callable that writes a file at the path it is given) to ``path``
    through a file of the same name in ``.partial/`` beside it, replacing ``path`` only when the bytes
    differ: a rerun over the same evaluations leaves the files (and their times) as they were, and a
    stop never leaves half a file."""
    import filecmp

    folder = os.path.join(os.path.dirname(path), ".partial")
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, os.path.basename(path))
    if callable(content):
        content(tmp)
    else:
        with open(tmp, "w", newline="") as f:
            f.write(content)
    if not os.path.isfile(tmp):
        pass  # the writer wrote nothing
    elif os.path.isfile(path) and filecmp.cmp(tmp, path, shallow=False):
        os.remove(tmp)
    else:
        os.replace(tmp, path)
    if not os.listdir(folder):
        os.rmdir(folder)


def main(argv=None):
    """The command line; returns the exit status (0, or 2 after one ``error:`` line on stderr)."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        require_matplotlib()
        groups = load_runs(args.runs)
        outputs, tables, notes = plan_outputs(groups, args.queries, args.out)
        if not outputs:
            raise FiguresError(
                f"nothing to write: no eval/train.json or eval/test.json in any run and no rounds in any {PROGRESS} "
                "(run python -m b2diffurl.evaluate first)"
            )
    except FiguresError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}")
    os.makedirs(args.out, exist_ok=True)
    for name, content in outputs:
        path = os.path.join(args.out, name)
        write_if_changed(path, content)
        print(f"wrote {path}")
    if tables:
        print()
        print(tables)
    return 0
