"""The benchmark's random models: a diffusers folder of a backbone's networks and an open_clip
ViT-H-14 checkpoint, built from the shapes of :mod:`b2diffurl.bench.shapes` (nothing is downloaded).

Shapes, FLOPs, memory and load times are the real ones; the weights are random. A folder is built
once per backbone and resolution under ``model/bench/`` and reused (its size: docs/PERFORMANCE.md).
"""

import math
import os
import shutil
import tempfile

from b2diffurl.bench.setting import BENCH_DIR, BENCH_VERSION, CLIP_ARCH, CLIP_FILE
from b2diffurl.bench.shapes import (
    BACKBONE_TEXT,
    SD14_TEXT,
    SD14_UNET,
    SD14_VAE,
    SD21_TEXT,
    SD21_UNET,
    SDXL_TEXT_2,
    SDXL_UNET,
    SDXL_VAE,
)
from b2diffurl.textenc import random_text_encoder
from b2diffurl.tiny import sd2_scheduler, sd14_scheduler, sdxl_scheduler, tiny_tokenizer_vocab

# each backbone's (UNet, VAE, first text encoder) shapes
BACKBONE_SHAPES = {
    "sd14": (SD14_UNET, SD14_VAE, SD14_TEXT),
    "sd21": (SD21_UNET, SD14_VAE, SD21_TEXT),
    "sdxl": (SDXL_UNET, SDXL_VAE, SD14_TEXT),
}


def model_dir(resolution, root=BENCH_DIR, backbone="sd14"):
    return os.path.join(root, f"{backbone}-random-{resolution}px-v{BENCH_VERSION}")


def write_random_open_clip(path, arch=CLIP_ARCH, dtype="float16", seed=0):
    """A random open_clip checkpoint of ``arch`` at ``path`` (.safetensors, ``dtype``), written one tensor
    at a time from the shapes of a model on the meta device (no model in memory): weights N(0, 0.02),
    biases 0, norm scales 1, logit_scale log(1 / 0.07). Returns the weights' bytes at ``dtype``."""
    import open_clip
    import torch

    from b2diffurl.weights import write_safetensors

    with torch.device("meta"):
        shapes = {
            name: t.shape
            for name, t in open_clip.create_model(arch, pretrained=None, device="meta").state_dict().items()
        }
    dtype = getattr(torch, dtype)

    def items(real):
        generator = torch.Generator().manual_seed(seed)
        for name, shape in shapes.items():
            if not real:
                yield name, torch.empty(shape, dtype=dtype, device="meta")
            elif name == "logit_scale":
                yield name, torch.full(shape, math.log(1 / 0.07), dtype=dtype)
            elif name.endswith("bias"):
                yield name, torch.zeros(shape, dtype=dtype)
            elif len(shape) == 1 and name.endswith("weight"):
                yield name, torch.ones(shape, dtype=dtype)
            else:
                yield name, (torch.randn(shape, generator=generator) * 0.02).to(dtype)

    write_safetensors(path, items)
    return sum(math.prod(shape) for shape in shapes.values()) * dtype.itemsize


def random_pipeline(resolution, backbone="sd14"):
    """The random pipeline of ``backbone``'s shapes, its UNet made for ``resolution`` pixels."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTokenizer

    vocab = tiny_tokenizer_vocab()  # any tokenizer of 77 tokens: ids only select embedding rows
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    unet_shape, vae_shape, text_shape = BACKBONE_SHAPES[backbone]
    parts = dict(
        unet=UNet2DConditionModel(sample_size=resolution // 8, **unet_shape),
        vae=AutoencoderKL(sample_size=resolution, **vae_shape),
        text_encoder=random_text_encoder(text_shape, vocab),
        tokenizer=tokenizer,
    )
    with torch.no_grad():  # keep a random UNet's output at the scale of a trained one's (about unit variance)
        parts["unet"].conv_out.weight.mul_(0.1)
    if backbone == "sdxl":
        return StableDiffusionXLPipeline(
            **parts,
            text_encoder_2=random_text_encoder(SDXL_TEXT_2, vocab, projection=True),
            tokenizer_2=tokenizer,
            scheduler=sdxl_scheduler(),
            force_zeros_for_empty_prompt=True,
            add_watermarker=False,
        )
    scheduler = sd2_scheduler() if backbone == "sd21" else sd14_scheduler()
    return StableDiffusionPipeline(
        **parts, scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )


def _write_models(tmp, resolution, seed, backbone):
    """The random pipeline (fp16 safetensors) and ``clip/`` with the random ViT-H-14 checkpoint, into ``tmp``.
    SD 2.1's and SDXL's networks are built in fp16 directly (their fp32 size: docs/PERFORMANCE.md)."""
    import torch

    torch.manual_seed(seed)
    default_dtype = torch.get_default_dtype()
    if backbone != "sd14":
        torch.set_default_dtype(torch.float16)
    try:
        pipeline = random_pipeline(resolution, backbone)
    finally:
        torch.set_default_dtype(default_dtype)
    pipeline.to(torch.float16).save_pretrained(tmp)
    del pipeline
    os.makedirs(os.path.join(tmp, "clip"))
    write_random_open_clip(os.path.join(tmp, "clip", CLIP_FILE), CLIP_ARCH, seed=seed)


def build_models(folder, resolution, seed=0, backbone="sd14"):
    """Write the random pipeline of ``backbone``'s shapes and the random ViT-H-14 checkpoint to ``folder``
    unless they are there; returns (pipeline folder, open_clip checkpoint path)."""
    clip_path = os.path.join(folder, "clip", CLIP_FILE)
    if os.path.isfile(os.path.join(folder, "model_index.json")) and os.path.isfile(clip_path):
        return folder, clip_path
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".bench-", dir=os.path.dirname(folder))
    try:
        print(
            f"building {BACKBONE_TEXT[backbone]} (random) at {resolution} x {resolution} in {folder} (once)", flush=True
        )
        _write_models(tmp, resolution, seed, backbone)
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder, clip_path


def setting_models(setting, models_root, resolution=None):
    """(pipeline folder, open_clip checkpoint) of ``setting``'s backbone, built once per resolution."""
    resolution = resolution or setting.resolution
    return build_models(model_dir(resolution, models_root, setting.backbone), resolution, backbone=setting.backbone)
