"""Stage 2: score the round's images, normalise per prompt, keep the contrastive pair of each branch group.

Normalisation (paper App. D.1): r_hat = (s - mean_p) / (std_p + 1e-8), mean and unbiased std over
the scores of prompt p in this round and the last ``eval.history_cnt`` rounds.
Selection (paper Eq. 5): in each branch group keep the best trajectory if its r_hat >= pos_threshold
and the worst if its r_hat < neg_threshold.

The score history lives on disk: each round's ``scores.json`` holds its own raw scores, and round r
reads those of the rounds before it, so rerunning a round never counts its scores twice.
"""

import os
import time

import torch

from b2diffurl import layout, records
from b2diffurl.errors import NonFiniteError, RecordError
from b2diffurl.layout import earlier_round_names, round_index
from b2diffurl.perf import stage_memory
from b2diffurl.summaries import SelectSummary, read_summary

STAGE = "select"
STD_EPS = 1e-8


def normalize_scores(scores, prompts, history):
    """Per-prompt normalised scores.

    scores: float Tensor[N] (this round); prompts: list of N strings; history: list (oldest first)
    of earlier rounds, each a dict prompt -> list of raw scores (only the entries passed are used).
    Returns float Tensor[N]: (s - mean_p) / (std_p + 1e-8), mean and unbiased std (as torch.std) over
    the history's and this round's scores of the same prompt. A prompt seen once has std 0 (r_hat = 0).
    """
    names = sorted(set(prompts))
    index = {p: i for i, p in enumerate(names)}
    current = scores.to(torch.float64)
    prompt_idx = torch.tensor([index[p] for p in prompts], dtype=torch.long)  # [N]
    past = [(index[p], s) for rnd in history for p, values in rnd.items() if p in index for s in values]
    all_idx = torch.cat([prompt_idx, torch.tensor([i for i, _ in past], dtype=torch.long)])
    all_values = torch.cat([current, torch.tensor([s for _, s in past], dtype=torch.float64)])
    zeros = torch.zeros(len(names), dtype=torch.float64)
    count = zeros.index_add(0, all_idx, torch.ones_like(all_values))  # [P]
    mean = zeros.index_add(0, all_idx, all_values) / count
    sq_dev = zeros.index_add(0, all_idx, (all_values - mean[all_idx]) ** 2)
    std = torch.where(count > 1, (sq_dev / (count - 1).clamp(min=1)).sqrt(), zeros)
    return ((current - mean[prompt_idx]) / (std[prompt_idx] + STD_EPS)).to(scores.dtype)


def _group_extreme(values, inverse, n_groups, largest):
    """Index of each group's max (or min) value, ties to the lowest index. values, inverse: [N] -> [G]."""
    fill = float("-inf") if largest else float("inf")
    extreme = torch.full((n_groups,), fill, dtype=values.dtype).scatter_reduce(
        0, inverse, values, reduce="amax" if largest else "amin"
    )
    n = values.shape[0]
    positions = torch.arange(n)
    candidates = torch.where(values == extreme[inverse], positions, torch.full_like(positions, n))
    return torch.full((n_groups,), n, dtype=torch.long).scatter_reduce(0, inverse, candidates, reduce="amin")


def select_pairs(normalised, group_ids, pos_threshold, neg_threshold):
    """Sorted indices (LongTensor) of the kept trajectories.

    normalised: float Tensor[N]; group_ids: int Tensor[N], equal within a branch group (any values,
    any order). Per group: the argmax if its value >= pos_threshold, the argmin if its value <
    neg_threshold; 0, 1 or 2 per group, a group of one gives its member at most once. Ties go to the
    lowest index. pos = -inf, neg = +inf keeps every group's argmax and argmin (DDPO mode).
    """
    _, inverse = torch.unique(group_ids, return_inverse=True)
    n_groups = int(inverse.max()) + 1 if len(inverse) else 0
    best = _group_extreme(normalised, inverse, n_groups, largest=True)  # [G]
    worst = _group_extreme(normalised, inverse, n_groups, largest=False)
    keep = torch.cat([best[normalised[best] >= pos_threshold], worst[normalised[worst] < neg_threshold]])
    return torch.unique(keep)  # sorted, a group of one at most once


# ---------------------------------------------------------------- the stage


