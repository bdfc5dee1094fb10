"""docs/RESULTS.md from the benchmark's record (:mod:`ledger`; for ``--quick``, its run folders): the
protocol, the learning-rate grid, a section per paper item (claim, figure, paired differences with
standard errors, verdict), stability, the machines and the wall times. Parts not run yet are named
with the command that runs them; every number comes from a recorded run.

The sections are written by :mod:`b2diffurl.toylab.claims`, :mod:`b2diffurl.toylab.sections` and
:mod:`b2diffurl.toylab.restated`; here they are put together with the figures."""

import os
import subprocess
import sys

from b2diffurl import configs
from b2diffurl.toylab import protocol
from b2diffurl.toylab.claims import claim_rows, summary_line, waiting_line
from b2diffurl.toylab.finals import Finals
from b2diffurl.toylab.formats import COMMAND
from b2diffurl.toylab.restated import protocol_lines, timings_lines
from b2diffurl.toylab.sections import caption_lines, f1_lines, grid_section, stability_section

DISCUSSION = "## Discussion"


class ReportError(Exception):
    """Printed as one ``error:`` line, exit status 2."""


# figure sets (one python -m b2diffurl.figures call each): name -> (methods, template)
FIGURE_SETS = {
    **{f"fig5_{t}": (("B2-DiffuRL", "DDPO"), t) for t in protocol.FIG5_TEMPLATES},
    "fig7": (("B2-DiffuRL", "BPT-only", "DDPO"), protocol.MAIN_TEMPLATE),
    "fig8": (tuple(label for pair in protocol.ALGORITHM_PAIRS for label in pair[1:]), protocol.MAIN_TEMPLATE),
}
# images shown under each paper item: (figure set, file)
ITEM_IMAGES = {
    "Fig. 5": [
        (f"fig5_{t}", image)
        for t in protocol.FIG5_TEMPLATES
        for image in ("curve_train_alignment.png", "curve_train.png")
    ],
    "Fig. 7a": [("fig7", "curve_train_alignment.png"), ("fig7", "fig7a_train.png")],
    "Fig. 7b": [("fig7", "curve_train_background_entropy.png"), ("fig7", "bars_train.png")],
    "Fig. 8": [("fig8", "curve_train_alignment.png"), ("fig8", "bars_train.png")],
    "Table 3": [
        (f"fig5_{protocol.MAIN_TEMPLATE}", "curve_test_alignment.png"),
        (f"fig5_{protocol.MAIN_TEMPLATE}", "curve_test.png"),
    ],
}


