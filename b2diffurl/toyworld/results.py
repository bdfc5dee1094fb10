"""docs/RESULTS.md from the benchmark's record (:mod:`ledger`; for ``--quick``, its run folders): the
protocol, the learning-rate grid, a section per paper item (claim, figure, paired differences with
standard errors, verdict), stability, the machines and the wall times. Parts not run yet are named
with the command that runs them; every number comes from a recorded run."""

import os
import subprocess
import sys

from b2diffurl import records
from b2diffurl.driver import REPO_ROOT
from b2diffurl.toyworld import ledger, protocol
from b2diffurl.toyworld.ledger import f1_dir, final_dir, grid_runs, read_picks, read_timings
from b2diffurl.toyworld.protocol import METHODS, METRIC_NAMES, PERCENT
from b2diffurl.toyworld.verdicts import at_budget, base_eval, mean_se, paired, share, stability

DISCUSSION = "## Discussion"


class ReportError(Exception):
    """Printed as one ``error:`` line, exit status 2."""


COMMAND = "python -m b2diffurl.toyworld benchmark"
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


def fmt(value, metric, signed=False):
    if value is None:
        return "-"
    if metric in PERCENT:
        return f"{value * 100:+.1f} pts" if signed else f"{value:.1%}"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def fmt_se(mean, se, n, metric, signed=False):
    if mean is None:
        return "-"
    if se is None:
        return f"{fmt(mean, metric, signed)} (n={n})"
    unit = (lambda v: f"{v * 100:.1f}") if metric in PERCENT else (lambda v: f"{v:.4f}")
    return f"{fmt(mean, metric, signed)} ± {unit(se)} (n={n})"


class Finals:
    """The final (or quick) runs: per (method, template), the evaluation at the budget per seed."""

    def __init__(self, save_path, kind, seeds, rounds):
        self.save_path, self.kind, self.seeds, self.rounds = save_path, kind, seeds, rounds
        self.budget = rounds * protocol.QUERIES_PER_ROUND
        self.dir = lambda label, template, seed: final_dir(save_path, label, template, seed, kind)

    def values(self, label, template, prompt_set, metric):
        """{seed: value} of the runs that reached the budget."""
        out = {}
        for seed in self.seeds:
            result = at_budget(self.dir(label, template, seed), prompt_set, self.budget)
            if result is not None and result["reward_queries"] == self.budget and result.get(metric) is not None:
                out[seed] = result[metric]
        return out

    def base(self, template, prompt_set, metric):
        for label in METHODS:
            for seed in self.seeds:
                result = base_eval(self.dir(label, template, seed), prompt_set)
                if result is not None and result.get(metric) is not None:
                    return result[metric]
        return None

    def has(self, label, template):
        return any(os.path.isdir(self.dir(label, template, seed)) for seed in self.seeds)


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
        a = finals.values(claim.a, claim.template, claim.prompt_set, claim.metric)
        b = finals.values(claim.b, claim.template, claim.prompt_set, claim.metric)
        if not a and not b:
            continue
        ma, sa, na = mean_se(a.values())
        mb, sb, nb = mean_se(b.values())
        mean, se, n, _ = paired(a, b)
        z = f"{mean / se:+.1f}" if se else "-"
        if n:
            verdict = protocol.verdict_so_far(mean, se, n, len(finals.seeds), claim.sign)
            verdicts.append(verdict)
        else:
            verdict = "waits for --part " + part_of(claim.b if a else claim.a, claim.template)
        metric = f"{METRIC_NAMES[claim.metric]} ({'training' if claim.prompt_set == 'train' else 'held-out'}, {claim.template})"
        rows.append(
            f"| {claim.item} | {claim.text} | {metric} | {claim.a}: {fmt_se(ma, sa, na, claim.metric)} | "
            f"{claim.b}: {fmt_se(mb, sb, nb, claim.metric)} | {fmt_se(mean, se, n, claim.metric, signed=True)} | {z} | **{verdict}** |"
        )
    return (rows if len(rows) > 2 else []), verdicts


