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
"""

import io
import math
import os
import time

from b2diffurl import cli

FORMAT_VERSION = 2  # 2: prompt sets, num_images, per-prompt Inception Score
BASE = "base"  # folder of the base model's evaluation inside the experiment
GRID_SEEDS = 8  # most columns of the image grid

FLAGS = cli.define_config_flag("Evaluation configuration (the run's config: its exp_name, save_path, model, reward).")
cli.flags.DEFINE_string(
    "rounds",
    "last",
    "which policies: comma-separated 'base', round numbers or names, 'all' (every trained round), 'last'.",
)


# ---------------------------------------------------------------- what to evaluate


def template_name(prompt_file):
    """template1 for .../template1_test.json; the file's stem otherwise."""
    stem = os.path.splitext(os.path.basename(prompt_file))[0]
    for suffix in ("_test", "_train"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def method_of(config, split_time):
    """The run's method as the paper names it (Fig. 7/8, Tables 1-2), from its settings.

    Vanilla DPO samples its pairs as 2 branches from x_T (presets ddpo,dpo: k = T every round, as D3PO's
    pairs share their initial noise): that is the vanilla algorithm, not branch-based sampling."""
    process, steps = config.process, config.sample.num_steps
    bpt = process.split_step_left < steps  # trains a growing interval, not the whole trajectory from round 0
    dpo_pairs_from_x_T = config.train.algorithm == "dpo" and not bpt and split_time == 2
    branching = split_time > 1 and not dpo_pairs_from_x_T
    label = {
        (True, True): "B2-DiffuRL",
        (True, False): "BPT only",
        (False, True): "BS only",
        (False, False): "vanilla",
    }[(bpt, branching)]
    return {
        "label": label,
        "algorithm": config.train.algorithm,
        "split_time": split_time,
        "num_steps": steps,
        "split_step_left": process.split_step_left,
        "split_step_right": process.split_step_right,
    }


def parse_rounds(spec, exp_dir, run_name):
    """[(name, r)] of the policies ``spec`` names ('base' has r = -1); round names use run_name's prefix and width."""
    from b2diffurl.errors import ConfigError
    from b2diffurl.records import is_done
    from b2diffurl.schedule import round_index

    prefix, _ = round_index(run_name)
    width = len(run_name) - len(prefix)
    trained = sorted(
        int(name[len(prefix) :])
        for name in (os.listdir(exp_dir) if os.path.isdir(exp_dir) else [])
        if name.startswith(prefix) and name[len(prefix) :].isdigit() and is_done(os.path.join(exp_dir, name), "train")
    )
    wanted = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        if part == BASE:
            wanted.append((BASE, -1))
        elif part in ("all", "last"):
            if not trained:
                raise ConfigError(
                    "rounds",
                    spec,
                    f"names trained rounds but {exp_dir} has none: train a round first, or evaluate --rounds base",
                )
            wanted += [(f"{prefix}{r:0{width}d}", r) for r in (trained if part == "all" else trained[-1:])]
        else:
            digits = part[len(prefix) :] if part.startswith(prefix) else part
            if not digits.isdigit():
                raise ConfigError(
                    "rounds",
                    spec,
                    f"has {part!r}: use base, all, last, round numbers (3) or names ({prefix}{3:0{width}d})",
                )
            r = int(digits)
            if r not in trained:
                raise ConfigError(
                    "rounds", spec, f"asks for round {r}, which has not finished training in {exp_dir} (no train.done)"
                )
            wanted.append((f"{prefix}{r:0{width}d}", r))
    if not wanted:
        raise ConfigError("rounds", spec, "names no policy: use base, all, last or round numbers")
    return list(dict.fromkeys(wanted))


def reward_queries(exp_dir, name, r):
    """Training images scored up to and including round r (0 for the base model), from the select markers."""
    from b2diffurl.records import read_marker
    from b2diffurl.schedule import round_index

    if r < 0:
        return 0
    prefix, _ = round_index(name)
    width = len(name) - len(prefix)
    return sum(
        read_marker(os.path.join(exp_dir, f"{prefix}{i:0{width}d}"), "select")["trajectories"] for i in range(r + 1)
    )


def settings(config, prompt_set, prompts):
    """Everything an evaluation's numbers depend on besides the LoRA: a changed one redoes it."""
    return {
        "format_version": FORMAT_VERSION,
        "model": config.pretrained.model,
        "mixed_precision": config.mixed_precision,
        "allow_tf32": config.allow_tf32,
        "prompt_set": prompt_set,
        "prompts": prompts,
        "evaluate": {
            **{k: config.evaluate[k] for k in ("num_images", "seed", "batch_size", "is_splits", "grid_prompts")},
            "alignment": config.evaluate.get("alignment", ""),
            # only when set, so that evaluations written before the field existed stay current
            **({"metrics": metric_names(config)} if metric_names(config) else {}),
        },
        "sample": {k: config.sample[k] for k in ("num_steps", "guidance_scale", "eta")},
        "reward": config.reward.to_dict(),
        "label_set": "imagenet-1k",
    }


# ---------------------------------------------------------------- sampling


def images_per_prompt(n_prompts, num_images):
    """LongTensor [P]: images of each prompt, num_images spread over n_prompts (the first num_images % P get one more)."""
    import torch

    counts = torch.full((n_prompts,), num_images // n_prompts, dtype=torch.long)
    counts[: num_images % n_prompts] += 1
    return counts


def item_prompt_ids(n_prompts, num_images):
    """LongTensor [N]: the prompt of every evaluation image, prompt-major (the order images come in)."""
    import torch

    return torch.arange(n_prompts).repeat_interleave(images_per_prompt(n_prompts, num_images))


def item_prompts(prompts, num_images):
    """The prompt (string) of every evaluation image of ``prompts``, in image order."""
    return [prompts[i] for i in item_prompt_ids(len(prompts), num_images).tolist()]


def eval_batches(n_prompts, num_images, batch_size):
    """Prompt indices of every evaluation batch: the (prompt, image) list, prompt-major, cut into batches. -> [LongTensor]."""
    return list(item_prompt_ids(n_prompts, num_images).split(batch_size))


def sample_batches(pipeline, prompts, config, batch_indices):
    """[(b, uint8 images [B, H, W, 3])] of the evaluation batches ``batch_indices`` (see :func:`eval_batches`)
    with the pipeline's current policy; batch b draws its noise from (evaluate.seed, b)."""
    from tqdm.auto import tqdm

    from b2diffurl.backbones import decode_images, encode_prompts, negative_conditioning
    from b2diffurl.sampler import batch_generator, sample_branches

    evaluate, sample = config.evaluate, config.sample
    batches = eval_batches(len(prompts), evaluate.num_images, evaluate.batch_size)
    negative_embeds = negative_conditioning(pipeline)
    done = []
    for b in tqdm(
        batch_indices, desc="evaluating", disable=os.environ.get("RANK", "0") != "0", dynamic_ncols=True, leave=False
    ):
        embeds = encode_prompts(pipeline, [prompts[i] for i in batches[b]])
        result = sample_branches(
            pipeline,
            embeds,
            negative_embeds,
            batch_generator(evaluate.seed, b),
            sample.num_steps,
            sample.num_steps,
            1,
            sample.guidance_scale,
            sample.eta,
        )
        done.append((b, decode_images(pipeline, result["final_latents"], evaluate.batch_size).numpy()))
    return done


def sample_images(pipeline, prompts, config, accelerator=None):
    """uint8 images [N, H, W, 3] (N = evaluate.num_images) in (prompt, image) order, on the main process
    (None elsewhere). Each process samples batches rank, rank + world, ...; the seeds depend only on the
    batch index."""
    import torch
    from accelerate.utils import gather_object

    evaluate = config.evaluate
    n_batches = len(eval_batches(len(prompts), evaluate.num_images, evaluate.batch_size))
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    done = sample_batches(pipeline, prompts, config, range(rank, n_batches, world))
    if world > 1:
        done = gather_object(done)
    if rank != 0:
        return None
    return torch.cat([torch.from_numpy(images) for _, images in sorted(done, key=lambda item: item[0])])


# ---------------------------------------------------------------- scoring


def metric_names(config):
    """``evaluate.metrics`` as a list of reward names, in order, without repeats and without clipscore
    (always reported): "bertscore, clipscore" -> ["bertscore"]."""
    from b2diffurl.checks import eval_metrics

    return [n for n in eval_metrics(config) if n != "clipscore"]


class Judge:
    """The evaluation's models, loaded once per process: CLIP (CLIPScore and the IS classifier), the
    ImageNet label embeddings, the training reward when it is not CLIPScore, and the scorers of
    ``evaluate.metrics`` that the training reward does not already compute."""

    def __init__(self, config, device):
        from b2diffurl.metrics import LABEL_TEMPLATE, label_set
        from b2diffurl.rewards import ClipScore, build_reward

        reward = config.reward
        self.clip = ClipScore(
            reward.clip_model, reward.clip_pretrained, reward.batch_size, device, reward.get("precision", "fp32")
        )
        self.labels = self.clip.embed_texts(
            [LABEL_TEMPLATE.format(name) for name in label_set("imagenet-1k")]
        )  # [1000, D]
        self.reward_name = reward.name
        self.reward = None if reward.name == "clipscore" else build_reward(reward, device)
        self.alignment = config.evaluate.get("alignment", "")
        from b2diffurl.rewards import REWARDS

        own = {reward.name} | set(getattr(self.reward, "names", ()))  # scores the training reward gives anyway
        # {name: scorer, or None to take the training reward's scores}
        self.metrics = {name: None if name in own else REWARDS[name](reward, device) for name in metric_names(config)}

    def __call__(self, images, prompts, is_splits):
        """Scores of images [N, H, W, 3] (uint8) with their N prompts: a dict of the JSON's metric keys.
        CLIP runs without TF32 here (b2diffurl.tf32.full_precision), the zero-shot matmul included."""
        from b2diffurl.tf32 import full_precision

        with full_precision():
            return self._scores(images, prompts, is_splits)

    def _scores(self, images, prompts, is_splits):
        import torch

        from b2diffurl.metrics import inception_score, mean_and_sem, per_prompt_inception_score, zero_shot_probs

        features = self.clip.embed_images(images)  # [N, D]
        clipscores = self.clip.scores_from_features(features, prompts)  # [N]
        rewards = clipscores if self.reward is None else self.reward(images, prompts)
        probs = zero_shot_probs(features, self.labels, self.clip.logit_scale).cpu()  # [N, 1000]
        index = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
        prompt_ids = torch.tensor([index[p] for p in prompts])  # [N]
        per_prompt_is, per_prompt_is_sem = per_prompt_inception_score(probs, prompt_ids)
        # images come in prompt order: a fixed shuffle makes every pooled-IS chunk a mix of all prompts
        # (a chunk of a few prompts would see a narrow p(y) and score low for that reason alone)
        order = torch.randperm(len(probs), generator=torch.Generator().manual_seed(0))
        is_mean, is_std = inception_score(probs[order], is_splits)
        mean, sem = mean_and_sem(clipscores)
        reward_mean, reward_sem = mean_and_sem(rewards)
        components = {}  # a combined reward's parts: {name: {"mean", "sem"}} of their raw scores
        for name, scores in getattr(self.reward, "last", {}).items():
            components[name] = dict(zip(("mean", "sem"), mean_and_sem(scores)))
        metrics = {}  # evaluate.metrics: {name: [N]}
        for name, scorer in self.metrics.items():
            if scorer is not None:
                metrics[name] = scorer(images, prompts)
            else:
                metrics[name] = rewards if name == self.reward_name else self.reward.last[name]
        per_prompt = {}
        for i, prompt in enumerate(prompts):
            entry = per_prompt.setdefault(prompt, {"clipscore": [], "reward": [], **{name: [] for name in metrics}})
            entry["clipscore"].append(clipscores[i].item())
            entry["reward"].append(rewards[i].item())
            for name, scores in metrics.items():
                entry[name].append(scores[i].item())
        per_prompt = {p: {k: sum(v) / len(v) for k, v in entry.items()} for p, entry in per_prompt.items()}
        extra = {}
        if self.alignment == "toyworld":  # the toy world's detector: alignment and diversity (b2diffurl.toyworld.score)
            from b2diffurl.toyworld.score import toy_metrics

            extra = toy_metrics(images.cpu().numpy(), prompts)
            for p, value in extra.pop("per_prompt_alignment").items():
                per_prompt[p]["alignment"] = value
            extra["alignment"] = self.alignment
        return {
            "clipscore_mean": mean,
            "clipscore_sem": sem,
            "clipscore_std": clipscores.double().std().item() if len(clipscores) > 1 else 0.0,
            "inception_score_per_prompt": per_prompt_is,
            "inception_score_per_prompt_sem": per_prompt_is_sem,
            "inception_score": is_mean,
            "inception_score_std": is_std,
            "is_splits": is_splits,
            "is_label_set": "imagenet-1k",
            "reward": self.reward_name,
            "reward_mean": reward_mean,
            "reward_sem": reward_sem,
            **({"reward_components": components} if components else {}),
            **{
                f"{name}_{key}": value
                for name, scores in metrics.items()
                for key, value in zip(("mean", "sem"), mean_and_sem(scores))
            },
            **extra,
            "per_prompt": per_prompt,
        }


def image_grid(images, counts, grid_prompts):
    """uint8 [rows * H, cols * W, 3]: the first ``grid_prompts`` prompts (rows) x their first seeds
    (columns: up to 8, as many as the rows all have). images: uint8 [N, H, W, 3] in (prompt, image)
    order; counts: LongTensor [P], images of each prompt (:func:`images_per_prompt`)."""
    import torch

    rows = min(grid_prompts, len(counts))
    cols = min(GRID_SEEDS, int(counts[:rows].min()))
    first = torch.cumsum(counts, 0) - counts  # [P] index of each prompt's first image
    picked = images[first[:rows, None] + torch.arange(cols)]  # [rows, cols, H, W, 3]
    return picked.permute(0, 2, 1, 3, 4).reshape(rows * images.shape[1], cols * images.shape[2], 3)


def png_bytes(image):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="png")
    return buffer.getvalue()


# ---------------------------------------------------------------- one policy


def eval_paths(exp_dir, name, prompt_set):
    folder = os.path.join(exp_dir, name, "eval")
    return folder, os.path.join(folder, f"{prompt_set}.json"), os.path.join(folder, f"{prompt_set}_grid.png")


def lora_sha256(exp_dir, name):
    """sha256 of a round's LoRA, verified against its train.done ("" for the base model)."""
    from b2diffurl import records

    if name == BASE:
        return ""
    return records.sha256(
        records.read_verified(os.path.join(exp_dir, name), "train", f"lora/{records.LORA_WEIGHTS_NAME}")
    )


def is_current(json_path, lora, wanted):
    """True when an evaluation exists for this LoRA and these settings."""
    from b2diffurl import records

    if not os.path.isfile(json_path):
        return False
    try:
        done = records.read_json(json_path)
    except records.RecordError:
        return False
    return done.get("lora_sha256") == lora and done.get("settings") == wanted


def run_of(exp_dir, name, r):
    """The training settings that matter to a comparison (algorithm, learning rate, run seed, branches,
    accumulation), from the round's train.done (the base model: from the run's settings.json), or {}
    for a run folder that recorded none."""
    from b2diffurl import records
    from b2diffurl.settings import SETTINGS_NAME

    if r >= 0:
        config = records.read_marker(os.path.join(exp_dir, name), "train").get("config")
        seed = config["seed"] - r if config else None
    else:
        path = os.path.join(exp_dir, SETTINGS_NAME)
        flat = records.read_json(path)["config"] if os.path.isfile(path) else None
        config = (
            None
            if flat is None
            else {
                "train": {k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith("train.")},
                "split_time": flat["split_time"],
                "seed": flat["seed"],
            }
        )
        seed = config["seed"] if config else None
    if not config:
        return {}
    train = config["train"]
    return {
        "algorithm": train["algorithm"],
        "learning_rate": train["learning_rate"],
        "seed": seed,
        "split_time": config["split_time"],
        "gradient_accumulation_steps": train["gradient_accumulation_steps"],
    }


CHECKED = ("clipscore_mean", "inception_score", "inception_score_per_prompt", "reward_mean")


def check_finite(scores, what):
    """NonFiniteError (one line, exit 3) naming the first of the Judge's numbers (``scores``: its dict)
    that is NaN or infinite: CLIPScore, the Inception Scores, the reward's mean, then every other
    ``<name>_mean`` (evaluate.metrics, the reward's components), before anything is written."""
    for key in [*CHECKED, *sorted(k for k in scores if k.endswith("_mean") and k not in CHECKED)]:
        if isinstance(scores[key], (int, float)) and not math.isfinite(scores[key]):
            from b2diffurl.errors import NonFiniteError

            raise NonFiniteError(f"{what}: {key} is {scores[key]}: check the images in the grid and the reward model")


def evaluate_policy(config, accelerator, pipeline, judge, exp_dir, name, r, prompt_set, prompts, wanted, lora):
    """Evaluate one policy (the pipeline with its LoRA loaded; ``lora``: its verified sha256, "" for the
    base model) on one prompt set and write its JSON and grid; returns the JSON dict (main process)."""
    from b2diffurl import records
    from b2diffurl.checks import eval_prompt_file
    from b2diffurl.grids import label_grid

    started = time.time()
    evaluate = config.evaluate
    images = sample_images(pipeline, prompts, config, accelerator)
    if not accelerator.is_main_process:
        return None
    scores = judge(images, item_prompts(prompts, evaluate.num_images), evaluate.is_splits)
    check_finite(scores, f"evaluate {name} on {prompt_set}")
    folder, json_path, grid_path = eval_paths(exp_dir, name, prompt_set)
    os.makedirs(folder, exist_ok=True)
    grid = image_grid(images, images_per_prompt(len(prompts), evaluate.num_images), evaluate.grid_prompts)
    rows = min(evaluate.grid_prompts, len(prompts))
    policy = "base model" if r < 0 else f"{name} LoRA"
    grid = label_grid(grid.numpy(), rows, f"{policy} | {prompt_set} prompts | seeds {evaluate.seed}+", prompts[:rows])
    records.write_bytes(grid_path, png_bytes(grid))
    split_time = 1 if r < 0 else records.read_marker(os.path.join(exp_dir, name), "sample")["split_time"]
    prompt_file = eval_prompt_file(config, prompt_set)
    result = {
        "format_version": FORMAT_VERSION,
        "round": name,
        "round_index": r,
        "prompt_set": prompt_set,
        "prompt_file": prompt_file,
        "template": template_name(prompt_file or config.prompt_file),
        "reward_queries": reward_queries(exp_dir, name, r),
        "num_prompts": len(prompts),
        "num_images": len(images),
        "seed": evaluate.seed,
        **{k: v for k, v in scores.items() if k != "per_prompt"},
        "method": {"label": "base model", "algorithm": ""} if r < 0 else method_of(config, split_time),
        "run": run_of(exp_dir, name, r),
        "grid": os.path.basename(grid_path),
        "grid_prompts": prompts[: min(evaluate.grid_prompts, len(prompts))],
        "per_prompt": scores["per_prompt"],
        "lora_sha256": lora,
        "settings": wanted,
        "seconds": round(time.time() - started, 2),
    }
    records.write_json(json_path, result)  # last: the evaluation is finished iff its JSON exists
    if config.get("log_with"):
        from b2diffurl import tracking

        tracking.log_evaluation(config, r, result, grid)
    return result


def summary_line(result, state):
    alignment = ""
    if "alignment_mean" in result:
        alignment = (
            f"alignment {result['alignment_mean']:.1%} +- {result['alignment_sem']:.1%}, "
            f"background entropy {result['background_entropy']:.2f} bits, "
        )
    return (
        f"eval {result['round']} on {result['prompt_set']} ({result['num_prompts']} prompts, {result['num_images']} images): "
        f"{alignment}CLIPScore {result['clipscore_mean']:.4f} +- {result['clipscore_sem']:.4f}, "
        f"IS per prompt {result['inception_score_per_prompt']:.3f} +- {result['inception_score_per_prompt_sem']:.3f}, "
        f"pooled IS {result['inception_score']:.3f}, {result['reward_queries']} reward queries ({state})"
    )


# ---------------------------------------------------------------- the command


def check(config, num_processes):
    """The config and the evaluation's fields and prompt files (all problems at once); returns {set: prompts}."""
    from b2diffurl.checks import check_config

    checker, _ = check_config(config, num_processes, eval_prompts=True)
    checker.raise_first()
    return checker.eval_prompts


def main(_):
    from b2diffurl import records
    from b2diffurl.models import load_lora, load_policy

    config = FLAGS.config
    accelerator = cli.make_accelerator(config)
    prompt_sets = check(config, accelerator.num_processes)
    cli.lock_run_folder(config)
    exp_dir = os.path.join(config.save_path, config.exp_name)
    wanted_rounds = parse_rounds(FLAGS.rounds, exp_dir, config.run_name)
    accelerator.wait_for_everyone()
    todo = []  # (name, r, lora, [prompt sets to do])
    for name, r in wanted_rounds:
        lora = lora_sha256(exp_dir, name)  # read and verified once per policy
        sets = []
        for prompt_set, prompts in prompt_sets.items():
            _, json_path, _ = eval_paths(exp_dir, name, prompt_set)
            if is_current(json_path, lora, settings(config, prompt_set, prompts)):
                if accelerator.is_main_process:
                    print(summary_line(records.read_json(json_path), "already done, skipped"))
            else:
                sets.append(prompt_set)
        if sets:
            todo.append((name, r, lora, sets))
    accelerator.wait_for_everyone()  # every rank decided before the main one writes
    if not todo:
        return
    config.resume_from = ""  # rounds are loaded below, one after another
    pipeline = load_policy(config, accelerator.device)
    judge = Judge(config, accelerator.device) if accelerator.is_main_process else None
    pipeline.unet.eval()
    for name, r, lora, sets in todo:
        if r < 0:
            pipeline.unet.disable_adapters()  # the base model
        else:
            pipeline.unet.enable_adapters()
            load_lora(pipeline.unet, os.path.join(exp_dir, name, "lora"))
        for prompt_set in sets:
            prompts = prompt_sets[prompt_set]
            wanted = settings(config, prompt_set, prompts)
            result = evaluate_policy(
                config, accelerator, pipeline, judge, exp_dir, name, r, prompt_set, prompts, wanted, lora
            )
            if accelerator.is_main_process:
                print(summary_line(result, f"{result['seconds']:.1f} s"))
            accelerator.wait_for_everyone()


if __name__ == "__main__":
    cli.run(main)