def draw_figures(runs, out, budget):
    """python -m b2diffurl.figures on ``runs`` ([(label, run folder)]) into ``out``; its note lines."""
    specs = [f"{label}={path}" for label, path in runs if os.path.isdir(path)]
    if not specs:
        return []
    proc = subprocess.run(
        [sys.executable, "-m", "b2diffurl.figures", *specs, "--out", out, "--queries", str(budget)],
        cwd=configs.REPO_ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise ReportError(f"figures for {out} failed: {proc.stderr.strip()}")
    return [line for line in proc.stdout.splitlines() if line.startswith("note:")]


def shown_path(save_path, out):
    """``save_path`` as the report at ``out`` names it: relative to the checkout whose docs/ holds the
    report (the same text on every machine's checkout), else to the project, else as it is."""
    docs = os.path.dirname(os.path.abspath(out))
    for root in ([os.path.dirname(docs)] if os.path.basename(docs) == "docs" else []) + [configs.REPO_ROOT]:
        if os.path.abspath(save_path).startswith(os.path.join(root, "")):
            return os.path.relpath(save_path, root)
    return save_path


def draw_sets(finals, figures_dir):
    """Draw the figure sets that hold runs (:data:`FIGURE_SETS`); returns (the names drawn, their notes)."""
    drawn, notes = set(), []
    fig5_pair = FIGURE_SETS[f"fig5_{protocol.MAIN_TEMPLATE}"][0]
    for name, (labels, template) in FIGURE_SETS.items():
        runs = [
            (label, finals.dir(label, template, s))
            for label in labels
            for s in finals.seeds
            if finals.has(label, template)
        ]
        own = name.startswith("fig5_") or any(label not in fig5_pair for label, _ in runs)
        if runs and own:  # fig7 and fig8 are drawn once they hold a method of their own, not as copies of fig5
            notes += [
                f"{name}: {note[len('note: ') :]}"
                for note in draw_figures(runs, os.path.join(figures_dir, name), finals.budget)
            ]
            drawn.add(name)
    return drawn, notes


def head_lines(save_path, out, quick):
    """The title and the sentence that says what wrote the report from where."""
    title = "Quick check" if quick else "Results"
    command = f"{COMMAND} --quick" if quick else f"{COMMAND} --part all"
    parts = "" if quick else " (or its parts one by one: grid, then " + ", ".join(protocol.FINAL_PARTS) + ")"
    return [
        f"# {title}: the paper in miniature on the toy world",
        "",
        f"Written by `{command}`{parts}; every number comes from the "
        + ("run folders" if quick else "runs recorded (evaluations, progress and settings of each finished run)")
        + f" under `{shown_path(save_path, out)}`.",
    ]


def base_lines(finals):
    """The base model's alignment per template and prompt set, as one line (none without it)."""
    found = []
    for template in protocol.FIG5_TEMPLATES:
        for prompt_set in ("train", "test"):
            value = finals.base(template, prompt_set, "alignment_mean")
            if value is not None:
                found.append(f"{template} {'training' if prompt_set == 'train' else 'held-out'} prompts {value:.1%}")
    return ["Base model's alignment: " + ", ".join(found) + ".", ""] if found else []


def item_lines(finals, item, quick, drawn, figures_dir, rel):
    """(the section of paper ``item``: its claims or what they wait for, and its figures; its verdicts)."""
    lines = [f"## {item}", ""]
    rows, verdicts = claim_rows(finals, [item])
    caption = caption_lines(finals) if item == "Fig. 7a" and not quick else []
    if not rows:
        return lines + [waiting_line(finals, item), ""] + caption, verdicts
    lines += [*rows, "", *caption]
    images = [
        f"![{item}: {name}, {image}]({rel}/{name}/{image})"
        for name, image in ITEM_IMAGES.get(item, [])
        if name in drawn and os.path.isfile(os.path.join(figures_dir, name, image))
    ]
    return lines + ([*images, ""] if images else []), verdicts


def kept_discussion(out):
    """The ``## Discussion`` section (written by hand) of the report already at ``out``, or ""."""
    if os.path.isfile(out):
        text = open(out).read()
        if DISCUSSION in text:
            return text[text.index(DISCUSSION) :]
    return ""


def write(save_path, out, figures_dir, quick=False):
    """Draw the figure sets from the runs under ``save_path`` (the record, or --quick's run folders) and
    write the report to ``out``; returns ``out``."""
    kind = "quick" if quick else "final"
    seeds = protocol.QUICK["seeds"] if quick else protocol.FINAL_SEEDS
    rounds = protocol.QUICK["rounds"] if quick else protocol.FINAL_ROUNDS
    interval = protocol.QUICK["eval_interval"] if quick else protocol.EVAL_INTERVAL
    finals = Finals(save_path, kind, seeds, rounds)
    drawn, notes = draw_sets(finals, figures_dir)
    rel = os.path.relpath(figures_dir, os.path.dirname(out))
    lines = [
        *head_lines(save_path, out, quick),
        "",
        "## Protocol",
        "",
        *protocol_lines(kind, rounds, interval, seeds),
        "",
        "## Learning-rate grid",
        "",
        *grid_section(save_path),
        *base_lines(finals),
    ]
    all_verdicts = []
    for item in ("Fig. 5", "Fig. 7a", "Fig. 7b", "Fig. 8", "Table 1", "Table 2", "Table 3"):
        section, verdicts = item_lines(finals, item, quick, drawn, figures_dir, rel)
        lines += section
        all_verdicts += verdicts
    if not quick:
        lines += ["## App. F.1", "", *f1_lines(save_path, figures_dir, rel)]
    lines += ["## Stability", "", *stability_section(finals)]
    lines += [
        "## Summary",
        "",
        summary_line(all_verdicts),
        "",
        "## Machine and wall time",
        "",
        *timings_lines(save_path),
    ]
    if notes:
        lines += ["", "Notes from the figures:", "", *[f"- {note}" for note in notes]]
    discussion = kept_discussion(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n" + ("\n" + discussion if discussion else ""))
    print(f"wrote {out} and {figures_dir}/")
    return out
