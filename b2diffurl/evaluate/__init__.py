"""Evaluation of a run's policies: CLIPScore, CLIP Inception Scores, reward queries, an image grid.

    python -m b2diffurl.evaluate --config config/stage_process.py --config.exp_name X --rounds base,9,19
    accelerate launch --multi_gpu --num_processes 8 -m b2diffurl.evaluate --config ... --rounds all

For the base model (``base``) and each requested round's LoRA, and for each prompt set of
``evaluate.prompt_sets`` (``train``: the training prompt list, what the paper's Figs. 5/7/8 and Tables
1-2 are drawn from; ``test``: the template's held-out list, its Table 3), samples
``evaluate.num_images`` images spread over the set's prompts (prompt i of P gets num_images // P, the
first num_images % P one more) with full DDIM (``sample.num_steps`` steps, eta, CFG as in training, no
branching) and fixed seeds: the set's (prompt, image) list is cut into batches of
``evaluate.batch_size`` and batch b draws its noise from (``evaluate.seed``, b), so every policy is
judged on the same noise. Batches are sharded over processes. The main process then writes
``<round>/eval/<set>.json`` (``base/eval/...`` for the base model; the JSON is written last and is
the evaluation's marker) and ``<set>_grid.png`` (prompts x seeds). A finished evaluation whose LoRA
and settings are unchanged is skipped.

The JSON holds ``clipscore_mean`` / ``clipscore_sem`` / ``clipscore_std`` (CLIPScore with the reward's
open_clip model over all images; standard error = sample std / sqrt(images)), the Inception Score
two ways (b2diffurl.metrics: CLIP zero-shot over the ImageNet-1k names): ``inception_score_per_prompt``
(+ ``_sem`` over prompts: each prompt's images alone, the diversity *within* a prompt that the paper's
values near 1 measure) and ``inception_score`` (pooled over all images, ``evaluate.is_splits`` chunks),
``reward_queries`` (training images the run had scored up to and including that round, all ranks: the
x axis of the paper's Fig. 5; evaluation images are not counted), per-prompt means, the training
reward on the same images when it is not CLIPScore, and the method (algorithm, branching, BPT
schedule). CLIP scores without TF32 (b2diffurl.tf32); the UNet samples as ``allow_tf32`` says.

The modules: :mod:`~b2diffurl.evaluate.plan` (what to evaluate: ``--rounds``, the settings, the method),
:mod:`~b2diffurl.evaluate.sampling` (the images), :mod:`~b2diffurl.evaluate.judge` (the numbers),
:mod:`~b2diffurl.evaluate.grid` (the grid), :mod:`~b2diffurl.evaluate.policy` (one policy's evaluation
and when it is still current) and ``__main__`` (the command, whose flags exist only when it runs).
"""

from b2diffurl.evaluate.grid import GRID_SEEDS, image_grid, policy_grid
from b2diffurl.evaluate.judge import CHECKED, Judge, check_finite, per_prompt_means
from b2diffurl.evaluate.plan import (
    FORMAT_VERSION,
    method_of,
    metric_names,
    parse_rounds,
    reward_queries,
    settings,
    template_name,
    trained_rounds,
)
from b2diffurl.evaluate.policy import evaluate_policy, is_current, lora_sha256, run_of, summary_line
from b2diffurl.evaluate.sampling import (
    eval_batches,
    images_per_prompt,
    item_prompt_ids,
    item_prompts,
    sample_batches,
    sample_images,
)

__all__ = [
    "CHECKED",
    "FORMAT_VERSION",
    "GRID_SEEDS",
    "Judge",
    "check_finite",
    "eval_batches",
    "evaluate_policy",
    "image_grid",
    "images_per_prompt",
    "is_current",
    "item_prompt_ids",
    "item_prompts",
    "lora_sha256",
    "method_of",
    "metric_names",
    "parse_rounds",
    "per_prompt_means",
    "policy_grid",
    "reward_queries",
    "run_of",
    "sample_batches",
    "sample_images",
    "settings",
    "summary_line",
    "template_name",
    "trained_rounds",
]
