"""App. F.1, the reward-stability study: do near-identical images get near-identical scores?

    python -m b2diffurl.stability --config config/stage_process.py:tiny,bertscore --config.exp_name stab
    python -m b2diffurl.stability --config config/stage_process.py --config.exp_name X \
        --config.resume_from model/lora/X/round_009/lora --steps 1 --groups 256 --rewards clipscore,bertscore

Samples ``--groups`` prompts of the config's prompt list, each into ``--branches`` images that share
their whole DDIM trajectory except the last ``--steps`` denoising steps (the round's branch sampler
with ``split_step = steps``, ``split_time = branches``; the policy is the base model, or the LoRA of
``config.resume_from``), into ``<save_path>/<exp_name>/stability_k<steps>/`` (a round folder: a rerun
reuses the images). Every image is scored by each reward of ``--rewards`` (their settings are the
config's ``reward.*``), and the absolute score difference of every pair of one group is taken. The
paper calls a reward unstable when such pairs differ by more than 0.01 (``--threshold``) and
reports BERTScore as the less stable one (App. F.1, Fig. 12a), which is why it trains on CLIPScore.

Writes in that folder ``stability.json`` (per reward: each image's score, each pair's difference,
their mean, median and the fraction above the threshold) and ``stability.png`` (Fig. 12a: the
distribution of the differences under each reward, the threshold marked), and prints one line per
reward.
"""

import math
import os

from b2diffurl import cli, layout

FLAGS = None  # defined when run as a command (define_flags), so that importing the pure functions defines no flags


def define_flags():
    global FLAGS
    FLAGS = cli.define_config_flag(
        "The run's configuration (model, LoRA in resume_from, prompts, sampling, reward settings)."
    )
    cli.flags.DEFINE_integer(
        "steps", 1, "the branches of a group differ only in the last STEPS denoising steps (1 = the last one)"
    )
    cli.flags.DEFINE_integer("groups", 64, "prompts sampled (rounded up to whole batches of sample.batch_size)")
    cli.flags.DEFINE_integer("branches", 2, "images per group (every pair of a group is compared)")
    cli.flags.DEFINE_string("rewards", "clipscore,bertscore", "the rewards compared, comma-separated reward names")
    cli.flags.DEFINE_float("threshold", 0.01, "the difference above which a pair counts as unstable (the paper's 0.01)")


RESULT = "stability.json"
FIGURE = "stability.png"


def pair_differences(scores, group_ids):
    """|s_i - s_j| for every pair i < j of one group, groups in order of their ids.

    scores: float Tensor [N]; group_ids: int Tensor [N], every group the same size B -> Tensor [G * B (B - 1) / 2].
    """
    import torch

    order = torch.sort(group_ids, stable=True).indices  # [N], group-major
    _, counts = torch.unique_consecutive(group_ids[order], return_counts=True)
    if not len(counts) or (counts != counts[0]).any():
        raise ValueError(f"every group needs the same number of images, got sizes {sorted(set(counts.tolist()))}")
    grouped = scores[order].view(len(counts), int(counts[0]))  # [G, B]
    i, j = torch.triu_indices(grouped.shape[1], grouped.shape[1], offset=1)  # [P] each, P = B (B - 1) / 2
    return (grouped[:, i] - grouped[:, j]).abs().reshape(-1)  # [G * P]


def summarise(differences, threshold):
    """{"pairs", "mean", "median", "fraction_above", "threshold"} of a Tensor [P] of differences."""
    return {
        "pairs": len(differences),
        "mean": differences.double().mean().item(),
        "median": differences.double().median().item(),
        "fraction_above": (differences > threshold).double().mean().item(),
        "threshold": threshold,
    }


def check_scores(name, scores):
    """NonFiniteError (one line, exit 3) when a reward gave some image [N] a NaN or infinite score."""
    import torch

    bad = int((~torch.isfinite(scores)).sum())
    if bad:
        from b2diffurl.errors import NonFiniteError

        raise NonFiniteError(
            f"stability: the reward {name} gave {bad} of {len(scores)} images a non-finite score "
            f"(the first: image {int((~torch.isfinite(scores)).nonzero()[0])}): check the reward model"
        )


