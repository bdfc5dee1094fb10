"""The report's claim tables: per paper item the claims the finished runs can speak to (both methods'
means, the paired difference with its SE, z and the verdict), what an item without runs waits for,
and the verdicts counted."""

from b2diffurl.stats import mean_se
from b2diffurl.toylab import protocol
from b2diffurl.toylab.formats import COMMAND, fmt_se
from b2diffurl.toylab.protocol import METRIC_NAMES
from b2diffurl.toylab.verdicts import paired


def item_runs(item):
    """[(method label, template)] the claims of paper ``item`` compare, in claim order, once each."""
    runs = []
    for claim in protocol.claims():
        for label in (claim.a, claim.b):
            if claim.item == item and (label, claim.template) not in runs:
                runs.append((label, claim.template))
    return runs


def part_of(label, template):
    """The final part whose plan runs ``label`` on ``template``."""
    return next(p.name for p in protocol.PARTS.values() if p.name != "grid" and (label, template) in p.runs)


def waiting_line(finals, item):
    """The line of an item no claim of which has a run at the budget: which parts to (re)run."""
    runs = item_runs(item)
    parts = list(dict.fromkeys(part_of(label, template) for label, template in runs))
    flags = " and ".join(f"`{COMMAND} --part {part}`" for part in parts)
    if finals.kind == "quick":
        flags = f"`{COMMAND} --quick`"
    if any(finals.has(label, template) for label, template in runs):
        return f"Runs started, none at {finals.budget} reward queries yet: rerun {flags} to finish them."
    return f"Not run yet: {flags}."


def claim_row(finals, claim):
    """(the claim's table row, its verdict or None while it waits for a part), or None without runs."""
    a = finals.values(claim.a, claim.template, claim.prompt_set, claim.metric)
    b = finals.values(claim.b, claim.template, claim.prompt_set, claim.metric)
    if not a and not b:
        return None
    ma, sa, na = mean_se(a.values())
    mb, sb, nb = mean_se(b.values())
    mean, se, n, _ = paired(a, b)
    z = f"{mean / se:+.1f}" if se else "-"
    if n:
        verdict = protocol.verdict_so_far(mean, se, n, len(finals.seeds), claim.sign)
        counted = verdict
    else:
        verdict = "waits for --part " + part_of(claim.b if a else claim.a, claim.template)
        counted = None
    prompts = "training" if claim.prompt_set == "train" else "held-out"
    metric = f"{METRIC_NAMES[claim.metric]} ({prompts}, {claim.template})"
    row = (
        f"| {claim.item} | {claim.text} | {metric} | {claim.a}: {fmt_se(ma, sa, na, claim.metric)} | "
        f"{claim.b}: {fmt_se(mb, sb, nb, claim.metric)} | {fmt_se(mean, se, n, claim.metric, signed=True)} | "
        f"{z} | **{verdict}** |"
    )
    return row, counted


def claim_rows(finals, items=None):
    """Markdown table of the claims (of ``items``, or all) the finished runs can speak to, and the verdicts."""
    rows = [
        "| Item | Claim | Metric (set, template) | A | B | A - B (paired over seeds) | z | Verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for claim in protocol.claims():
        if items and claim.item not in items:
            continue
        found = claim_row(finals, claim)
        if found is None:
            continue
        row, verdict = found
        if verdict is not None:
            verdicts.append(verdict)
        rows.append(row)
    return (rows if len(rows) > 2 else []), verdicts


def summary_line(verdicts):
    """The verdicts counted: the claims on all their seeds, then those of parts still running."""
    done = [v for v in verdicts if " so far " not in v]
    partial = [v.split(" so far ")[0] for v in verdicts if " so far " in v]

    def counted(values):
        return ", ".join(f"{v} {values.count(v)}" for v in sorted(set(values)))

    text = "Verdicts over every claim tested: " + (counted(done) or "none on all their seeds yet")
    return text + (f"; claims of parts still running, so far: {counted(partial)}." if partial else ".")
