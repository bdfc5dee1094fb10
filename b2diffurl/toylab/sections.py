"""The report's sections besides the claim tables: the learning-rate grid, stability, Fig. 7a's
training on the captioning reward and App. F.1's stability study, each from the recorded runs."""

import os

from b2diffurl import records
from b2diffurl.stats import mean_se
from b2diffurl.toylab import ledger, protocol
from b2diffurl.toylab.formats import COMMAND, fmt_se
from b2diffurl.toylab.ledger import f1_dir, grid_runs, read_picks
from b2diffurl.toylab.protocol import METHODS
from b2diffurl.toylab.verdicts import at_budget, base_eval, share, stability


def grid_section(save_path):
    budget = protocol.GRID_ROUNDS * protocol.QUERIES_PER_ROUND
    runs = grid_runs(save_path)
    if not any(os.path.isdir(run_dir) for *_, run_dir in runs):
        return ["Not run yet: `" + COMMAND + " --part grid`.", ""]
    picks = read_picks(save_path)
    lines = [
        f"Training-prompt alignment after {protocol.GRID_ROUNDS} rounds ({budget} reward queries), mean over the "
        f"selection seeds {', '.join(map(str, protocol.SELECTION_SEEDS))}; under it the unstable runs: approx KL > "
        f"{protocol.KL_LIMIT} in some round (KL) and final alignment below the base model's (below). **Bold**: the "
        "picked rate.",
        "",
        "| Method | " + " | ".join(protocol.lr_text(lr) for lr in protocol.LR_GRID) + " | picked |",
        "|---|" + "---|" * (len(protocol.LR_GRID) + 1),
    ]
    by_cell = {}
    for label, lr, _, run_dir in runs:
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
            text = (
                f"{sum(scores) / len(scores):.1%} (n={len(scores)})<br>"
                f"KL {share(f[0] for f in flags)}, below {share(f[1] for f in flags)}"
            )
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
        f"Final runs: approx KL above {protocol.KL_LIMIT} in some round (KL), final training-prompt alignment below "
        "the base model's (below).",
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


def caption_lines(finals):
    """Fig. 7a's second reward: B2-DiffuRL trained on the captioning reward; per seed its alignment at the
    budget minus the base model's (the same evaluation images), mean ± SE over seeds, and a verdict."""
    label, template = protocol.CAPTION_METHOD, protocol.MAIN_TEMPLATE
    rerun = f"{COMMAND} --part caption"
    if not finals.has(label, template):
        return [f"Training on the captioning reward: not run yet (`{rerun}`).", ""]
    lines = [
        f"Training on the captioning reward ({label}: `toy,toycaption`, B2-DiffuRL's picked learning rate): "
        "alignment (detector) at the budget minus the base model's, per seed on the same evaluation images; mean ± "
        "SE over seeds. The paper trains on BERTScore as on CLIPScore; here the claim is that the soft captioning "
        "score leads to exact captions.",
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
            f"| {'training' if prompt_set == 'train' else 'held-out'} | "
            f"{fmt_se(mean, se, n, 'alignment_mean', signed=True)} | {z} | **{verdict}** |"
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
        "The paper (App. F.1, Fig. 12a): images that differ only in the last denoising step get scores more than "
        f"{threshold:g} apart far more often under BERTScore than under CLIPScore, so B2-DiffuRL trains on "
        f"CLIPScore. Here: {data['groups']} groups, each a prompt drawn from {protocol.MAIN_TEMPLATE}'s training "
        f"list and sampled into {data['branches']} branches that share all but the last {data['steps']} step(s), by "
        "the base model; every pair scored by both rewards.",
        "",
        rf"| Reward | pairs | mean \|difference\| | median | share above {threshold:g} |",
        "|---|---|---|---|---|",
    ]
    rewards = data["rewards"]
    for name, entry in rewards.items():
        lines.append(
            f"| {name} | {entry['pairs']} | {entry['mean']:.4f} | {entry['median']:.4f} | "
            f"{entry['fraction_above']:.1%} |"
        )
    if len(rewards) == 2:
        (a, ea), (b, eb) = reversed(list(rewards.items()))  # captioning score first: the paper's direction is a - b > 0
        flags = [(x > threshold) - (y > threshold) for x, y in zip(ea["differences"], eb["differences"])]
        mean, se, n = mean_se(flags)
        verdict = protocol.verdict(mean, se, n)
        lines += [
            "",
            f"Share above {threshold:g}, {a} - {b}, paired over the same pairs: "
            f"{fmt_se(mean, se, n, 'alignment_mean', signed=True)} (z {mean / se:+.1f}): **{verdict}**."
            if se
            else f"Share above {threshold:g}, {a} - {b}: {mean:+.3f} (no spread): **{verdict}**.",
        ]
    os.makedirs(os.path.join(figures_dir, "f1"), exist_ok=True)
    stability.plot(os.path.join(figures_dir, "f1", "stability.png"), rewards, threshold, data["steps"])
    lines += ["", f"![App. F.1: score differences of near-identical pairs]({rel}/f1/stability.png)"]
    return lines + [""]
