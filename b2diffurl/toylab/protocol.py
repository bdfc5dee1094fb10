"""The toy-world benchmark's protocol, fixed before any final run: methods, learning-rate grid,
selection rule, seeds, budgets, claims and the verdict rule. ``python -m b2diffurl.toyworld benchmark``
runs it (b2diffurl.toylab.benchmark) and docs/RESULTS.md restates it from the values here.

Every method scores the same number of images per round (:data:`QUERIES_PER_ROUND`), so equal rounds
are equal reward queries (images scored by the reward in training, all rounds). The paper leaves the
toy world open; the choices made here, each next to its setting:

- Learning rate: per method, picked from :data:`LR_GRID` by the mean alignment on the *training*
  prompts (the detector, never the held-out list) of :data:`SELECTION_SEEDS` after
  :data:`GRID_ROUNDS` rounds; ties go to the smaller rate. Grid runs evaluate the training prompts
  only (``EvalSets=train``), so the held-out list is not looked at before the final runs.
- Final runs: :data:`FINAL_SEEDS` (disjoint from the selection seeds), :data:`FINAL_ROUNDS` rounds,
  evaluated every :data:`EVAL_INTERVAL` rounds and after the last on :data:`EVAL_IMAGES` images per
  prompt set (grid runs too, on the training prompts). :func:`eval_sets`: both prompt sets on
  :data:`MAIN_TEMPLATE`, the training prompts only on Fig. 5's other templates (no claim reads their
  held-out prompts). :func:`eval_images`: at least 2 images per prompt, which the per-prompt
  Inception Score needs (toy3's 280 training prompts: 560 images). Both were set before any final
  run on those templates.
- Paired differences: method A and method B of a claim run with the same run seeds and are evaluated
  on the same fixed evaluation seeds; the difference is taken per seed and its standard error is over
  seeds (n = number of seeds).
- Verdict: "reproduced" when the difference has the paper's sign and is at least :data:`Z_VERDICT`
  standard errors from 0; "not reproduced" when it is at least that far on the other side (the
  opposite holds); "inconclusive" otherwise (or with fewer than 2 seeds). While a claim has fewer
  seeds than planned (a part still running), its verdict says so: "reproduced so far (2 of 5 seeds)".
- Stability: a run is unstable when its approx KL (progress.csv, mean over the round's optimizer
  steps) exceeds :data:`KL_LIMIT` in any round, or its final training-prompt alignment is below the
  base model's.
"""

import json
import re
from dataclasses import dataclass, field

from b2diffurl import configs

BATCH_SIZE = 8  # prompts per sampling batch (the toy preset's)
BRANCHES = 3  # B2-DiffuRL's split_time
# 96: 4 batches x 8 prompts x 3 branches. Every method sets its BatchCnt from it: the toy preset's own
# 8 batches (192 a round, the quick start's) would double the branched methods' budget
QUERIES_PER_ROUND = 4 * BATCH_SIZE * BRANCHES
LR_GRID = (5e-4, 1e-3, 2e-3, 5e-3)
SELECTION_SEEDS = (101, 102)
GRID_ROUNDS = 6
FINAL_SEEDS = (1, 2, 3, 4, 5)
FINAL_ROUNDS = 10
EVAL_INTERVAL = 2
# images per prompt set and evaluation (EvalImages): 160 = 16 per held-out prompt, 4-5 per training prompt;
# the claims' standard errors are over seeds, so fewer images per evaluation cost little power and
# halve the evaluation time (measured in docs/TOYWORLD.md)
EVAL_IMAGES = 160
KL_LIMIT = 0.01
Z_VERDICT = 2.0
# run_process.sh's Seed of benchmark seed s (round r uses Seed + r: seeds this far apart share no round seed)
SEED_STRIDE = 1000
# toy templates where the reward ranks a right caption first for most rendered images (quality.json's
# clip_top1_rendered: see docs/TOYWORLD.md); toy3 joined once its reward was retrained with mirrored
# relations (before any final run): the base model is weakest there, toy1 leaves it little headroom
FIG5_TEMPLATES = ("toy2", "toy3", "toy1")
MAIN_TEMPLATE = "toy2"  # the grid, Fig. 7, Fig. 8 and Tables 1-3


# B2-DiffuRL trained on the toy captioning reward (b2diffurl.rewards.toycaption), BERTScore's stand-in
CAPTION_METHOD = "B2-DiffuRL (caption reward)"
# App. F.1: the stability study (python -m b2diffurl.stability) on the base model, MAIN_TEMPLATE's training
# prompts: groups of 2 branches differing only in the last F1_STEPS steps, F1_GROUPS groups, the paper's threshold
F1_STEPS, F1_GROUPS, F1_THRESHOLD = 1, 256, 0.01
F1_REWARDS = ("clipscore", "toycaption")


@dataclass(frozen=True)
class Method:
    """One method of the benchmark: config presets after ``toy`` and run_process.sh variables that
    give it :data:`QUERIES_PER_ROUND` trajectories a round."""

    label: str
    presets: str  # appended to "config/stage_process.py:toy"
    variables: dict = field(default_factory=dict)
    paper: str = ""  # what the paper calls it

    @property
    def slug(self):
        """The label as a folder name: "B2-DiffuRL+PG" -> "b2_diffurl_pg"."""
        return re.sub(r"[^a-z0-9]+", "_", self.label.lower()).strip("_")


