"""What the report restates around its results: the protocol (from :mod:`b2diffurl.toylab.protocol`)
and the machines and wall times (from the record, :mod:`b2diffurl.toylab.ledger`)."""

import os

from b2diffurl.toylab import ledger, protocol
from b2diffurl.toylab.ledger import read_timings
from b2diffurl.toylab.protocol import METHODS


def protocol_lines(kind, rounds, eval_interval, seeds):
    budget = rounds * protocol.QUERIES_PER_ROUND
    methods = "; ".join(
        f"{m.label}: `toy{m.presets}`"
        + (f" with {', '.join(f'{k}={v}' for k, v in m.variables.items())}" if m.variables else "")
        for m in METHODS.values()
    )
    return [
        "Fixed in `b2diffurl/toylab/protocol.py` before the final runs; restated here.",
        "",
        "- Model: the committed toy world (`b2diffurl/toyworld/model`); reward: its CLIP (CLIPScore), or for the "
        "caption part the captioning score (`toycaption`: the detector's caption against the prompt by BERTScore's "
        "recall), which every evaluation also reports (Fig. 7a's second panel); alignment: the colour-blob "
        "detector (`b2diffurl.toyworld.score`), which never saw the reward. Diversity: the per-prompt Inception "
        "Score and the background entropy (bits) of each prompt's images.",
        f"- Methods (config presets): {methods}. Every method scores {protocol.QUERIES_PER_ROUND} images a round, "
        "so equal rounds are equal reward queries (images scored by the reward in training).",
        f"- Learning rate: per method from the grid {', '.join(protocol.lr_text(lr) for lr in protocol.LR_GRID)}, "
        "picked by the mean training-prompt alignment over the selection seeds "
        f"{', '.join(map(str, protocol.SELECTION_SEEDS))} after {protocol.GRID_ROUNDS} rounds (ties to the smaller "
        "rate). Grid runs evaluate the training prompts only (`EvalSets=train`): the held-out list is never looked "
        f"at before the final runs. {protocol.CAPTION_METHOD} (part caption) has no grid of its own: it takes "
        "B2-DiffuRL's rate, as the paper's BERTScore runs took the CLIPScore runs' settings. Fig. 5 on "
        f"{', '.join(t for t in protocol.FIG5_TEMPLATES if t != protocol.MAIN_TEMPLATE)} uses the picks made on "
        f"{protocol.MAIN_TEMPLATE}."
        + (" **Quick run:** the grid's picks when present, else the toy preset's rate." if kind == "quick" else ""),
        f"- {'Quick' if kind == 'quick' else 'Final'} runs: seeds {', '.join(map(str, seeds))} (run_process.sh's "
        f"Seed = {protocol.SEED_STRIDE} x seed; the same for every method, so differences are paired), {rounds} "
        f"rounds = {budget} reward queries, evaluated on fixed seeds (the same images' noise for every policy) every "
        f"{eval_interval} rounds and after the last: both prompt sets on {protocol.MAIN_TEMPLATE}, the training "
        f"prompts only on {', '.join(t for t in protocol.FIG5_TEMPLATES if t != protocol.MAIN_TEMPLATE)} (no claim "
        f"reads their held-out prompts), {protocol.EVAL_IMAGES} images per set or 2 per prompt where that is more "
        "(the per-prompt Inception Score needs 2: "
        + ", ".join(f"{t} {protocol.eval_images(t)}" for t in protocol.FIG5_TEMPLATES)
        + "); "
        "every number below is at the last round.",
        "- Statistics: a method's value is the mean ± SE over seeds; a claim is the paired difference A - B over "
        "the seeds both have, SE = stdev of the per-seed differences / sqrt(n); z = difference / SE. Verdict: "
        f"**reproduced** when z >= {protocol.Z_VERDICT:g} in the paper's direction, **not reproduced** when z <= "
        f"-{protocol.Z_VERDICT:g} (the opposite holds), **inconclusive** otherwise; a claim with fewer seeds than "
        f'planned (a part still running) says "so far (n of {len(protocol.FINAL_SEEDS)} seeds)".',
        f"- Stability: a run is unstable when its approx KL (progress.csv) exceeds {protocol.KL_LIMIT} in some "
        "round, or its final training-prompt alignment is below the base model's.",
    ]


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
                f"{part} {sum(seconds) / 3600:.2f} h of run time ({len(seconds)} runs; the part's wall time was not "
                "recorded)"
            )
    if "f1" in parts:  # the stability study: no training runs
        total += parts["f1"]["wall_seconds"]
        texts.append(f"f1 {parts['f1']['wall_seconds'] / 60:.1f} min (the stability study)")
    return [
        f"- Machine{'s' if len(machines) > 1 else ''}: {'; '.join(machines)}.",
        f"- Wall time (runs and their evaluations): {', '.join(texts) or 'nothing run yet'}; "
        f"total {total / 3600:.2f} h.",
    ]
