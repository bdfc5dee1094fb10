"""quality.json of the built toy model: the saved model reloaded exactly as the stages load it, and measured.

- VAE: reconstruction MSE, and how often the detector still reads reconstructions right;
- detector vs the renderer's ground truth (true caption accepted, one-attribute-off caption refused);
- CLIP reward: top-1 caption accuracy among each template's captions, on fresh rendered images;
- base model: held-out alignment (detector) and diversity of its samples on each template's test list,
  sampled as the stages sample (DDIM, the toy preset's steps, eta and guidance).

``python -m b2diffurl.toyworld remeasure`` redoes it for built weights after a change of the metrics.
"""

import json
import os
import time

import numpy as np
import torch

from b2diffurl import configs
from b2diffurl.toylab.checksums import write_checksums
from b2diffurl.toylab.training import decode_latents, encode_latents, hard_negative, render_dataset, world_captions
from b2diffurl.toyworld import models
from b2diffurl.toyworld.world import all_captions, meaning, prompt_lists

QUALITY_FILE = "quality.json"
# evaluation of the base model in quality.json: images per held-out prompt, per template
BASE_IMAGES_PER_PROMPT = {1: 32, 2: 16, 3: 2}
BASE_EVAL_SEED = 20_000


def toy_config():
    """The ``toy`` preset of config/stage_process.py (the settings the stages run the model with)."""
    return configs.load_config(configs.repo_path("config", "stage_process.py") + ":toy")


def accepted_rate(images, caption_index, captions):
    """Fraction of uint8 images [N, H, W, 3] whose own caption the detector accepts."""
    from b2diffurl.toyworld.detect import aligned

    return float(np.mean([aligned(img, captions[i]) for img, i in zip(images.numpy(), caption_index.tolist())]))


def detector_quality(images, caption_index, captions, seed):
    """Detector vs the renderer's ground truth on rendered images: fraction of true captions accepted,
    fraction of one-attribute-off captions refused."""
    from b2diffurl.toyworld.detect import aligned

    rng = np.random.default_rng(seed)
    refused = [
        not aligned(img, hard_negative(captions[i], rng)) for img, i in zip(images.numpy(), caption_index.tolist())
    ]
    return accepted_rate(images, caption_index, captions), float(np.mean(refused))


def clip_top1(scorer, images, caption_index, captions):
    """Per template: fraction of images whose best-scoring caption, among the template's captions, is
    true of the image: its own caption or one of the same :func:`~b2diffurl.toyworld.world.meaning`
    (template 3 says each scene two ways, ``a red circle left of a blue square`` and ``a blue square
    right of a red circle``, and either is right; in templates 1 and 2 only the own caption is)."""
    features = scorer.embed_images(images)  # [N, D]
    result = {}
    for template in (1, 2, 3):
        names = all_captions(template)
        text = scorer.embed_texts(names)  # [C, D]
        wanted = set(names)
        rows = [k for k, i in enumerate(caption_index.tolist()) if captions[i] in wanted]
        best = (features[rows] @ text.T).argmax(dim=1).tolist()
        right = [meaning(names[b]) == meaning(captions[caption_index[k]]) for k, b in zip(rows, best)]
        result[f"template{template}"] = float(np.mean(right))
    return result


def base_alignment(pipeline, config, template, images_per_prompt=None, seed=BASE_EVAL_SEED):
    """Alignment and diversity of the base model on a template's held-out prompts
    (:func:`b2diffurl.toyworld.score.toy_metrics` keys, ``per_prompt_alignment`` dropped)."""
    from b2diffurl.evaluate import sample_images
    from b2diffurl.toyworld.score import toy_metrics

    _, test = prompt_lists(template)
    config = config.copy_and_resolve_references()
    images_per_prompt = images_per_prompt or BASE_IMAGES_PER_PROMPT[template]
    config.evaluate.num_images = images_per_prompt * len(test)
    config.evaluate.seed = seed
    images = sample_images(pipeline, test, config)
    prompts = [p for p in test for _ in range(images_per_prompt)]
    metrics = toy_metrics(images.numpy(), prompts)
    metrics.pop("per_prompt_alignment")
    metrics.pop("aligned")
    metrics.update(num_prompts=len(test), images_per_prompt=images_per_prompt, seed=seed)
    return metrics