def history_rounds(exp_dir, run_name, history_cnt):
    """Folders of the ``history_cnt`` rounds before ``run_name`` (fewer for the first rounds), oldest first.

    Every one of them must have finished its selection: a missing one would silently shorten the
    history and change this round's normalisation, so it is an error naming the round and the fix.
    """
    _, r = round_index(run_name)
    wanted = earlier_round_names(exp_dir, run_name, history_cnt)
    for i, name in zip(range(max(0, r - history_cnt), r), wanted):
        folder = os.path.join(exp_dir, name)
        if not records.is_done(folder, STAGE):
            raise RecordError(
                f"{layout.marker_path(folder, STAGE)} is missing, so {run_name}'s normalisation would use a shorter "
                f"history than eval.history_cnt={history_cnt}: finish {name} first (run_process.sh does; or "
                "run_select.py "
                f"--config.run_name {name}), or lower eval.history_cnt (History_Cnt) to {r - 1 - i}"
            )
    return [os.path.join(exp_dir, name) for name in wanted]


def scores_by_prompt(scores_json):
    """{prompt: [raw scores]} of one round's scores.json."""
    by_prompt = {}
    for prompt, score in zip(scores_json["prompts"], scores_json["scores"]):
        by_prompt.setdefault(prompt, []).append(score)
    return by_prompt


def check_rewards(scores, config, round_dir):
    """A NaN/inf reward stops the round, naming the images it came from. scores: [N]."""
    bad = (~torch.isfinite(scores)).nonzero().flatten().tolist()
    if bad:
        names = ", ".join(records.image_name(i) for i in bad[:5]) + (
            f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        )
        raise NonFiniteError(
            f"select {config.run_name}: reward {config.reward.name!r} gave NaN/inf for {len(bad)} of {len(scores)} "
            "images "
            f"({names} in {round_dir}); nothing was saved: check the reward model and those images"
        )


def select_round(config, reward, round_dir, exp_dir, load_seconds=0.0):
    """Score, normalise and select; writes scores.json and selected.safetensors, then the marker.

    Every file read is verified against the marker of the stage that wrote it (this round's
    sample.done, the history rounds' select.done) before it is used.
    """
    started = time.time()
    history_dirs = history_rounds(exp_dir, os.path.basename(round_dir), config.eval.history_cnt)
    history = [scores_by_prompt(records.read_verified_json(d, STAGE, "scores.json")) for d in history_dirs]
    marker = records.read_marker(round_dir, "sample")
    manifest, trajectories = records.load_samples(round_dir, marker)
    prompts = records.read_verified_json(round_dir, "sample", "prompts.json", marker)
    scores = reward(records.load_images(round_dir, len(prompts), marker), prompts)  # [N]
    check_rewards(scores, config, round_dir)
    normalised = normalize_scores(scores, prompts, history)
    keep = select_pairs(normalised, trajectories.group_ids, config.eval.pos_threshold, config.eval.neg_threshold)

    tmp = layout.stage_tmp_dir(round_dir, STAGE)
    os.makedirs(tmp, exist_ok=True)
    files = {
        "scores.json": records.write_json(
            os.path.join(tmp, "scores.json"),
            {
                "format_version": records.FORMAT_VERSION,
                "reward": config.reward.name,
                "prompts": prompts,
                "scores": scores.tolist(),
                "normalised": normalised.tolist(),
                "selected": keep.tolist(),
                "history_rounds": [os.path.basename(d) for d in history_dirs],
                # what the reward read off each image, when it reads something (bertscore: its captions)
                **(reward.record() if hasattr(reward, "record") else {}),
            },
        ),
        "selected.safetensors": records.save_trajectories(
            os.path.join(tmp, "selected.safetensors"),
            trajectories.select(keep),
            {"round": os.path.basename(round_dir), "interval_timesteps": manifest["interval_timesteps"]},
            extra={"indices": keep, "scores": scores[keep], "normalised": normalised[keep]},
        ),
    }
    summary = SelectSummary(
        trajectories=len(prompts),
        selected=len(keep),
        reward_mean=scores.mean().item(),
        reward_std=scores.std().item() if len(scores) > 1 else 0.0,
        # a combined reward (clipscore+bertscore): each component's mean raw score
        reward_components=reward.component_means() if hasattr(reward, "component_means") else None,
        history_rounds=len(history_dirs),
        seconds=round(time.time() - started, 2),
        load_seconds=round(load_seconds, 2),
        bytes_written=records.files_nbytes(tmp, files),
        extra=stage_memory(),
    )
    return read_summary(records.finish_stage(round_dir, STAGE, summary.record(), files, config), STAGE)
