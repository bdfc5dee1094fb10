"""The backbone seam: everything that differs between the supported text-to-image models.

Sampling, selection, training and evaluation call only this module for the model's own side of the
work: loading the pipeline, encoding prompts (and the unconditional prompt for classifier-free
guidance), the UNet call with its extra conditioning, the latent shape and the VAE decode. The
policy math (``b2diffurl.ddim``) and LoRA (``b2diffurl.models``) are backbone-free.

Backbones (picked from the checkpoint's own ``model_index.json``, never from a flag):
- ``sd``: ``StableDiffusionPipeline`` checkpoints, SD v1.x (CLIP ViT-L/14 text encoder, 512 px,
  epsilon prediction) and SD 2.x (OpenCLIP ViT-H text encoder inside ``CLIPTextModel``, 768 px,
  v-prediction: the DDIM step follows the scheduler config's ``prediction_type``).
- ``sdxl``: ``StableDiffusionXLPipeline`` checkpoints: two text encoders whose penultimate hidden
  states are concatenated, the second one's pooled projection and the micro-conditioning
  ``add_time_ids`` (original size, crop top-left, target size) as the pipeline builds them; the
  unconditional prompt is all zeros when the checkpoint sets ``force_zeros_for_empty_prompt`` (as
  SDXL base does); the VAE decodes in fp32 when its config sets ``force_upcast``. The refiner
  (``StableDiffusionXLImg2ImgPipeline``, no first text encoder) is not supported.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

# torch is imported where it is used: b2diffurl.checks reads model_index.json through this module
# before any heavy import.
if TYPE_CHECKING:
    import torch

# model_index.json's _class_name -> backbone
BACKBONES = {"StableDiffusionPipeline": "sd", "StableDiffusionXLPipeline": "sdxl"}
# the parts each backbone needs, by their model_index.json keys
REQUIRED_PARTS = {
    "sd": ("unet", "vae", "text_encoder", "tokenizer", "scheduler"),
    "sdxl": ("unet", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler"),
}
SUPPORTED_TEXT = "StableDiffusionPipeline (SD v1.x, SD 2.x) and StableDiffusionXLPipeline (SDXL base)"


@dataclass
class Conditioning:
    """What the UNet is conditioned on, for N prompts (rows); indexable and batchable like a tensor.

    hidden: [N, L, D] text-encoder hidden states (SDXL: both encoders' penultimate layers, concatenated).
    pooled: [N, P] SDXL's pooled projection of text_encoder_2 (``text_embeds``); None for SD v1/2.
    time_ids: [N, 6] SDXL's micro-conditioning (original h, w, crop top, left, target h, w); None for SD v1/2.
    """

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    def _map(self, fn):
        return Conditioning(*(None if v is None else fn(v) for v in (self.hidden, self.pooled, self.time_ids)))

    def __len__(self):
        return self.hidden.shape[0]

    def __getitem__(self, rows):
        return self._map(lambda v: v[rows])

    @property
    def device(self):
        return self.hidden.device

    @property
    def dtype(self):
        return self.hidden.dtype

    def to(self, *args, **kwargs):
        return self._map(lambda v: v.to(*args, **kwargs))

    def repeat_interleave(self, repeats, dim=0):
        """Each row ``repeats`` times in a row (rows only: ``dim`` must be 0)."""
        if dim != 0:
            raise ValueError("Conditioning repeats rows only (dim=0)")
        return self._map(lambda v: v.repeat_interleave(repeats, dim=0))

    def expand(self, n):
        """A one-row conditioning seen as ``n`` rows (no copy)."""
        return self._map(lambda v: v.expand(n, *v.shape[1:]))

    def placed(self, rows, n):
        """An ``n``-row conditioning with this one's rows at ``rows`` ([len(self)] indices) and zeros elsewhere."""
        import torch

        def place(v):
            out = torch.zeros((n, *v.shape[1:]), dtype=v.dtype, device=v.device)
            out[rows.to(v.device)] = v
            return out

        return self._map(place)

    @staticmethod
    def cat(parts):
        """Rows of ``parts`` (Conditionings of one backbone) one after the other."""
        import torch

        fields = zip(*((p.hidden, p.pooled, p.time_ids) for p in parts))
        return Conditioning(*(None if f[0] is None else torch.cat(f) for f in fields))

    def unet_kwargs(self, dtype):
        """Keyword arguments of ``UNet2DConditionModel.forward`` for these rows, cast to ``dtype``."""
        kwargs = {"encoder_hidden_states": self.hidden.to(dtype)}
        if self.pooled is not None:
            kwargs["added_cond_kwargs"] = {"text_embeds": self.pooled.to(dtype), "time_ids": self.time_ids.to(dtype)}
        return kwargs


# ---------------------------------------------------------------- which backbone


def read_model_index(model, revision="main"):
    """The checkpoint's model_index.json (dict): from the folder, or the hub cache (offline) or hub."""
    return _read_json(model, "model_index.json", revision)


def index_problem(index):
    """Why this model_index.json (dict) is not a supported backbone (text for an error), else None."""
    name = index.get("_class_name")
    if name not in BACKBONES:
        return f"is a {name} checkpoint (model_index.json's _class_name), which is not supported: use {SUPPORTED_TEXT}"
    missing = [part for part in REQUIRED_PARTS[BACKBONES[name]] if not _has_part(index.get(part))]
    if missing:
        return (
            f"is a {name} checkpoint without its {' and '.join(missing)} (model_index.json): "
            f"use a complete {name} checkpoint (the SDXL refiner, without a first text encoder, is not supported)"
        )
    return None


def _has_part(entry):
    return isinstance(entry, (list, tuple)) and len(entry) == 2 and all(entry)


def backbone_of(index):
    """``sd`` or ``sdxl`` for a supported model_index.json (dict); ValueError naming the problem otherwise."""
    if (problem := index_problem(index)) is not None:
        raise ValueError(problem)
    return BACKBONES[index["_class_name"]]


def checkpoint_record(model, revision="main"):
    """What ``model`` resolves to, for a run's record: {"pipeline": model_index.json's class, "backbone":
    sd or sdxl, "prediction_type": the scheduler's (epsilon, v_prediction, ...)}; {} when its
    model_index.json cannot be read (the checks before round 0 name that problem)."""
    try:
        index = read_model_index(model, revision)
    except (OSError, ValueError):
        return {}
    record = {"pipeline": index.get("_class_name"), "backbone": BACKBONES.get(index.get("_class_name"))}
    try:
        record["prediction_type"] = _read_json(model, "scheduler/scheduler_config.json", revision).get(
            "prediction_type", "epsilon"
        )
    except (OSError, ValueError):
        pass
    return record


def _read_json(model, name, revision):
    """A JSON file of the checkpoint: from the folder, or the hub cache (offline) or hub."""
    if os.path.isdir(model):
        path = os.path.join(model, name)
    else:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(model, name, revision=revision)
    with open(path) as f:
        return json.load(f)


def backbone(pipeline):
    """``sd`` or ``sdxl`` for a loaded pipeline."""
    return "sdxl" if getattr(pipeline, "text_encoder_2", None) is not None else "sd"


def pipeline_class(name):
    """The diffusers pipeline class of a backbone name."""
    import diffusers

    return getattr(diffusers, {v: k for k, v in BACKBONES.items()}[name])


# ---------------------------------------------------------------- loading


def text_encoders(pipeline):
    """The pipeline's text encoders (one for SD v1/2, two for SDXL)."""
    return [e for e in (pipeline.text_encoder, getattr(pipeline, "text_encoder_2", None)) if e is not None]


def frozen_parts(pipeline):
    """Every network of the pipeline (all frozen; LoRA is added to the UNet afterwards)."""
    return [pipeline.vae, *text_encoders(pipeline), pipeline.unet]


def from_pretrained(model, revision, dtype):
    """The checkpoint's own pipeline class, loaded (no safety checker, no watermark), its parts in ``dtype``.

    Raises ValueError (the model_index.json problem) for an unsupported checkpoint; OSError/ValueError
    from diffusers for a missing or broken one.
    """
    import torch

    name = backbone_of(read_model_index(model, revision))
    extra = {"safety_checker": None, "requires_safety_checker": False} if name == "sd" else {"add_watermarker": False}
    pipeline = pipeline_class(name).from_pretrained(model, revision=revision, dtype=dtype, **extra)
    if dtype == torch.float16 and pipeline.vae.config.get("force_upcast", False):
        pipeline.vae.to(torch.float32)  # as the SDXL pipeline does: this VAE overflows in fp16
    return pipeline


# ---------------------------------------------------------------- prompts


def _tokens(tokenizer, prompts, device):
    out = tokenizer(
        list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    return out.input_ids.to(device), out.attention_mask.to(device)


def _image_size(pipeline):
    """(height, width) in pixels the UNet's config is made for (the pipelines' default size)."""
    _, h, w = latent_shape(pipeline)
    factor = vae_scale_factor(pipeline)
    return h * factor, w * factor


def encode_prompts(pipeline, prompts):
    """Conditioning of ``prompts`` (len N) as the backbone's pipeline computes it.

    SD v1/2: the text encoder's last hidden states [N, 77, D] (with the attention mask when the
    encoder's config asks for one). SDXL: both encoders' penultimate hidden states concatenated
    [N, 77, D1 + D2], text_encoder_2's pooled projection [N, P], add_time_ids [N, 6] for the UNet's
    default size with no crop.
    """
    import torch

    with torch.no_grad():
        return _encode(pipeline, prompts)


def _encode(pipeline, prompts):
    import torch

    encoder = pipeline.text_encoder
    if backbone(pipeline) == "sd":
        ids, mask = _tokens(pipeline.tokenizer, prompts, encoder.device)
        use_mask = getattr(encoder.config, "use_attention_mask", False)
        return Conditioning(encoder(ids, attention_mask=mask if use_mask else None)[0])
    hidden, pooled = [], None
    for tokenizer, encoder in (
        (pipeline.tokenizer, pipeline.text_encoder),
        (pipeline.tokenizer_2, pipeline.text_encoder_2),
    ):
        ids, _ = _tokens(tokenizer, prompts, encoder.device)
        out = encoder(ids, output_hidden_states=True)
        if out[0].ndim == 2:  # CLIPTextModelWithProjection: text_embeds, the pooled projection
            pooled = out[0]
        hidden.append(out.hidden_states[-2])
    hidden = torch.cat(hidden, dim=-1)
    h, w = _image_size(pipeline)
    time_ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=hidden.dtype, device=hidden.device).expand(len(prompts), -1)
    return Conditioning(hidden, pooled, time_ids.clone())


def negative_conditioning(pipeline):
    """The unconditional conditioning of classifier-free guidance, one row: the empty prompt's, or
    (SDXL with ``force_zeros_for_empty_prompt``, as SDXL base) zeros with the same add_time_ids."""
    import torch

    empty = encode_prompts(pipeline, [""])
    if backbone(pipeline) == "sdxl" and pipeline.config.get("force_zeros_for_empty_prompt", True):
        return Conditioning(torch.zeros_like(empty.hidden), torch.zeros_like(empty.pooled), empty.time_ids)
    return empty


# ---------------------------------------------------------------- UNet, latents, VAE


def predict_noise(unet, latents, timesteps, cond, negative, guidance_scale):
    """The UNet's prediction after classifier-free guidance, in one UNet call (uncond and cond batched).

    latents: [N, C, H, W]; timesteps: scalar or [N]; cond: Conditioning of N rows; negative: of one row.
    Inputs are cast to the UNet's weight dtype; the result is fp32 [N, C, H, W] (eps, v or x_0: the
    scheduler config's prediction_type). (DDIM's ``scale_model_input`` is the identity, so it is not called.)
    """
    import torch

    dtype = unet.conv_in.weight.dtype
    n = latents.shape[0]
    timesteps = torch.as_tensor(timesteps, device=latents.device)
    if guidance_scale == 1.0:
        return unet(latents.to(dtype), timesteps, **cond.unet_kwargs(dtype)).sample.float()
    model_input = torch.cat([latents, latents]).to(dtype)
    both = Conditioning.cat([negative.expand(n), cond])
    if timesteps.ndim == 1:
        timesteps = timesteps.repeat(2)
    uncond, conditional = unet(model_input, timesteps, **both.unet_kwargs(dtype)).sample.float().chunk(2)
    return uncond + guidance_scale * (conditional - uncond)


def latent_shape(pipeline):
    """(C, h, w) of one latent: the UNet config's in_channels and sample_size."""
    config = pipeline.unet.config
    size = config.sample_size
    h, w = (size, size) if isinstance(size, int) else size
    return config.in_channels, h, w


def vae_scale_factor(pipeline):
    """Pixels per latent cell (8 for SD and SDXL): 2 ** (VAE blocks - 1), as the pipelines compute it."""
    return 2 ** (len(pipeline.vae.config.block_out_channels) - 1)


def decode_images(pipeline, latents, chunk_size=8):
    """Final latents [N, C, h, w] -> uint8 RGB images [N, H, W, 3], decoded ``chunk_size`` at a time (0: all at once).

    Unscaled as the pipelines do (``latents_mean``/``latents_std`` when the VAE config has both, else
    ``1 / scaling_factor``), in the VAE's dtype (fp32 for a ``force_upcast`` VAE, see :func:`from_pretrained`).
    """
    import torch

    with torch.no_grad():
        return _decode(pipeline.vae, latents, chunk_size)


def _decode(vae, latents, chunk_size):
    import torch

    config = vae.config
    mean, std = config.get("latents_mean"), config.get("latents_std")
    images = []
    for part in latents.split(chunk_size or len(latents)):
        part = part.to(device=vae.device, dtype=vae.dtype)
        if mean is not None and std is not None:
            shape = (1, -1, 1, 1)
            part = part * torch.tensor(std).view(shape).to(part) / config.scaling_factor + torch.tensor(mean).view(
                shape
            ).to(part)
        else:
            part = part / config.scaling_factor
        decoded = vae.decode(part).sample
        images.append(((decoded.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).cpu())
    return torch.cat(images).permute(0, 2, 3, 1)