def grid_section(save_path):
    budget = protocol.GRID_ROUNDS * protocol.QUERIES_PER_ROUND
    runs = grid_runs(save_path)
    if not any(os.path.isdir(run_dir) for *_, run_dir in runs):
        return ["Not run yet: `" + COMMAND + " --part grid`.", ""]
    picks = read_picks(save_path)
    lines = [
        f"Training-prompt alignment after {protocol.GRID_ROUNDS} rounds ({budget} reward queries), mean over the selection seeds "
        f"{', '.join(map(str, protocol.SELECTION_SEEDS))}; under it the unstable runs: approx KL > {protocol.KL_LIMIT} in some round "
        "(KL) and final alignment below the base model's (below). **Bold**: the picked rate.",
        "",
        "| Method | " + " | ".join(protocol.lr_text(lr) for lr in protocol.LR_GRID) + " | picked |",
        "|---|" + "---|" * (len(protocol.LR_GRID) + 1),
    ]
    by_cell = {}
    for label, lr, seed, run_dir in runs:
        by_cell.setdefault((label, lr), []).append(run_dir)
    for label in protocol.GRID_METHODS:
        cells = []
        for lr in protocol.LR_GRID:
            dirs = by_cell[(label, lr)]
            scores = [
                r["alignment_mean"]
                for d in dirs
                if (r := at_budget(d, "train", budget)) is not None and r["reward_queries"] == budget
            ]
            if not scores:
                cells.append("-")
                continue
            flags = [stability(d, budget) for d in dirs if os.path.isdir(d)]
            text = f"{sum(scores) / len(scores):.1%} (n={len(scores)})<br>KL {share(f[0] for f in flags)}, below {share(f[1] for f in flags)}"
            cells.append(f"**{text}**" if picks.get(label) == lr else text)
        lines.append(
            f"| {label} | " + " | ".join(cells) + f" | {protocol.lr_text(picks[label]) if label in picks else '-'} |"
        )
    base = None
    for *_, run_dir in runs:
        if (b := base_eval(run_dir, "train")) is not None:
            base = b["alignment_mean"]
            break
    if base is not None:
        lines += ["", f"Base model on the training prompts: {base:.1%}."]
    return lines + [""]


def stability_section(finals):
    lines = [
        f"Final runs: approx KL above {protocol.KL_LIMIT} in some round (KL), final training-prompt alignment below the base model's (below).",
        "",
        "| Method | template | KL | below |",
        "|---|---|---|---|",
    ]
    any_run = False
    for label in METHODS:
        for template in protocol.FIG5_TEMPLATES:
            if not finals.has(label, template):
                continue
            any_run = True
            flags = [
                stability(finals.dir(label, template, s), finals.budget)
                for s in finals.seeds
                if os.path.isdir(finals.dir(label, template, s))
            ]
            lines.append(f"| {label} | {template} | {share(f[0] for f in flags)} | {share(f[1] for f in flags)} |")
    return lines + [""] if any_run else []


def timings_lines(save_path):
    """The machine, and per part its wall time with how many runs ran at once (benchmark --jobs) and
    the runs' summed time (recorded runs: as they timed their rounds and evaluations; --quick's: each
    run's wall time)."""
    timings = read_timings(save_path)
    recorded = ledger.recorded_runs(save_path)
    run_seconds = {}
    for key, seconds in timings["runs"].items():
        run_seconds.setdefault(key.split(os.sep)[0], []).append(seconds)
    machines = sorted({record["machine"] for record in recorded.values() if "machine" in record}) or [ledger.machine()]
    timed = ", as the runs timed their rounds and evaluations" if recorded else ""
    texts, total = [], 0.0
    parts = timings["parts"]
    for part, seconds in sorted(run_seconds.items()):
        entry = parts.get(part)
        finals = [parts[p] for p in protocol.FINAL_PARTS if p in parts and p != "f1"]
        if entry is None and part == "final" and finals:  # the final parts' runs share the folder final/
            entry = {
                "wall_seconds": sum(e["wall_seconds"] for e in finals),
                "jobs": "/".join(sorted({str(e["jobs"]) for e in finals})),
                "threads": "/".join(sorted({str(e["threads"]) for e in finals})),
            }
        if entry:
            total += entry["wall_seconds"]
            texts.append(
                f"{part} {entry['wall_seconds'] / 3600:.2f} h ({len(seconds)} runs, {entry['jobs']} at a time, "
                f"{entry['threads']} thread(s) each; {sum(seconds) / 3600:.2f} h of run time{timed})"
            )
        else:  # the part's own wall time was not recorded (runs recorded by an interrupted part): their sum
            total += sum(seconds)
            texts.append(
                f"{part} {sum(seconds) / 3600:.2f} h of run time ({len(seconds)} runs; the part's wall time was not recorded)"
            )
    if "f1" in parts:  # the stability study: no training runs
        total += parts["f1"]["wall_seconds"]
        texts.append(f"f1 {parts['f1']['wall_seconds'] / 60:.1f} min (the stability study)")
    return [
        f"- Machine{'s' if len(machines) > 1 else ''}: {'; '.join(machines)}.",
        f"- Wall time (runs and their evaluations): {', '.join(texts) or 'nothing run yet'}; "
        f"total {total / 3600:.2f} h.",
    ]


