"""Build the toy world's models from fixed seeds and measure them: ``python -m b2diffurl.toyworld build``.

Order: render the dataset, train the VAE (and set its latent scaling), encode the dataset, train
UNet + text encoder, train the CLIP reward on rendered images and VAE reconstructions, save everything
(UNet, VAE and CLIP weights in fp16 safetensors, the small text encoder in fp32: the committed files
stay small, the stages load them in fp32, and a plain ``StableDiffusionPipeline.from_pretrained`` works), then
reload the saved model exactly as the stages do and write ``quality.json``:

- VAE: reconstruction MSE, and how often the detector still reads reconstructions right;
- detector vs the renderer's ground truth (true caption accepted, one-attribute-off caption refused);
- CLIP reward: top-1 caption accuracy among each template's captions, on fresh rendered images;
- base model: held-out alignment (detector) and diversity of its samples on each template's test list,
  sampled as the stages sample (DDIM, the toy preset's steps, eta and guidance).

``SHA256SUMS`` lists every file of the folder. The default settings take about 40 minutes on 2 CPU cores.
"""

import json
import os
import shutil
import tempfile
import time

import numpy as np
import torch

from b2diffurl.records import file_sha256
from b2diffurl.toyworld import models
from b2diffurl.toyworld.training import (
    decode_latents,
    encode_latents,
    hard_negative,
    render_dataset,
    set_scaling_factor,
    train_clip,
    train_diffusion,
    train_vae,
    world_captions,
)
from b2diffurl.toyworld.world import all_captions, meaning, prompt_lists

QUALITY_FILE = "quality.json"
CHECKSUMS_FILE = "SHA256SUMS"
# evaluation of the base model in quality.json: images per held-out prompt, per template
BASE_IMAGES_PER_PROMPT = {1: 32, 2: 16, 3: 2}
BASE_EVAL_SEED = 20_000


def checksum_lines(folder):
    """``<sha256>  <relative path>`` of every file under ``folder`` but SHA256SUMS, sorted."""
    lines = []
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder)
            if rel != CHECKSUMS_FILE:
                lines.append(f"{file_sha256(path)}  {rel}")
    return sorted(lines, key=lambda line: line.split("  ", 1)[1])


def verify(folder=models.MODEL_DIR):
    """Problems (one line each) of the built model folder against its SHA256SUMS; [] when intact."""
    listed = os.path.join(folder, CHECKSUMS_FILE)
    if not os.path.isfile(listed):
        return [f"{listed} is missing: rebuild with `python -m b2diffurl.toyworld build`"]
    with open(listed) as f:
        wanted = dict(reversed(line.rstrip("\n").split("  ", 1)) for line in f if line.strip())
    problems = []
    for rel, digest in wanted.items():
        path = os.path.join(folder, rel)
        if not os.path.isfile(path):
            problems.append(f"{path} is missing")
        elif file_sha256(path) != digest:
            problems.append(f"{path} does not match its checksum in {CHECKSUMS_FILE}")
    return problems


def toy_config():
    """The ``toy`` preset of config/stage_process.py (the settings the stages run the model with)."""
    from b2diffurl.driver import REPO_ROOT, load_config

    return load_config(os.path.join(REPO_ROOT, "config", "stage_process.py") + ":toy")


def save_half(module_state, path):
    from safetensors.torch import save_file

    save_file({k: v.detach().to(torch.float16).contiguous() for k, v in module_state.items()}, path)


