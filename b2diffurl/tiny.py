"""Tiny random Stable-Diffusion-shaped models for tests and the CPU demo.

:func:`build_tiny_pipeline` writes, deterministically from a seed and in about a second, a diffusers
folder with the same parts as SD v1.4 (UNet2DConditionModel with cross-attention, AutoencoderKL,
CLIPTextModel + CLIPTokenizer, SD v1.4's scheduler config) and a tiny open_clip model for the
reward; variants ``sd21`` and ``sdxl`` differ as SD 2.x (v-prediction) and SDXL (two text encoders,
micro-conditioning) do. Every stage then loads it through the pipeline class's ``from_pretrained``
exactly as it loads the real checkpoints. Nothing is downloaded.
"""

import json
import os
import shutil
import tempfile

from b2diffurl.configs import REPO_ROOT
from b2diffurl.textenc import END_TOKEN, START_TOKEN, random_text_encoder

# Bump when the architecture below changes, so stale folders are not reused.
TINY_VERSION = 2
DEFAULT_TINY_DIR = os.path.join(REPO_ROOT, "model", f"tiny-sd-v{TINY_VERSION}")
TINY_CLIP_NAME = "b2diffurl-tiny-clip"
TINY_CLIP_WEIGHTS = "open_clip_model.safetensors"

# SD v1.4's noise schedule (its scheduler_config.json), kept so timesteps and alphas are the real ones.
SD14_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    skip_prk_steps=True,
)

TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def _byte_alphabet():
    """The 256 printable characters byte-level BPE uses for the bytes 0..255."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def tiny_tokenizer_vocab():
    """Character-level CLIP vocabulary: every byte character, alone and word-final, plus specials."""
    chars = _byte_alphabet()
    tokens = chars + [c + "</w>" for c in chars] + [START_TOKEN, END_TOKEN]
    return {tok: i for i, tok in enumerate(tokens)}


TINY_VARIANTS = ("sd14", "sd21", "sdxl")
# the folder each variant is built in by default (the tiny presets: tiny, tiny,sd21, tiny,sdxl)
TINY_DIRS = {
    "sd14": DEFAULT_TINY_DIR,
    "sd21": os.path.join(REPO_ROOT, "model", f"tiny-sd21-v{TINY_VERSION}"),
    "sdxl": os.path.join(REPO_ROOT, "model", f"tiny-sdxl-v{TINY_VERSION}"),
}


def _text_shape(vocab, hidden_act):
    """The tiny text encoders' CLIPTextConfig fields (``hidden_act``: quick-GELU as CLIP's, GELU as OpenCLIP's)."""
    return dict(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        projection_dim=32,
        hidden_act=hidden_act,
    )


def _build_components(seed, variant="sd14"):
    """The tiny pipeline's parts, at tiny sizes, differing as the real backbones differ.

    sd14: SD v1.4 (CLIP text encoder with quick-GELU, convolutional projections in the UNet's
    transformers, PNDM scheduler file, epsilon prediction).
    sd21: SD 2.x (GELU text encoder as OpenCLIP's, linear projections, a DDIM scheduler that predicts v).
    sdxl: SDXL base (two text encoders, the second with a projection whose pooled output and the six
    add_time_ids feed the UNet's "text_time" embedding; cross-attention over both encoders'
    concatenated states; a VAE with SDXL's scaling factor and force_upcast; the Euler scheduler file).
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTokenizer

    if variant not in TINY_VARIANTS:
        raise ValueError(f"tiny variant {variant!r} is not one of {', '.join(TINY_VARIANTS)}")
    vocab = tiny_tokenizer_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=64)
    torch.manual_seed(seed)
    xl = variant == "sdxl"
    blocks = (
        dict(
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=64,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=6 * 8 + 32,  # 6 time ids x 8 + text_encoder_2's projection_dim
            transformer_layers_per_block=(1, 2),
        )
        if xl
        else dict(
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        attention_head_dim=8,
        norm_num_groups=8,
        use_linear_projection=variant != "sd14",
        **blocks,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        latent_channels=4,
        # One normalisation group: a random decoder then keeps the latents' relative channel means,
        # so the image colour depends on the latents (with more groups it is nearly constant, and
        # no policy could change the demo's colour reward).
        norm_num_groups=1,
        sample_size=32,
        **(dict(scaling_factor=0.13025, force_upcast=True) if xl else {}),
    )
    text_encoder = random_text_encoder(_text_shape(vocab, "quick_gelu" if variant != "sd21" else "gelu"), vocab)
    parts = dict(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler={"sd14": sd14_scheduler, "sd21": sd2_scheduler, "sdxl": sdxl_scheduler}[variant](),
    )
    if xl:
        text_encoder_2 = random_text_encoder(_text_shape(vocab, "gelu"), vocab, projection=True)
        parts.update(text_encoder_2=text_encoder_2, tokenizer_2=tokenizer)
    return parts


def sd14_scheduler():
    """SD v1.4's scheduler as its file has it (PNDM; the stages switch to DDIM with the same schedule)."""
    from diffusers import PNDMScheduler

    pndm_keys = (
        "num_train_timesteps",
        "beta_start",
        "beta_end",
        "beta_schedule",
        "set_alpha_to_one",
        "steps_offset",
        "skip_prk_steps",
    )
    scheduler = PNDMScheduler(**{k: SD14_SCHEDULER[k] for k in pndm_keys})
    # SD v1.4's file also carries clip_sample=False, read when the loader switches to DDIM.
    scheduler.register_to_config(clip_sample=SD14_SCHEDULER["clip_sample"])
    return scheduler