def summary_line(verdicts):
    """The verdicts counted: the claims on all their seeds, then those of parts still running."""
    done = [v for v in verdicts if " so far " not in v]
    partial = [v.split(" so far ")[0] for v in verdicts if " so far " in v]

    def counted(values):
        return ", ".join(f"{v} {values.count(v)}" for v in sorted(set(values)))

    text = "Verdicts over every claim tested: " + (counted(done) or "none on all their seeds yet")
    return text + (f"; claims of parts still running, so far: {counted(partial)}." if partial else ".")


def caption_lines(finals):
    """Fig. 7a's second reward: B2-DiffuRL trained on the captioning reward; per seed its alignment at the
    budget minus the base model's (the same evaluation images), mean ± SE over seeds, and a verdict."""
    label, template = protocol.CAPTION_METHOD, protocol.MAIN_TEMPLATE
    rerun = f"{COMMAND} --part caption"
    if not finals.has(label, template):
        return [f"Training on the captioning reward: not run yet (`{rerun}`).", ""]
    lines = [
        f"Training on the captioning reward ({label}: `toy,toycaption`, B2-DiffuRL's picked learning rate): alignment "
        "(detector) at the budget minus the base model's, per seed on the same evaluation images; mean ± SE over seeds. The "
        "paper trains on BERTScore as on CLIPScore; here the claim is that the soft captioning score leads to exact captions.",
        "",
        "| Prompts | last - base | z | Verdict |",
        "|---|---|---|---|",
    ]
    for prompt_set in ("train", "test"):
        gains = {}
        for seed in finals.seeds:
            run_dir = finals.dir(label, template, seed)
            last, base = at_budget(run_dir, prompt_set, finals.budget), base_eval(run_dir, prompt_set)
            if last is not None and base is not None and last["reward_queries"] == finals.budget:
                gains[seed] = last["alignment_mean"] - base["alignment_mean"]
        mean, se, n = mean_se(gains.values())
        verdict = protocol.verdict_so_far(mean, se, n, len(finals.seeds)) if n else f"waits for `{rerun}`"
        z = f"{mean / se:+.1f}" if se else "-"
        lines.append(
            f"| {'training' if prompt_set == 'train' else 'held-out'} | {fmt_se(mean, se, n, 'alignment_mean', signed=True)} | {z} | **{verdict}** |"
        )
    return lines + [""]


def f1_lines(save_path, figures_dir, rel):
    """App. F.1: the stability study's numbers, the paired difference of the two rewards' unstable shares, the plot."""
    from b2diffurl import stability

    path = os.path.join(f1_dir(save_path), ledger.STABILITY)
    if not os.path.isfile(path):
        return [f"Not run yet: `{COMMAND} --part f1`.", ""]
    data = records.read_json(path)
    threshold = protocol.F1_THRESHOLD
    lines = [
        f"The paper (App. F.1, Fig. 12a): images that differ only in the last denoising step get scores more than "
        f"{threshold:g} apart far more often under BERTScore than under CLIPScore, so B2-DiffuRL trains on CLIPScore. Here: "
        f"{data['groups']} groups, each a prompt drawn from {protocol.MAIN_TEMPLATE}'s training list and sampled into {data['branches']} "
        f"branches that share all but the last {data['steps']} step(s), by the base model; every pair scored by both rewards.",
        "",
        rf"| Reward | pairs | mean \|difference\| | median | share above {threshold:g} |",
        "|---|---|---|---|---|",
    ]
    rewards = data["rewards"]
    for name, entry in rewards.items():
        lines.append(
            f"| {name} | {entry['pairs']} | {entry['mean']:.4f} | {entry['median']:.4f} | {entry['fraction_above']:.1%} |"
        )
    if len(rewards) == 2:
        (a, ea), (b, eb) = reversed(list(rewards.items()))  # captioning score first: the paper's direction is a - b > 0
        flags = [(x > threshold) - (y > threshold) for x, y in zip(ea["differences"], eb["differences"])]
        mean, se, n = mean_se(flags)
        verdict = protocol.verdict(mean, se, n)
        lines += [
            "",
            f"Share above {threshold:g}, {a} - {b}, paired over the same pairs: {fmt_se(mean, se, n, 'alignment_mean', signed=True)}"
            f" (z {mean / se:+.1f}): **{verdict}**."
            if se
            else f"Share above {threshold:g}, {a} - {b}: {mean:+.3f} (no spread): **{verdict}**.",
        ]
    os.makedirs(os.path.join(figures_dir, "f1"), exist_ok=True)
    stability.plot(os.path.join(figures_dir, "f1", "stability.png"), rewards, threshold, data["steps"])
    lines += ["", f"![App. F.1: score differences of near-identical pairs]({rel}/f1/stability.png)"]
    return lines + [""]