def measure(folder, held_images, held_index, recon_images, summary):
    """Reload the saved model as the stages do and fill ``summary`` with the quality numbers."""
    from b2diffurl.models import load_pipeline
    from b2diffurl.rewards import ClipScore

    captions = world_captions()
    config = toy_config()
    scorer = ClipScore(*models.clip_paths(folder), batch_size=256)
    summary["clip_top1_rendered"] = clip_top1(scorer, held_images, held_index, captions)
    summary["clip_top1_vae_reconstructions"] = clip_top1(scorer, recon_images, held_index, captions)
    pipeline = load_pipeline(folder)
    summary["sampling"] = {k: config.sample[k] for k in ("num_steps", "guidance_scale", "eta")}
    summary["base_alignment"] = {f"template{t}": base_alignment(pipeline, config, t) for t in (1, 2, 3)}
    return summary


def measure_vae_and_detector(folder, summary):
    """The VAE's and the detector's numbers on 1200 held-out rendered images (never trained on); returns
    the images, their caption indices and the VAE's reconstructions of them."""
    from diffusers import AutoencoderKL

    seed = summary["settings"]["seed"]
    captions = world_captions()
    held_images, held_index = render_dataset(1200, seed + 1)  # never trained on
    vae = AutoencoderKL.from_pretrained(os.path.join(folder, "vae")).eval()
    held_means, _ = encode_latents(vae, held_images)
    recon_held = decode_latents(vae, held_means)
    summary["vae"]["held_out_mse"] = float(((recon_held.float() - held_images.float()) / 127.5).pow(2).mean())
    summary["vae"]["detector_on_reconstructions"] = accepted_rate(recon_held, held_index, captions)
    accepted, refused = detector_quality(held_images, held_index, captions, seed + 3)
    summary["detector"] = {
        "true_caption_accepted": accepted,
        "one_attribute_off_refused": refused,
        "images": len(held_index),
    }
    return held_images, held_index, recon_held


def write_quality(folder, summary, timings=None, started=None):
    """Measure the saved model in ``folder`` (see the module docstring), write quality.json and SHA256SUMS."""
    t = time.time()
    held_images, held_index, recon_held = measure_vae_and_detector(folder, summary)
    measure(folder, held_images, held_index, recon_held, summary)
    timings = dict(timings or summary.get("seconds", {}))
    timings["measure"] = round(time.time() - t, 1)
    # a full build's wall time; after a partial redo (remeasure, retrain_clip) the sum of its parts
    timings["total"] = round(
        time.time() - started if started is not None else sum(v for k, v in timings.items() if k != "total"), 1
    )
    summary["seconds"] = timings
    summary["machine"] = f"{os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    with open(os.path.join(folder, QUALITY_FILE), "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    write_checksums(folder)
    return summary


def remeasure(folder=models.MODEL_DIR):
    """Redo quality.json (and SHA256SUMS) of built weights, e.g. after a change of the metrics; the
    weights and the training numbers stay."""
    with open(os.path.join(folder, QUALITY_FILE)) as f:
        summary = json.load(f)
    return write_quality(folder, summary)


def print_summary(summary):
    vae, det = summary["vae"], summary["detector"]
    print(
        f"VAE: held-out MSE {vae['held_out_mse']:.4f} ([-1, 1] pixels); detector right on "
        f"{vae['detector_on_reconstructions']:.1%} of reconstructions"
    )
    print(
        f"detector on {det['images']} rendered images: true caption accepted {det['true_caption_accepted']:.1%}, "
        f"one-attribute-off caption refused {det['one_attribute_off_refused']:.1%}"
    )
    top1 = summary["clip_top1_rendered"]
    print(
        "CLIP reward top-1 caption (among the template's captions), rendered: "
        + ", ".join(f"{k} {v:.1%}" for k, v in top1.items())
    )
    for name, m in summary["base_alignment"].items():
        print(
            f"base model, {name} held-out ({m['num_prompts']} prompts x {m['images_per_prompt']}): alignment "
            f"{m['alignment_mean']:.1%} +- {m['alignment_sem']:.1%}, background entropy "
            f"{m['background_entropy']:.2f} bits"
        )
    print(f"total {summary['seconds']['total'] / 60:.1f} min")