def sd2_scheduler():
    """SD 2.x's scheduler as stabilityai/stable-diffusion-2-1's file has it: DDIM, SD v1's noise schedule,
    v-prediction (the 768 px models)."""
    from diffusers import DDIMScheduler

    keys = (
        "num_train_timesteps",
        "beta_start",
        "beta_end",
        "beta_schedule",
        "clip_sample",
        "set_alpha_to_one",
        "steps_offset",
    )
    return DDIMScheduler(**{k: SD14_SCHEDULER[k] for k in keys}, prediction_type="v_prediction")


def sdxl_scheduler():
    """SDXL base's scheduler as its file has it: Euler, SD v1's noise schedule, epsilon, "leading"
    spacing; the file also carries DDIM's keys (set_alpha_to_one false, clip_sample false), read when
    the loader switches to DDIM."""
    from diffusers import EulerDiscreteScheduler

    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "steps_offset")
    scheduler = EulerDiscreteScheduler(**{k: SD14_SCHEDULER[k] for k in keys}, timestep_spacing="leading")
    scheduler.register_to_config(
        **{k: SD14_SCHEDULER[k] for k in ("clip_sample", "set_alpha_to_one", "skip_prk_steps")}
    )
    return scheduler


def _save_tiny_clip(out_dir, seed):
    import open_clip
    import torch
    from safetensors.torch import save_file

    config_path = os.path.join(out_dir, f"{TINY_CLIP_NAME}.json")
    with open(config_path, "w") as f:
        json.dump(TINY_CLIP_CONFIG, f, indent=1)
    open_clip.add_model_config(config_path)
    torch.manual_seed(seed + 1)
    model = open_clip.create_model(TINY_CLIP_NAME, pretrained=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out_dir, TINY_CLIP_WEIGHTS))


def tiny_clip_paths(tiny_dir):
    """(open_clip config JSON, safetensors weights) of the tiny reward model under ``tiny_dir``.

    Pass them as ``reward.clip_model`` and ``reward.clip_pretrained`` to score with it.
    """
    clip_dir = os.path.join(tiny_dir, "clip")
    return os.path.join(clip_dir, f"{TINY_CLIP_NAME}.json"), os.path.join(clip_dir, TINY_CLIP_WEIGHTS)


def build_atomically(out_dir, build):
    """``build(tmp)`` into a temporary sibling folder, then renamed to ``out_dir``; returns ``out_dir``
    (at once when it exists). Concurrent callers (several ranks) are safe: the first rename wins and
    the others, identical by construction, are dropped."""
    if os.path.isdir(out_dir):
        return out_dir
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tiny-", dir=parent)
    try:
        build(tmp)
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not os.path.isdir(out_dir):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def build_tiny_pipeline(out_dir, seed=0, variant="sd14"):
    """Write the tiny pipeline of ``variant`` (sd14, sd21, sdxl: :func:`_build_components`) and ``clip/``
    for the reward to ``out_dir``, through the variant's own diffusers pipeline class; returns ``out_dir``."""

    def build(tmp):
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        parts = _build_components(seed, variant)
        if variant == "sdxl":
            pipeline = StableDiffusionXLPipeline(**parts, force_zeros_for_empty_prompt=True, add_watermarker=False)
        else:
            pipeline = StableDiffusionPipeline(
                **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
            )
        pipeline.save_pretrained(tmp)
        os.makedirs(os.path.join(tmp, "clip"))
        _save_tiny_clip(os.path.join(tmp, "clip"), seed)

    return build_atomically(out_dir, build)


def build_tiny_model(out_dir):
    """``pretrained.build_tiny``: build the tiny pipeline at ``out_dir``, of the variant whose default
    folder (:data:`TINY_DIRS`) it is; any other folder gets SD v1.4's variant."""
    variants = {os.path.abspath(path): name for name, path in TINY_DIRS.items()}
    return build_tiny_pipeline(out_dir, variant=variants.get(os.path.abspath(out_dir), "sd14"))


if __name__ == "__main__":
    import sys

    print(build_tiny_model(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_TINY_DIR))