def protocol_lines(kind, rounds, eval_interval, seeds):
    budget = rounds * protocol.QUERIES_PER_ROUND
    methods = "; ".join(
        f"{m.label}: `toy{m.presets}`"
        + (f" with {', '.join(f'{k}={v}' for k, v in m.variables.items())}" if m.variables else "")
        for m in METHODS.values()
    )
    return [
        "Fixed in `b2diffurl/toyworld/protocol.py` before the final runs; restated here.",
        "",
        "- Model: the committed toy world (`b2diffurl/toyworld/model`); reward: its CLIP (CLIPScore), or for the caption part the "
        "captioning score (`toycaption`: the detector's caption against the prompt by BERTScore's recall), which every evaluation "
        "also reports (Fig. 7a's second panel); alignment: the colour-blob "
        "detector (`b2diffurl.toyworld.score`), which never saw the reward. Diversity: the per-prompt Inception Score and the "
        "background entropy (bits) of each prompt's images.",
        f"- Methods (config presets): {methods}. Every method scores {protocol.QUERIES_PER_ROUND} images a round, so equal rounds "
        "are equal reward queries (images scored by the reward in training).",
        f"- Learning rate: per method from the grid {', '.join(protocol.lr_text(lr) for lr in protocol.LR_GRID)}, picked by the mean "
        f"training-prompt alignment over the selection seeds {', '.join(map(str, protocol.SELECTION_SEEDS))} after {protocol.GRID_ROUNDS} rounds "
        "(ties to the smaller rate). Grid runs evaluate the training prompts only (`EvalSets=train`): the held-out list is never looked at "
        f"before the final runs. {protocol.CAPTION_METHOD} (part caption) has no grid of its own: it takes B2-DiffuRL's rate, as the "
        f"paper's BERTScore runs took the CLIPScore runs' settings. Fig. 5 on {', '.join(t for t in protocol.FIG5_TEMPLATES if t != protocol.MAIN_TEMPLATE)} uses the picks made on {protocol.MAIN_TEMPLATE}."
        + (" **Quick run:** the grid's picks when present, else the toy preset's rate." if kind == "quick" else ""),
        f"- {'Quick' if kind == 'quick' else 'Final'} runs: seeds {', '.join(map(str, seeds))} (run_process.sh's Seed = "
        f"{protocol.SEED_STRIDE} x seed; the same for every method, so differences are paired), {rounds} rounds = {budget} reward queries, "
        f"evaluated on fixed seeds (the same images' noise for every policy) every {eval_interval} rounds and after the last: both prompt sets "
        f"on {protocol.MAIN_TEMPLATE}, the training prompts only on {', '.join(t for t in protocol.FIG5_TEMPLATES if t != protocol.MAIN_TEMPLATE)} "
        f"(no claim reads their held-out prompts), {protocol.EVAL_IMAGES} images per set or 2 per prompt where that is more (the per-prompt "
        f"Inception Score needs 2: "
        + ", ".join(f"{t} {protocol.eval_images(t)}" for t in protocol.FIG5_TEMPLATES)
        + "); "
        "every number below is at the last round.",
        "- Statistics: a method's value is the mean ± SE over seeds; a claim is the paired difference A - B over the seeds both have, "
        f"SE = stdev of the per-seed differences / sqrt(n); z = difference / SE. Verdict: **reproduced** when z >= {protocol.Z_VERDICT:g} in "
        f"the paper's direction, **not reproduced** when z <= -{protocol.Z_VERDICT:g} (the opposite holds), **inconclusive** otherwise; "
        f'a claim with fewer seeds than planned (a part still running) says "so far (n of {len(protocol.FINAL_SEEDS)} seeds)".',
        f"- Stability: a run is unstable when its approx KL (progress.csv) exceeds {protocol.KL_LIMIT} in some round, or its final "
        "training-prompt alignment is below the base model's.",
    ]


