"""Loading the policy: a Stable Diffusion pipeline (SD v1.x/2.x or SDXL, :mod:`b2diffurl.backbones`)
on DDIM, frozen, with LoRA adapters on the UNet.

LoRA is peft's (``LoraConfig`` + ``unet.add_adapter``); a round's LoRA is saved and loaded in
diffusers format (``pytorch_lora_weights.safetensors``, ``unet.``-prefixed keys), so a stock
pipeline of the checkpoint's class loads it with ``load_lora_weights(dir)``
(``StableDiffusionPipeline`` or ``StableDiffusionXLPipeline``).
"""

import os

import torch

from b2diffurl import heap
from b2diffurl.choices import registry
from b2diffurl.ddim import check_scheduler_config
from b2diffurl.records import LORA_WEIGHTS_NAME

# mixed_precision (b2diffurl.choices.MIXED_PRECISION) -> dtype of the frozen weights
DTYPES = registry(
    {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}, "MIXED_PRECISION", "b2diffurl.models.DTYPES"
)
# sample.latent_dtype (b2diffurl.choices.LATENT_DTYPES; bf16 is refused by b2diffurl.checks) -> dtype on disk
STORAGE_DTYPES = registry(
    {"fp16": torch.float16, "fp32": torch.float32}, "LATENT_DTYPES", "b2diffurl.models.STORAGE_DTYPES"
)
# runtime.attention (b2diffurl.choices.ATTENTIONS) -> diffusers' attention processor (see set_attention)
ATTENTION_PROCESSORS = registry(
    {"sdpa": "AttnProcessor2_0", "math": "AttnProcessor"}, "ATTENTIONS", "b2diffurl.models.ATTENTION_PROCESSORS"
)


def inference_dtype(mixed_precision):
    """dtype of the frozen weights for ``config.mixed_precision`` ("no", "fp16", "bf16")."""
    return DTYPES[mixed_precision]