def _vanilla(presets, split_time=1):
    """A baseline without branching or BPT (the ddpo preset): as many batches as B2-DiffuRL's queries
    need, 4 accumulation steps like the toy preset (the ddpo preset's 128 would make one update a round)."""
    return presets, {"BatchCnt": QUERIES_PER_ROUND // (BATCH_SIZE * split_time), "AccStep": 4}


def _branched(presets):
    """B2-DiffuRL with one of its algorithms: the batches that give QUERIES_PER_ROUND with 3 branches."""
    return presets, {"BatchCnt": QUERIES_PER_ROUND // (BATCH_SIZE * BRANCHES)}


METHODS = {
    m.label: m
    for m in (
        Method("B2-DiffuRL", *_branched(""), "B2-DiffuRL (PPO, BPT + BS)"),
        Method("DDPO", *_vanilla(",ddpo"), "DDPO"),
        Method("BPT-only", ",bpt_only", {"BatchCnt": QUERIES_PER_ROUND // BATCH_SIZE}, "BPT only (Fig. 7)"),
        Method("PG", *_vanilla(",ddpo,pg"), "vanilla PG"),
        Method("B2-DiffuRL+PG", *_branched(",pg"), "Ours + PG"),
        Method("DPOK", *_vanilla(",ddpo,dpok"), "vanilla DPOK"),
        Method("B2-DiffuRL+DPOK", *_branched(",dpok"), "Ours + DPOK"),
        Method("DPO", *_vanilla(",ddpo,dpo", split_time=2), "vanilla DPO (pairs sharing x_T)"),
        Method("B2-DiffuRL+DPO", *_branched(",dpo"), "Ours + DPO"),
        Method(CAPTION_METHOD, *_branched(",toycaption"), "B2-DiffuRL on BERTScore (Fig. 7a)"),
    )
}
# methods with a learning rate of their own from the grid; the captioning-reward run takes B2-DiffuRL's
# (it plays the paper's BERTScore run, which used the CLIPScore run's settings): LR_FROM
GRID_METHODS = tuple(label for label in METHODS if label != CAPTION_METHOD)
LR_FROM = {CAPTION_METHOD: "B2-DiffuRL"}
# Fig. 8 / Table 2: (algorithm, vanilla method, with B2-DiffuRL); PPO's pair is DDPO / B2-DiffuRL
ALGORITHM_PAIRS = (
    ("PPO", "DDPO", "B2-DiffuRL"),
    ("PG", "PG", "B2-DiffuRL+PG"),
    ("DPOK", "DPOK", "B2-DiffuRL+DPOK"),
    ("DPO", "DPO", "B2-DiffuRL+DPO"),
)


@dataclass(frozen=True)
class Claim:
    """A claim of the paper tested as the paired difference ``a - b`` of ``metric`` on ``prompt_set``."""

    item: str  # "Fig. 5", "Table 3", ...
    text: str
    metric: (
        str  # a key of eval/<set>.json: alignment_mean, clipscore_mean, inception_score_per_prompt, background_entropy
    )
    prompt_set: str
    a: str  # method labels
    b: str
    template: str = MAIN_TEMPLATE
    sign: int = 1  # the paper's direction of a - b


METRIC_NAMES = {
    "alignment_mean": "alignment (detector)",
    "clipscore_mean": "CLIPScore (reward)",
    "inception_score_per_prompt": "per-prompt IS",
    "background_entropy": "background entropy (bits)",
    "toycaption_mean": "captioning score (BERTScore's stand-in)",
}
PERCENT = {"alignment_mean"}


def claims():
    """Every claim the benchmark tests, by paper item, in the order of docs/RESULTS.md."""
    out = []
    for template in FIG5_TEMPLATES:
        for metric in ("alignment_mean", "clipscore_mean"):
            out.append(
                Claim(
                    "Fig. 5",
                    "B2-DiffuRL aligns better than DDPO at equal reward queries",
                    metric,
                    "train",
                    "B2-DiffuRL",
                    "DDPO",
                    template,
                )
            )
    out += [
        Claim("Fig. 7a", "B2-DiffuRL (BPT + BS) beats BPT alone", "alignment_mean", "train", "B2-DiffuRL", "BPT-only"),
        Claim("Fig. 7a", "BPT alone beats DDPO", "alignment_mean", "train", "BPT-only", "DDPO"),
        # Fig. 7a's second panel: the same runs (trained on CLIPScore) judged by the captioning score
        Claim("Fig. 7a", "B2-DiffuRL (BPT + BS) beats BPT alone", "toycaption_mean", "train", "B2-DiffuRL", "BPT-only"),
        Claim("Fig. 7a", "BPT alone beats DDPO", "toycaption_mean", "train", "BPT-only", "DDPO"),
        Claim(
            "Fig. 7b",
            "B2-DiffuRL keeps more diversity than DDPO",
            "inception_score_per_prompt",
            "train",
            "B2-DiffuRL",
            "DDPO",
        ),
        Claim(
            "Fig. 7b", "B2-DiffuRL keeps more diversity than DDPO", "background_entropy", "train", "B2-DiffuRL", "DDPO"
        ),
    ]
    for algorithm, vanilla, ours in ALGORITHM_PAIRS[1:]:
        out.append(
            Claim("Fig. 8", f"B2-DiffuRL improves {algorithm}'s alignment", "alignment_mean", "train", ours, vanilla)
        )
    for algorithm, vanilla, ours in ALGORITHM_PAIRS:
        out.append(
            Claim(
                "Table 2",
                f"B2-DiffuRL keeps {algorithm}'s diversity",
                "inception_score_per_prompt",
                "train",
                ours,
                vanilla,
            )
        )
    for metric in ("inception_score_per_prompt", "background_entropy"):
        for other in ("DDPO", "BPT-only"):
            out.append(
                Claim(
                    "Table 1",
                    f"B2-DiffuRL's images are more diverse than {other}'s",
                    metric,
                    "train",
                    "B2-DiffuRL",
                    other,
                )
            )
    for metric in ("alignment_mean", "clipscore_mean"):
        out.append(
            Claim(
                "Table 3",
                "B2-DiffuRL generalises better than DDPO to held-out prompts",
                metric,
                "test",
                "B2-DiffuRL",
                "DDPO",
            )
        )
    return out


@dataclass(frozen=True)
class Part:
    """A part of the benchmark that runs on its own: which methods on which templates."""

    name: str
    title: str
    runs: tuple  # ((method label, template), ...)


PARTS = {
    p.name: p
    for p in (
        Part(
            "grid",
            "learning-rate grid (selection seeds, training prompts only)",
            tuple((label, MAIN_TEMPLATE) for label in GRID_METHODS),
        ),
        Part(
            "fig5",
            "Fig. 5 and Table 3: B2-DiffuRL vs DDPO",
            tuple((label, t) for t in FIG5_TEMPLATES for label in ("B2-DiffuRL", "DDPO")),
        ),
        Part("fig7", "Fig. 7 and Table 1: BPT-only (with fig5's B2-DiffuRL and DDPO)", (("BPT-only", MAIN_TEMPLATE),)),
        Part(
            "fig8",
            "Fig. 8 and Table 2: PG, DPOK and DPO, vanilla and with B2-DiffuRL",
            tuple(
                (label, MAIN_TEMPLATE)
                for label in ("PG", "B2-DiffuRL+PG", "DPOK", "B2-DiffuRL+DPOK", "DPO", "B2-DiffuRL+DPO")
            ),
        ),
        Part(
            "caption",
            "Fig. 7a's second reward: B2-DiffuRL trained on the captioning reward",
            ((CAPTION_METHOD, MAIN_TEMPLATE),),
        ),
        Part("f1", "App. F.1: reward stability on near-identical images (the base model; no training)", ()),
    )
}
FINAL_PARTS = ("fig5", "fig7", "fig8", "caption", "f1")
# --quick: the pipeline end to end in a short run (B2-DiffuRL vs DDPO, 2 seeds, 4 rounds; its time: docs/TOYWORLD.md)
QUICK = {"methods": ("B2-DiffuRL", "DDPO"), "seeds": (1, 2), "rounds": 4, "eval_interval": 2}


def prompt_file(template, split="train"):
    return f"prompts/{template}_{split}.json"


def eval_sets(template):
    """EvalSets of a final run on ``template``: the held-out prompts are read only on MAIN_TEMPLATE
    (Table 3, Fig. 7 and 8); Fig. 5's other templates compare alignment on the training prompts."""
    return "train,test" if template == MAIN_TEMPLATE else "train"


def eval_images(template):
    """EvalImages of a run on ``template``: EVAL_IMAGES, or 2 per prompt of its largest evaluated
    set where that is more (the per-prompt Inception Score needs 2 images of each prompt)."""
    counts = []
    for split in eval_sets(template).split(","):
        with open(configs.repo_path(prompt_file(template, split))) as f:
            counts.append(len(json.load(f)))
    return max(EVAL_IMAGES, 2 * max(counts))


def lr_text(lr):
    return f"{lr:.0e}".replace("e-0", "e-")


def verdict(mean, se, n, sign=1):
    """The one-word verdict of a paired difference (see the module's docstring)."""
    if n < 2 or se is None:
        return "inconclusive (n < 2)"
    if se == 0:
        return "reproduced" if mean * sign > 0 else ("not reproduced" if mean * sign < 0 else "inconclusive")
    z = mean * sign / se
    if z >= Z_VERDICT:
        return "reproduced"
    if z <= -Z_VERDICT:
        return "not reproduced"
    return "inconclusive"


def verdict_so_far(mean, se, n, planned, sign=1):
    """:func:`verdict` of ``n`` seeds, marked as partial while ``n`` is below the ``planned`` seeds."""
    text = verdict(mean, se, n, sign)
    return f"{text.split(' (')[0]} so far ({n} of {planned} seeds)" if n < planned else text