def draw_figures(runs, out, budget):
    """python -m b2diffurl.figures on ``runs`` ([(label, run folder)]) into ``out``; its note lines."""
    specs = [f"{label}={path}" for label, path in runs if os.path.isdir(path)]
    if not specs:
        return []
    proc = subprocess.run(
        [sys.executable, "-m", "b2diffurl.figures", *specs, "--out", out, "--queries", str(budget)],
        cwd=REPO_ROOT,
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
    for root in ([os.path.dirname(docs)] if os.path.basename(docs) == "docs" else []) + [REPO_ROOT]:
        if os.path.abspath(save_path).startswith(os.path.join(root, "")):
            return os.path.relpath(save_path, root)
    return save_path


def write(save_path, out, figures_dir, quick=False):
    """Draw the figure sets from the runs under ``save_path`` (the record, or --quick's run folders) and
    write the report to ``out``; returns ``out``."""
    kind = "quick" if quick else "final"
    seeds = protocol.QUICK["seeds"] if quick else protocol.FINAL_SEEDS
    rounds = protocol.QUICK["rounds"] if quick else protocol.FINAL_ROUNDS
    interval = protocol.QUICK["eval_interval"] if quick else protocol.EVAL_INTERVAL
    finals = Finals(save_path, kind, seeds, rounds)
    drawn, notes = set(), []
    fig5_pair = FIGURE_SETS[f"fig5_{protocol.MAIN_TEMPLATE}"][0]
    for name, (labels, template) in FIGURE_SETS.items():
        runs = [
            (label, finals.dir(label, template, s)) for label in labels for s in seeds if finals.has(label, template)
        ]
        own = name.startswith("fig5_") or any(label not in fig5_pair for label, _ in runs)
        if runs and own:  # fig7 and fig8 are drawn once they hold a method of their own, not as copies of fig5
            notes += [
                f"{name}: {note[len('note: ') :]}"
                for note in draw_figures(runs, os.path.join(figures_dir, name), finals.budget)
            ]
            drawn.add(name)
    rel = os.path.relpath(figures_dir, os.path.dirname(out))
    title = "Quick check" if quick else "Results"
    command = f"{COMMAND} --quick" if quick else f"{COMMAND} --part all"
    parts = "" if quick else " (or its parts one by one: grid, then " + ", ".join(protocol.FINAL_PARTS) + ")"
    lines = [
        f"# {title}: the paper in miniature on the toy world",
        "",
        f"Written by `{command}`{parts}; every number comes from the "
        + ("run folders" if quick else "runs recorded (evaluations, progress and settings of each finished run)")
        + f" under `{shown_path(save_path, out)}`.",
        "",
        "## Protocol",
        "",
        *protocol_lines(kind, rounds, interval, seeds),
        "",
        "## Learning-rate grid",
        "",
        *grid_section(save_path),
    ]
    base_lines = []
    for template in protocol.FIG5_TEMPLATES:
        for prompt_set in ("train", "test"):
            value = finals.base(template, prompt_set, "alignment_mean")
            if value is not None:
                base_lines.append(
                    f"{template} {'training' if prompt_set == 'train' else 'held-out'} prompts {value:.1%}"
                )
    if base_lines:
        lines += ["Base model's alignment: " + ", ".join(base_lines) + ".", ""]
    all_verdicts = []
    for item in ("Fig. 5", "Fig. 7a", "Fig. 7b", "Fig. 8", "Table 1", "Table 2", "Table 3"):
        lines += [f"## {item}", ""]
        rows, verdicts = claim_rows(finals, [item])
        all_verdicts += verdicts
        if not rows:
            lines += [waiting_line(finals, item), ""]
            if item == "Fig. 7a" and not quick:
                lines += caption_lines(finals)
            continue
        lines += [*rows, ""]
        if item == "Fig. 7a" and not quick:
            lines += caption_lines(finals)
        images = [
            f"![{item}: {name}, {image}]({rel}/{name}/{image})"
            for name, image in ITEM_IMAGES.get(item, [])
            if name in drawn and os.path.isfile(os.path.join(figures_dir, name, image))
        ]
        lines += [*images, ""] if images else []
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
    discussion = ""
    if os.path.isfile(out):
        text = open(out).read()
        if DISCUSSION in text:
            discussion = text[text.index(DISCUSSION) :]
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n" + ("\n" + discussion if discussion else ""))
    print(f"wrote {out} and {figures_dir}/")
    return out