def plot(path, results, threshold, steps):
    """Fig. 12a: one panel per reward, the histogram of |score difference| over pairs (log-spaced bins
    from the smallest non-zero difference), the threshold as a dashed line."""
    import numpy as np
    from matplotlib.ticker import NullFormatter

    from b2diffurl.figures.curves import new_figure

    names = list(results)
    fig, axes = new_figure(4.4 * len(names), 3.6, panels=len(names))
    for ax, name in zip(axes if len(names) > 1 else [axes], names):
        diffs = np.asarray(results[name]["differences"], dtype=np.float64)
        positive = diffs[diffs > 0]
        low = min(positive.min() if len(positive) else threshold, threshold) / 2
        high = max(diffs.max() if len(diffs) else threshold, threshold) * 2
        bins = np.geomspace(low, high, 30)
        ax.hist(np.clip(diffs, low, None), bins=bins, color="C0")
        ax.axvline(
            threshold,
            color="C3",
            linestyle="--",
            label=f"{threshold:g}: {results[name]['fraction_above']:.0%} of pairs above",
        )
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        zeros = int((diffs == 0).sum())
        ax.set_title(
            f"{name}: {results[name]['pairs']} pairs" + (f" ({zeros} equal: first bin)" if zeros else ""),
            fontsize="medium",
        )
        ax.set_xlabel(f"|score difference| (the last {steps} step(s) differ)")
        ax.set_ylabel("pairs")
        ax.legend(fontsize="small")
    fig.savefig(path)


def check(config, rewards, steps, branches, groups):
    """One line per problem with the flags, before any model loads (the config's own checks follow in
    the sampling stage; a reward's own settings when it loads)."""
    from b2diffurl.checks import REWARD_NAMES, Checker

    c = Checker(config)
    c.require(
        rewards and all(n in REWARD_NAMES for n in rewards),
        "--rewards",
        ",".join(rewards),
        f"must name rewards from {list(REWARD_NAMES)}, comma-separated",
    )
    c.require(
        1 <= steps <= config.sample.num_steps,
        "--steps",
        steps,
        f"must be 1..{config.sample.num_steps} (sample.num_steps)",
    )
    c.require(branches >= 2, "--branches", branches, "must be at least 2 (the pairs of one group are compared)")
    c.require(groups >= 1, "--groups", groups, "must be at least 1")
    c.raise_first()


def main(_):
    from b2diffurl import records, stages

    config = FLAGS.config
    rewards = [n.strip() for n in FLAGS.rewards.split(",") if n.strip()]
    check(config, rewards, FLAGS.steps, FLAGS.branches, FLAGS.groups)
    # the study's own round folder, sampled by the round's branch sampler: k = steps, B branches, whole batches
    config.run_name = f"stability_k{FLAGS.steps}"
    config.split_step = FLAGS.steps
    config.split_time = FLAGS.branches
    config.process.split_step_left = min(config.process.split_step_left, FLAGS.steps)
    config.process.split_step_right = max(config.process.split_step_right, FLAGS.steps + 1)
    config.sample.num_batches_per_epoch = math.ceil(FLAGS.groups / config.sample.batch_size)
    config.eval.history_cnt = 0  # no selection here: the folder's name is no round of a history
    accelerator = cli.make_accelerator(config)
    stages.sample(config, accelerator)
    if not accelerator.is_main_process:
        return
    from b2diffurl.rewards import REWARDS

    round_dir = layout.round_dir(config)
    marker = records.read_marker(round_dir, "sample")
    prompts = records.read_verified_json(round_dir, "sample", "prompts.json", marker)
    _, trajectories = records.load_samples(round_dir, marker)
    images = records.load_images(round_dir, len(prompts), marker)  # uint8 [N, H, W, 3]
    results = {}
    for name in rewards:
        scores = REWARDS[name](config.reward, accelerator.device)(images, prompts)  # [N]
        check_scores(name, scores)
        differences = pair_differences(scores, trajectories.group_ids)
        results[name] = {
            **summarise(differences, FLAGS.threshold),
            "scores": scores.tolist(),
            "differences": differences.tolist(),
        }
        print(
            f"{name}: {results[name]['pairs']} pairs, |difference| mean {results[name]['mean']:.4f}, median "
            f"{results[name]['median']:.4f}, {results[name]['fraction_above']:.1%} above {FLAGS.threshold:g}"
        )
    records.write_json(
        os.path.join(round_dir, RESULT),
        {
            "steps": FLAGS.steps,
            "branches": FLAGS.branches,
            "groups": len(trajectories.group_ids.unique()),
            "policy": config.resume_from or "base model",
            "prompts": prompts,
            "rewards": results,
        },
    )
    plot(os.path.join(round_dir, FIGURE), results, FLAGS.threshold, FLAGS.steps)
    print(f"wrote {os.path.join(round_dir, RESULT)} and {FIGURE}")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
