"""Build the toy world's models from fixed seeds: ``python -m b2diffurl.toyworld build``.

Order: render the dataset, train the VAE (and set its latent scaling), encode the dataset, train
UNet + text encoder, train the CLIP reward on rendered images and VAE reconstructions, save everything
(UNet, VAE and CLIP weights in fp16 safetensors, the small text encoder in fp32: the committed files
stay small, the stages load them in fp32, and a plain ``StableDiffusionPipeline.from_pretrained`` works), then
reload the saved model exactly as the stages do and write ``quality.json`` (:mod:`b2diffurl.toylab.quality`)
and ``SHA256SUMS`` (:mod:`b2diffurl.toylab.checksums`), which lists every file of the folder. What the
default settings take: docs/TOYWORLD.md.
"""

import json
import os
import shutil
import tempfile
import time

import numpy as np
import torch

from b2diffurl.toylab.quality import QUALITY_FILE, write_quality
from b2diffurl.toylab.training import (
    decode_latents,
    encode_latents,
    render_dataset,
    set_scaling_factor,
    train_clip,
    train_diffusion,
    train_vae,
    world_captions,
)
from b2diffurl.toyworld import models


def save_half(module_state, path):
    from safetensors.torch import save_file

    save_file({k: v.detach().to(torch.float16).contiguous() for k, v in module_state.items()}, path)


def save_model(out_dir, vae, unet, text_encoder, tokenizer, clip):
    """The diffusers folder (UNet and VAE in fp16, the text encoder in fp32) and clip/ (open_clip config
    + fp16 weights)."""
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
    # UNet and VAE in fp16 (the size budget); the small text encoder (docs/TOYWORLD.md) in fp32: diffusers
    # loads the fp16 files of a plain from_pretrained() call as fp32, transformers keeps a stored fp16
    # encoder in fp16, and the two would not multiply
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