def quiet_model_libraries():
    """diffusers' and transformers' info chatter and per-component load bars off (their import resets
    the levels that :func:`b2diffurl.cli.quiet_libraries` set, so this runs after it)."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_pipeline(model, revision="main", device="cpu", dtype=torch.float32, build_tiny=False):
    """The checkpoint's pipeline (SD v1.x/2.x or SDXL: :mod:`b2diffurl.backbones`, from its
    model_index.json) from a local folder or hub id, switched to DDIM, every weight frozen and cast to
    ``dtype``.

    An unsupported checkpoint (another pipeline class, SDXL without its second text encoder) or a
    scheduler config the DDIM policy step cannot follow (dynamic thresholding, linspace spacing, ...)
    is a ConfigError, raised before the weights are moved to ``device``.
    """
    from diffusers import DDIMScheduler

    from b2diffurl import backbones
    from b2diffurl.errors import ConfigError, first_line

    quiet_model_libraries()
    if build_tiny and not os.path.isdir(model):
        from b2diffurl.tiny import build_tiny_model

        build_tiny_model(model)

    def unloadable(err):  # not cached offline, unreachable, not a pipeline folder, incomplete or corrupt
        return ConfigError(
            "pretrained.model",
            model,
            f"could not be loaded ({first_line(err)}): point it at a complete diffusers folder, "
            "or at a hub id that is cached (HF_HUB_OFFLINE=1) or reachable",
        )

    try:
        index = backbones.read_model_index(model, revision)
    except (OSError, ValueError) as err:
        raise unloadable(err) from None
    if (problem := backbones.index_problem(index)) is not None:
        raise ConfigError("pretrained.model", model, problem)
    try:
        pipeline = backbones.from_pretrained(model, revision, dtype)
    except (OSError, ValueError) as err:
        raise unloadable(err) from None
    pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
    check_scheduler_config(pipeline.scheduler.config, model)  # thresholding, linspace spacing, ...: refused here
    for part in backbones.frozen_parts(pipeline):
        part.requires_grad_(False)
        part.to(device)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def attach_lora(unet, rank, target_modules, seed=0):
    """Add a trainable LoRA adapter and return its parameters (fp32).

    B = 0, so the policy starts as the base model; A ~ N(0, 1/rank^2) (peft's "gaussian" init) drawn
    from a CPU generator seeded by ``seed``, so every process and device starts from the same A.
    """
    from peft import LoraConfig

    unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(target_modules))
    )
    generator = torch.Generator().manual_seed(seed)
    params = []
    for name, p in unet.named_parameters():
        if p.requires_grad:
            init = torch.randn(p.shape, generator=generator) / rank if "lora_A" in name else torch.zeros(p.shape)
            p.data = init.to(p.device)
            params.append(p)
    return params


def lora_state_dict(unet):
    """The UNet's LoRA weights, diffusers naming (what ``save_lora_weights`` expects)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))


def save_lora(unet, out_dir):
    """Write ``out_dir/pytorch_lora_weights.safetensors`` (diffusers format)."""
    from diffusers import StableDiffusionPipeline

    state = {k: v.detach().float().cpu().contiguous() for k, v in lora_state_dict(unet).items()}
    StableDiffusionPipeline.save_lora_weights(out_dir, unet_lora_layers=state, safe_serialization=True)


def load_lora(unet, lora_dir):
    """Load a LoRA saved by :func:`save_lora` into the UNet's (already attached) adapter."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_unet_state_dict_to_peft
    from peft.utils import set_peft_model_state_dict

    path = os.path.join(lora_dir, LORA_WEIGHTS_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"resume_from={lora_dir!r} holds no {LORA_WEIGHTS_NAME}; point it at a round's lora/ folder"
        )
    state, _ = StableDiffusionPipeline.lora_state_dict(lora_dir)
    state = {k.removeprefix("unet."): v for k, v in state.items() if k.startswith("unet.")}
    result = set_peft_model_state_dict(unet, convert_unet_state_dict_to_peft(state), adapter_name="default")
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"LoRA in {lora_dir} does not match this UNet (unexpected keys such as {unexpected[0]})")
    lora = [p for p in unet.parameters() if p.requires_grad]
    for p in lora:
        p.data = p.data.float()
    if not all(torch.isfinite(p).all() for p in lora):
        from b2diffurl.errors import NonFiniteError

        raise NonFiniteError(
            f"the LoRA in {lora_dir} holds NaN/inf weights: resume from an earlier round's lora/ folder"
        )


def storage_dtype(name):
    """torch dtype of the interval latents on disk for ``config.sample.latent_dtype``."""
    return STORAGE_DTYPES[name]


def set_attention(unet, attention):
    """The UNet's attention implementation (``config.runtime.attention``): "sdpa" (torch's
    scaled_dot_product_attention, fused kernels) or "math" (diffusers' plain AttnProcessor)."""
    from diffusers.models import attention_processor

    if attention not in ATTENTION_PROCESSORS:
        raise ValueError(f"runtime.attention={attention!r} is not known; choose from {list(ATTENTION_PROCESSORS)}")
    unet.set_attn_processor(getattr(attention_processor, ATTENTION_PROCESSORS[attention])())


def set_channels_last(pipeline):
    """UNet and VAE weights in channels-last layout (``config.runtime.channels_last``)."""
    for part in (pipeline.unet, pipeline.vae):
        part.to(memory_format=torch.channels_last)


def load_policy(config, device):
    """Pipeline + LoRA for a round: the base model with round r-1's LoRA (``config.resume_from``) if any,
    run as ``config.runtime`` says (attention, memory layout, torch.compile of the UNet: speed only)."""
    pipeline = load_pipeline(
        config.pretrained.model,
        config.pretrained.revision,
        device,
        inference_dtype(config.mixed_precision),
        build_tiny=config.pretrained.build_tiny,
    )
    runtime = config.runtime
    set_attention(pipeline.unet, runtime.attention)
    if runtime.channels_last:
        set_channels_last(pipeline)
    attach_lora(pipeline.unet, config.lora.rank, config.lora.target_modules)
    if config.resume_from:
        load_lora(pipeline.unet, config.resume_from)
    if runtime.compile_unet:
        pipeline.unet.compile()  # in place: the module (its config, adapters, parameters) stays the same object
    heap.settle()  # see b2diffurl.heap
    return pipeline