def save_model(out_dir, vae, unet, text_encoder, tokenizer, clip):
    """The diffusers folder (UNet and VAE in fp16, the text encoder in fp32) and clip/ (open_clip config + fp16 weights)."""
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline(
        vae=vae,
        unet=unet,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=models.make_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    # UNet and VAE in fp16 (the size budget); the text encoder (0.4 MB) in fp32: diffusers loads the
    # fp16 files of a plain from_pretrained() call as fp32, transformers keeps a stored fp16 encoder
    # in fp16, and the two would not multiply
    unet.to(torch.float16)
    vae.to(torch.float16)
    pipeline.save_pretrained(out_dir)
    unet.to(torch.float32)
    vae.to(torch.float32)
    clip_dir = os.path.join(out_dir, "clip")
    os.makedirs(clip_dir)
    config_path, weights_path = models.clip_paths(out_dir)
    with open(config_path, "w") as f:
        json.dump(models.CLIP_CONFIG, f, indent=1)
        f.write("\n")
    save_half(clip.state_dict(), weights_path)


# ---------------------------------------------------------------- measurements


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


# ---------------------------------------------------------------- the CLIP reward


def as_saved(vae):
    """A copy of the VAE with its weights rounded as they are saved (fp16), back in fp32: what a
    later :func:`retrain_clip` loads from the folder, so both paths give the CLIP the same images."""
    import copy

    saved = copy.deepcopy(vae)
    with torch.no_grad():
        for p in saved.parameters():
            p.copy_(p.to(torch.float16).float())
    return saved.eval()


def clip_dataset(vae, images):
    """The CLIP reward's training images: the first half as rendered, the second half decoded by the
    VAE from their posterior means (it must know the slightly blurred images the model generates)."""
    half = len(images) // 2
    means, _ = encode_latents(vae, images[half:])
    return torch.cat([images[:half], decode_latents(vae, means)])


def build_clip(vae, images, caption_index, steps, seed):
    """(the trained open_clip reward, its last 100 steps' mean loss), from seed + 2."""
    import open_clip

    clip_images = clip_dataset(vae, images)
    torch.manual_seed(seed + 2)
    clip = models.make_clip()
    tokenize = open_clip.get_tokenizer(models.CLIP_NAME)
    loss = train_clip(clip, tokenize, clip_images, caption_index, world_captions(), steps, seed=seed + 2)
    return clip, loss


def retrain_clip(folder=models.MODEL_DIR, clip_steps=None):
    """Train the CLIP reward again on a built model (its VAE as saved, the dataset of its quality.json
    settings), replace clip/ and redo quality.json and SHA256SUMS; the diffusion model stays as it is.
    The same reward as a full :func:`build` with these settings (the same images and seeds)."""
    from diffusers import AutoencoderKL

    with open(os.path.join(folder, QUALITY_FILE)) as f:
        summary = json.load(f)
    settings = summary["settings"]
    if clip_steps is not None:
        settings["clip_steps"] = clip_steps
    started = time.time()
    images, caption_index = render_dataset(settings["dataset_size"], settings["seed"])
    vae = AutoencoderKL.from_pretrained(os.path.join(folder, "vae"), torch_dtype=torch.float32).eval()
    clip, loss = build_clip(vae, images, caption_index, settings["clip_steps"], settings["seed"])
    if not np.isfinite(loss):
        from b2diffurl.errors import NonFiniteError

        raise NonFiniteError(f"CLIP training diverged (loss {loss}): nothing saved")
    summary["clip_train_loss"] = loss
    timings = dict(summary.get("seconds", {}))
    timings["clip"] = round(time.time() - started, 1)
    summary["seconds"] = timings
    clip_dir = os.path.join(folder, "clip")
    tmp = tempfile.mkdtemp(prefix=".clip-", dir=folder)
    try:
        config_path, weights_path = models.clip_paths(folder)
        with open(os.path.join(tmp, os.path.basename(config_path)), "w") as f:
            json.dump(models.CLIP_CONFIG, f, indent=1)
            f.write("\n")
        save_half(clip.state_dict(), os.path.join(tmp, os.path.basename(weights_path)))
        shutil.rmtree(clip_dir)
        os.rename(tmp, clip_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return write_quality(folder, summary)


# ---------------------------------------------------------------- the command


def build(
    out_dir=models.MODEL_DIR, dataset_size=40_000, vae_steps=1800, unet_steps=5000, clip_steps=1200, seed=0, force=False
):
    """Train every model, save to ``out_dir`` with quality.json and SHA256SUMS; returns the summary dict."""
    if os.path.isdir(out_dir) and not force:
        raise FileExistsError(f"{out_dir} exists: pass --force to rebuild it (the committed model is replaced)")
    torch.manual_seed(seed)
    started = time.time()
    timings = {}

    def lap(name, since):
        timings[name] = round(time.time() - since, 1)
        print(f"{name}: {timings[name]:.0f} s", flush=True)
        return time.time()

    t = time.time()
    captions = world_captions()
    images, caption_index = render_dataset(dataset_size, seed)
    t = lap("render", t)

    torch.manual_seed(seed)
    vae = models.make_vae()
    vae_mse = train_vae(vae, images, vae_steps, seed=seed)
    means, stds = encode_latents(vae, images)
    scaling = set_scaling_factor(vae, means)
    t = lap("vae", t)

    torch.manual_seed(seed + 1)
    tokenizer = models.make_tokenizer()
    unet, text_encoder = models.make_unet(), models.make_text_encoder(len(tokenizer))
    alphas_cumprod = models.make_scheduler().alphas_cumprod
    unet, text_encoder, unet_loss = train_diffusion(
        unet,
        text_encoder,
        tokenizer,
        alphas_cumprod,
        means,
        stds,
        caption_index,
        captions,
        unet_steps,
        scaling,
        seed=seed + 1,
    )
    t = lap("unet", t)

    clip, clip_loss = build_clip(as_saved(vae), images, caption_index, clip_steps, seed)
    t = lap("clip", t)

    losses = {"VAE": vae_mse, "UNet + text encoder": unet_loss, "CLIP": clip_loss}
    bad = [f"{name} loss {value}" for name, value in losses.items() if not np.isfinite(value)]
    if bad:  # nothing is written: a diverged model must not replace the committed one
        from b2diffurl.errors import NonFiniteError

        raise NonFiniteError(
            f"toy build diverged ({', '.join(bad)}): nothing saved; lower the learning rates or change --seed"
        )
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".toy-build-", dir=parent)
    try:
        save_model(tmp, vae, unet, text_encoder, tokenizer, clip)
        summary = {
            "settings": dict(
                dataset_size=dataset_size, vae_steps=vae_steps, unet_steps=unet_steps, clip_steps=clip_steps, seed=seed
            ),
            "vae": {"train_mse": vae_mse, "scaling_factor": scaling},
            "unet_train_loss": unet_loss,
            "clip_train_loss": clip_loss,
        }
        write_quality(tmp, summary, timings, started)
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def write_quality(folder, summary, timings=None, started=None):
    """Measure the saved model in ``folder`` (see the module docstring), write quality.json and SHA256SUMS."""
    from diffusers import AutoencoderKL

    t = time.time()
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
    with open(os.path.join(folder, CHECKSUMS_FILE), "w") as f:
        f.write("\n".join(checksum_lines(folder)) + "\n")
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
        f"VAE: held-out MSE {vae['held_out_mse']:.4f} ([-1, 1] pixels); detector right on {vae['detector_on_reconstructions']:.1%} of reconstructions"
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
            f"{m['alignment_mean']:.1%} +- {m['alignment_sem']:.1%}, background entropy {m['background_entropy']:.2f} bits"
        )
    print(f"total {summary['seconds']['total'] / 60:.1f} min")
