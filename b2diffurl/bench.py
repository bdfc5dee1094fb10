"""Paper-scale benchmark: the three stages at SD v1.4 size (or SD 2.1's, SDXL's), with random weights.

    python -m b2diffurl.bench --small          # CPU: SD v1.4's networks at 64 x 64 pixels, a few minutes
    python -m b2diffurl.bench                  # GPU: 512 x 512, fp16, the paper's batch sizes
    python -m b2diffurl.bench --backbone sdxl  # GPU: SDXL base's networks at 1024 x 1024 (sd21: SD 2.1's, 768)

It builds, from configs written here (nothing is downloaded), a diffusers folder with exactly SD
v1.4's UNet2DConditionModel, AutoencoderKL and CLIP ViT-L/14 text encoder (``--backbone sd21``: SD
2.1's UNet and OpenCLIP ViT-H text encoder, v-prediction; ``sdxl``: SDXL base's UNet, VAE and both
text encoders), and an open_clip ViT-H-14 checkpoint (open_clip's own config), all with random
weights: shapes, FLOPs, memory and load times are the real ones. It then runs ``run_sample.py``, ``run_select.py`` and ``run_train.py``
as a user does (own processes, the default config, the paper's settings) on one round, and times
the bare UNet in a tight batched loop at the same batch sizes. Per stage it reports seconds, model
load seconds, process start-up, UNet image-forwards per second, **efficiency** (the stage's UNet (or
CLIP) work at the bare rate, divided by the stage's seconds), peak memory (CUDA max allocated on a
GPU, peak RSS on the CPU) and bytes written; then the bytes a round keeps at paper scale, and the
projected wall time of a default run's 25.6k reward queries.

Models are built once under ``model/bench/`` (about 4 GB at fp16, reused; delete it to rebuild).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DIR = os.path.join(REPO_ROOT, "model", "bench")
BENCH_VERSION = 2  # bump when the built models change (2: the ViT-H-14 checkpoint written tensor by tensor)
CLIP_ARCH = "ViT-H-14"
CLIP_FILE = "open_clip_vit_h_14_random.safetensors"

# SD v1.4's unet/config.json (sample_size set per resolution: latent = pixels / 8)
SD14_UNET = dict(
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
    act_fn="silu",
    center_input_sample=False,
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=0,
    mid_block_scale_factor=1,
)
# SD v1.4's vae/config.json
SD14_VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=2,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    norm_num_groups=32,
    act_fn="silu",
    scaling_factor=0.18215,
)
# CLIP ViT-L/14's text tower (SD v1.4's text_encoder/config.json)
SD14_TEXT = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=768,
)
# stabilityai/stable-diffusion-2-1's unet/config.json (768 px: sample_size 96)
SD21_UNET = dict(
    SD14_UNET,
    attention_head_dim=(5, 10, 20, 20),
    cross_attention_dim=1024,
    use_linear_projection=True,
    upcast_attention=True,
)
# its text_encoder/config.json: OpenCLIP ViT-H/14's text tower, 23 of its 24 layers
SD21_TEXT = dict(
    vocab_size=49408,
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=23,
    num_attention_heads=16,
    max_position_embeddings=77,
    hidden_act="gelu",
    projection_dim=512,
)
# stabilityai/stable-diffusion-xl-base-1.0's unet/config.json (1024 px: sample_size 128)
SDXL_UNET = dict(
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
    norm_num_groups=32,
    act_fn="silu",
    flip_sin_to_cos=True,
    freq_shift=0,
)
SDXL_VAE = dict(SD14_VAE, scaling_factor=0.13025, force_upcast=True)
# its text_encoder_2/config.json: OpenCLIP ViT-bigG/14's text tower, with its projection
SDXL_TEXT_2 = dict(
    vocab_size=49408,
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    max_position_embeddings=77,
    hidden_act="gelu",
    projection_dim=1280,
)
BACKBONES = ("sd14", "sd21", "sdxl")
NATIVE_RESOLUTION = {"sd14": 512, "sd21": 768, "sdxl": 1024}
BACKBONE_TEXT = {
    "sd14": "SD v1.4's UNet / VAE / ViT-L/14 text encoder",
    "sd21": "SD 2.1's UNet (v-prediction) / VAE / OpenCLIP ViT-H text encoder",
    "sdxl": "SDXL base's UNet / VAE / ViT-L/14 and OpenCLIP ViT-bigG text encoders",
}


@dataclass(frozen=True)
class Setting:
    """One benchmark setting: the round it runs (paper values unless named)."""

    name: str
    resolution: int  # image pixels (latents are resolution / 8)
    num_batches: int  # prompt batches sampled (sample.num_batches_per_epoch)
    batch_size: int = 8  # prompts per sampling batch (sample.batch_size)
    split_time: int = 3
    split_step: int = 14  # k of round 0
    num_steps: int = 20
    mixed_precision: str = "fp16"
    forward_chunk: int = 4  # train.forward_chunk (the default)
    train_batch_size: int = 2
    reward_batch_size: int = 32
    decode_batch_size: int = 8
    gradient_checkpointing: bool = False
    channels_last: bool = False
    attention: str = "sdpa"
    compile_unet: bool = False
    repeats: int = 3  # bare-UNet timing: timed iterations after one warm-up
    backbone: str = "sd14"  # the networks' shapes: sd14, sd21, sdxl (BACKBONES)


SETTINGS = {
    "small": Setting("small", resolution=64, num_batches=1, batch_size=2, mixed_precision="no", repeats=5),
    "full": Setting("full", resolution=512, num_batches=4, batch_size=8, mixed_precision="fp16", repeats=5),
}


# ---------------------------------------------------------------- models


def model_dir(resolution, root=BENCH_DIR, backbone="sd14"):
    return os.path.join(root, f"{backbone}-random-{resolution}px-v{BENCH_VERSION}")


def write_random_open_clip(path, arch=CLIP_ARCH, dtype="float16", seed=0):
    """A random open_clip checkpoint of ``arch`` at ``path`` (.safetensors, ``dtype``), written one tensor
    at a time from the shapes of a model on the meta device (no model in memory): weights N(0, 0.02),
    biases 0, norm scales 1, logit_scale log(1 / 0.07). Returns the weights' bytes at ``dtype``."""
    import math

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


def _text_encoder(cls, shape, vocab):
    from transformers import CLIPTextConfig

    return cls(
        CLIPTextConfig(
            **shape,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        )
    )


def random_pipeline(resolution, backbone="sd14"):
    """The random pipeline of ``backbone``'s shapes, its UNet made for ``resolution`` pixels."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from b2diffurl.tiny import sd2_scheduler, sd14_scheduler, sdxl_scheduler, tiny_tokenizer_vocab

    vocab = tiny_tokenizer_vocab()  # any tokenizer of 77 tokens: ids only select embedding rows
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    unet_shape, vae_shape, text_shape = {
        "sd14": (SD14_UNET, SD14_VAE, SD14_TEXT),
        "sd21": (SD21_UNET, SD14_VAE, SD21_TEXT),
        "sdxl": (SDXL_UNET, SDXL_VAE, SD14_TEXT),
    }[backbone]
    parts = dict(
        unet=UNet2DConditionModel(sample_size=resolution // 8, **unet_shape),
        vae=AutoencoderKL(sample_size=resolution, **vae_shape),
        text_encoder=_text_encoder(CLIPTextModel, text_shape, vocab),
        tokenizer=tokenizer,
    )
    with torch.no_grad():  # keep a random UNet's output at the scale of a trained one's (about unit variance)
        parts["unet"].conv_out.weight.mul_(0.1)
    if backbone == "sdxl":
        return StableDiffusionXLPipeline(
            **parts,
            text_encoder_2=_text_encoder(CLIPTextModelWithProjection, SDXL_TEXT_2, vocab),
            tokenizer_2=tokenizer,
            scheduler=sdxl_scheduler(),
            force_zeros_for_empty_prompt=True,
            add_watermarker=False,
        )
    scheduler = sd2_scheduler() if backbone == "sd21" else sd14_scheduler()
    return StableDiffusionPipeline(
        **parts, scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )


def build_models(folder, resolution, seed=0, backbone="sd14"):
    """Write the random pipeline of ``backbone``'s shapes (fp16 safetensors) and the random ViT-H-14
    checkpoint to ``folder`` unless they are there; returns (pipeline folder, open_clip checkpoint path).
    SD 2.1's and SDXL's networks are built in fp16 directly (SDXL's UNet is 10 GB in fp32)."""
    clip_path = os.path.join(folder, "clip", CLIP_FILE)
    if os.path.isfile(os.path.join(folder, "model_index.json")) and os.path.isfile(clip_path):
        return folder, clip_path
    import shutil
    import tempfile

    import torch

    os.makedirs(os.path.dirname(folder), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".bench-", dir=os.path.dirname(folder))
    try:
        print(
            f"building {BACKBONE_TEXT[backbone]} (random) at {resolution} x {resolution} in {folder} (once)", flush=True
        )
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
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder, clip_path


# ---------------------------------------------------------------- running the stages


def setting_overrides(setting, pipeline_dir, clip_path, save_path):
    """{config field: value} of one round of ``setting`` (the default config otherwise)."""
    return {
        "pretrained.model": pipeline_dir,
        "reward.clip_model": CLIP_ARCH,
        "reward.clip_pretrained": clip_path,
        "reward.batch_size": setting.reward_batch_size,
        "save_path": save_path,
        "exp_name": f"bench_{setting.name}",
        "run_name": "round_000",
        "mixed_precision": setting.mixed_precision,
        "split_step": setting.split_step,
        "split_time": setting.split_time,
        "sample.num_steps": setting.num_steps,
        "sample.batch_size": setting.batch_size,
        "sample.num_batches_per_epoch": setting.num_batches,
        "sample.decode_batch_size": setting.decode_batch_size,
        "train.batch_size": setting.train_batch_size,
        "train.forward_chunk": setting.forward_chunk,
        "train.gradient_checkpointing": setting.gradient_checkpointing,
        "runtime.channels_last": setting.channels_last,
        "runtime.attention": setting.attention,
        "runtime.compile_unet": setting.compile_unet,
    }


def stage_flags(setting, pipeline_dir, clip_path, save_path):
    """The stage scripts' flags for one round of ``setting``."""
    overrides = setting_overrides(setting, pipeline_dir, clip_path, save_path)
    return [f"--config={os.path.join(REPO_ROOT, 'config', 'stage_process.py')}"] + [
        f"--config.{k}={v}" for k, v in overrides.items()
    ]


def run_measured(argv, env=None):
    """Run ``argv`` as its own process; returns (wall seconds, peak RSS bytes of that process, output).
    A failure raises with the process's last output lines."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(argv[:2])} failed with exit status {proc.returncode}:\n{tail}")
    return wall, usage.ru_maxrss * 1024, output


def import_seconds(modules):
    """Seconds a fresh interpreter takes to start and import ``modules`` (one run)."""
    wall, _, _ = run_measured([sys.executable, "-c", "import " + ", ".join(modules)])
    return wall


# modules each stage script imports before it loads a model
STAGE_IMPORTS = {
    "sample": [
        "b2diffurl.cli",
        "b2diffurl.checks",
        "accelerate",
        "b2diffurl.models",
        "b2diffurl.sampler",
        "diffusers",
        "transformers",
    ],
    "select": [
        "b2diffurl.cli",
        "b2diffurl.checks",
        "accelerate",
        "b2diffurl.rewards",
        "b2diffurl.selection",
        "open_clip",
    ],
    "train": [
        "b2diffurl.cli",
        "b2diffurl.checks",
        "accelerate",
        "b2diffurl.models",
        "b2diffurl.trainer",
        "diffusers",
        "transformers",
        "peft",
    ],
}


def setting_config(setting, pipeline_dir, clip_path, save_path):
    """The config the stages get for ``setting`` (what :func:`stage_flags` passes them), for in-process work."""
    from b2diffurl.driver import set_field

    sys.path.insert(0, REPO_ROOT)
    from config.stage_process import get_config

    config = get_config()
    for field, value in setting_overrides(setting, pipeline_dir, clip_path, save_path).items():
        set_field(config, field, value)
    return config


# ---------------------------------------------------------------- the bare UNet (and CLIP) in a tight loop


def _memory_mark():
    """Start measuring peak memory: CUDA peak stats reset, or (CPU) the kernel's peak-RSS mark reset."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    with open("/proc/self/clear_refs", "w") as f:  # "5" resets VmHWM (peak RSS) to the current RSS
        f.write("5")
    return _proc_status("VmRSS")


def _memory_peak_since(mark):
    """Bytes the peak rose above ``mark`` (CUDA max allocated, or the CPU's peak RSS)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() - mark
    return _proc_status("VmHWM") - mark


def _proc_status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _timed(fn, repeats):
    """(seconds per call of ``fn``, seconds of its first call): the fastest of ``repeats`` calls after
    one warm-up call (the hardware's limit; on a shared machine the median wanders by tens of
    percent; torch.compile compiles in the warm-up), synchronising a GPU."""
    import torch

    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    started = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - started)
    return min(times), first


def bare_rates(setting, pipeline_dir, clip_path, parts=("sample", "train", "clip")):
    """Seconds per call of the bare UNet (LoRA attached, CFG rows batched as the stages do) at the
    stages' batch sizes, and of the CLIP image tower at the reward's; plus the peak memory of each
    part on a GPU. Returns a dict."""
    import torch

    from b2diffurl.backbones import encode_prompts, negative_conditioning, predict_noise
    from b2diffurl.models import load_policy
    from b2diffurl.perf import cfg_factor

    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = setting_config(setting, pipeline_dir, clip_path, os.path.join(BENCH_DIR, "unused"))
    out = {"device": device}
    pipeline = load_policy(config, device)
    unet = pipeline.unet
    latent = setting.resolution // 8  # the UNet is convolutional: one folder serves every resolution here
    generator = torch.Generator().manual_seed(0)
    negative = negative_conditioning(pipeline)  # the backbone's own conditioning (SDXL: pooled, time ids)
    prompt = encode_prompts(pipeline, ["a photo of a red apple"])
    rows = cfg_factor(config.sample.guidance_scale)

    def inputs(n):
        x = torch.randn(n, 4, latent, latent, generator=generator).to(device)
        return x, prompt.expand(n), torch.full((n,), 501, device=device)

    if "sample" in parts:
        unet.eval()
        for label, n in (("pre_branch", setting.batch_size), ("branches", setting.batch_size * setting.split_time)):
            x, embeds, t = inputs(n)
            mark = _memory_mark()
            with torch.no_grad():
                out[f"sample_{label}_seconds"], out[f"sample_{label}_first_call_seconds"] = _timed(
                    lambda: predict_noise(unet, x, t, embeds, negative, config.sample.guidance_scale),
                    setting.repeats,
                )
            out[f"sample_{label}_rows"] = rows * n
            out[f"sample_{label}_activation_bytes"] = _memory_peak_since(mark)
    if "train" in parts:
        unet.train()
        if setting.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        x, embeds, t = inputs(setting.forward_chunk)
        lora = [p for p in unet.parameters() if p.requires_grad]

        def forward_backward():
            eps = predict_noise(unet, x, t, embeds, negative, config.sample.guidance_scale)
            eps.square().mean().backward()
            for p in lora:
                p.grad = None

        mark = _memory_mark()
        out["train_seconds"], out["train_first_call_seconds"] = _timed(forward_backward, setting.repeats)
        out["train_rows"] = rows * setting.forward_chunk
        out["train_activation_bytes"] = _memory_peak_since(mark)  # what forward+backward adds to the loaded model
    pipeline = unet = None  # freed before CLIP loads
    if "clip" in parts:
        from b2diffurl.rewards import ClipScore

        scorer = ClipScore(CLIP_ARCH, clip_path, config.reward.batch_size, device, config.reward.precision)
        n = min(config.reward.batch_size, setting.num_batches * setting.batch_size * setting.split_time)
        size = scorer.model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        pixels = torch.randn(n, 3, size, size, generator=generator).to(device, scorer.dtype)
        with torch.no_grad():
            out["clip_seconds"], _ = _timed(
                lambda: scorer.model.encode_image(pixels), 1 if device == "cpu" else setting.repeats
            )
        out["clip_rows"] = n
    return out


# ---------------------------------------------------------------- the benchmark

STAGES = (("sample", "run_sample.py"), ("select", "run_select.py"), ("train", "run_train.py"))


def _worker(setting, pipeline_dir, clip_path, parts):
    """Run :func:`bare_rates` in its own process (its own peak memory); returns its dict."""
    command = [
        sys.executable,
        "-m",
        "b2diffurl.bench",
        "_bare",
        json.dumps(asdict(setting)),
        pipeline_dir,
        clip_path,
        ",".join(parts),
    ]
    wall, rss, output = run_measured(command)
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_bytes"] = rss
    result["wall_seconds"] = wall
    return result


def run_stages(setting, pipeline_dir, clip_path, workdir):
    """The three stage scripts on one round, each in its own process; returns per-stage measurements."""
    import shutil

    from b2diffurl import records

    save_path = os.path.join(workdir, "runs")
    round_dir = os.path.join(save_path, f"bench_{setting.name}", "round_000")
    if os.path.isdir(os.path.dirname(round_dir)):
        shutil.rmtree(os.path.dirname(round_dir))
    flags = stage_flags(setting, pipeline_dir, clip_path, save_path)
    stages = {}
    for stage, script in STAGES:
        print(f"bench: {stage} ...", flush=True)
        wall, rss, _ = run_measured([sys.executable, os.path.join(REPO_ROOT, script), *flags])
        marker = records.read_marker(round_dir, stage)
        stages[stage] = {
            "wall_seconds": wall,
            "seconds": marker["seconds"],
            "load_seconds": marker["load_seconds"],
            "startup_seconds": max(0.0, wall - marker["seconds"] - marker["load_seconds"]),
            "peak_memory_bytes": rss if marker["peak_memory_kind"] == "peak_rss" else marker["peak_memory_bytes"],
            "peak_memory_kind": marker["peak_memory_kind"],
            "bytes_written": marker["bytes_written"],
            "marker": {k: v for k, v in marker.items() if k != "files"},
        }
    return stages, round_dir


def run_one_process(setting, models, workdir, repeats):
    """A round as the three stage scripts (three processes) and as ``python -m b2diffurl.round`` (one
    process: OneProcess=1), ``repeats`` times each, alternated so that a drift of the machine's speed
    falls on both; returns {"stages": [wall s], "one_process": [wall s], "same_files": bool}."""
    import shutil

    from b2diffurl import records

    pipeline_dir, clip_path = _models(setting, models)
    walls, rounds = {"stages": [], "one_process": []}, {}
    for i in range(repeats):
        for how in walls:
            save_path = os.path.join(workdir, "one_process", how)
            shutil.rmtree(save_path, ignore_errors=True)
            flags = stage_flags(setting, pipeline_dir, clip_path, save_path)
            print(f"bench: round {i + 1}/{repeats}, {how.replace('_', ' ')} ...", flush=True)
            if how == "stages":
                walls[how].append(
                    sum(
                        run_measured([sys.executable, os.path.join(REPO_ROOT, script), *flags])[0]
                        for _, script in STAGES
                    )
                )
            else:
                walls[how].append(run_measured([sys.executable, "-m", "b2diffurl.round", *flags])[0])
            rounds[how] = os.path.join(save_path, f"bench_{setting.name}", "round_000")
    same = all(
        records.read_json(os.path.join(rounds["stages"], name))
        == records.read_json(os.path.join(rounds["one_process"], name))
        for name in ("scores.json",)
    )
    return {**walls, "same_files": same}


def one_process_report(setting, result):
    """Markdown: a round's wall time both ways and what one process saves."""
    import statistics

    stages, one = (statistics.fmean(result[k]) for k in ("stages", "one_process"))
    runs = lambda k: ", ".join(f"{w:.1f}" for w in result[k])  # noqa: E731
    return "\n".join(
        [
            f"A round of setting `{setting.name}` ({setting.resolution} px, {setting.num_batches} batch(es)), {len(result['stages'])} time(s) "
            "each way, alternated:",
            "",
            "| driver | wall s per round (each run) | mean |",
            "| --- | --- | --- |",
            f"| three stage processes (OneProcess=0) | {runs('stages')} | {stages:.1f} |",
            f"| one process (OneProcess=1, python -m b2diffurl.round) | {runs('one_process')} | {one:.1f} |",
            "",
            f"One process saves {stages - one:.1f} s a round ({(stages - one) / stages:.0%}); the scores are "
            + ("the same." if result["same_files"] else "NOT the same: report this."),
        ]
    )


def analyse(setting, stages, bare, round_dir, imports):
    """Rates, efficiencies, disk and the projection from the raw measurements (pure arithmetic)."""
    from b2diffurl import records
    from b2diffurl.perf import (
        PAPER_REWARD_QUERIES,
        disk_per_round,
        rounds_for_queries,
        sampling_forwards,
        schedule_ks,
        training_forwards,
    )

    sys.path.insert(0, REPO_ROOT)
    from config.stage_process import get_config

    s, k = setting, setting.split_step
    default = get_config()  # the benchmark changes no sampling or training setting but the setting's own
    guidance = default.sample.guidance_scale
    select, train = stages["select"], stages["train"]
    trajectories = select["marker"]["trajectories"]
    forwards = s.num_batches * sampling_forwards(s.batch_size, s.split_time, s.num_steps, k, guidance)
    ideal_sample = s.num_batches * (
        (s.num_steps - k) * bare["sample_pre_branch_seconds"] + k * bare["sample_branches_seconds"]
    )
    pairs = train["marker"]["pairs"]
    train_forwards = training_forwards(pairs, guidance)
    ideal_train = train_forwards * bare["train_seconds"] / bare["train_rows"]
    ideal_select = trajectories * bare["clip_seconds"] / bare["clip_rows"]
    rows = {
        "sample": dict(
            work=forwards,
            unit="UNet image-forwards",
            ideal=ideal_sample,
            bare_rate=bare["sample_branches_rows"] / bare["sample_branches_seconds"],
        ),
        "select": dict(
            work=trajectories,
            unit="CLIP images",
            ideal=ideal_select,
            bare_rate=bare["clip_rows"] / bare["clip_seconds"],
        ),
        "train": dict(
            work=train_forwards,
            unit="UNet image-forward+backwards",
            ideal=ideal_train,
            bare_rate=bare["train_rows"] / bare["train_seconds"],
        ),
    }
    for stage, row in rows.items():
        row["rate"] = row["work"] / stages[stage]["seconds"]
        row["efficiency"] = row["ideal"] / stages[stage]["seconds"]
        row["import_seconds"] = imports.get(stage)

    # disk: this run's tensors against the shapes, then a default round at paper scale
    manifest = records.read_json(os.path.join(round_dir, "samples", "manifest.json"))
    latent_shape = manifest["latent_shape"][1:]
    selected = select["marker"]["selected"]
    predicted = trajectories * records.trajectory_nbytes(k, latent_shape, 2) + selected * records.trajectory_nbytes(
        k, latent_shape, 2, selected=True
    )
    measured = sum(
        records.safetensors_payload(os.path.join(round_dir, "samples", b["file"])) for b in manifest["batches"]
    )
    measured += records.safetensors_payload(os.path.join(round_dir, "selected.safetensors"))
    image_bytes = (
        sum(os.path.getsize(os.path.join(round_dir, records.image_name(i))) for i in range(trajectories)) / trajectories
    )
    d_sample, d_process = default.sample, default.process
    per_round = d_sample.batch_size * d_sample.num_batches_per_epoch * default.split_time
    fraction = selected / trajectories
    paper_image = image_bytes if s.resolution == 512 else 512 * 512 * 3  # a PNG is at most about its raw size
    ks = schedule_ks(d_process.stage_cnt, d_process.stage_cnt, d_process.split_step_left, d_process.split_step_right)
    old = [disk_per_round(per_round, kr, [4, 64, 64], 4, fraction, paper_image, keep_latents=True) for kr in ks]
    new = [disk_per_round(per_round, kr, [4, 64, 64], 2, fraction, paper_image, keep_latents=False) for kr in ks]
    disk = {
        "predicted_tensor_bytes": predicted,
        "measured_tensor_bytes": measured,
        "image_bytes_measured": image_bytes,
        "paper_image_bytes": paper_image,
        "selected_fraction": fraction,
        "paper_round0": {"before": old[0], "now": new[0]},
        "paper_run_kept": {"before": sum(r["kept"] for r in old), "now": sum(r["kept"] for r in new)},
        "paper_rounds": len(ks),
    }

    # projected wall time of a default run's first 25.6k reward queries, at this benchmark's achieved rates
    rounds = rounds_for_queries(PAPER_REWARD_QUERIES, per_round)
    fixed = sum(stages[st]["startup_seconds"] + stages[st]["load_seconds"] for st, _ in STAGES)
    total = 0.0
    for kr in schedule_ks(rounds, d_process.stage_cnt, d_process.split_step_left, d_process.split_step_right):
        round_forwards = d_sample.num_batches_per_epoch * sampling_forwards(
            d_sample.batch_size, default.split_time, d_sample.num_steps, kr, d_sample.guidance_scale
        )
        round_pairs = fraction * per_round * kr * default.train.num_epochs
        total += round_forwards / rows["sample"]["rate"] + per_round / rows["select"]["rate"]
        total += training_forwards(round_pairs, d_sample.guidance_scale) / rows["train"]["rate"] + fixed
    projection = {
        "rounds": rounds,
        "reward_queries": rounds * per_round,
        "hours": total / 3600,
        "fixed_seconds_per_round": fixed,
    }
    return {"rows": rows, "disk": disk, "projection": projection}


# ---------------------------------------------------------------- the report


def _gib(n):
    return f"{n / 2**30:.2f} GiB"


def _mib(n):
    return f"{n / 2**20:.1f} MiB"


def report(result):
    """Markdown tables of a benchmark result (what the command prints and docs/PERFORMANCE.md shows)."""
    s, stages, analysis = Setting(**result["setting"]), result["stages"], result["analysis"]
    rows, disk, projection = analysis["rows"], analysis["disk"], analysis["projection"]
    trajectories = stages["select"]["marker"]["trajectories"]
    lines = [
        f"setting `{s.name}` on {result['device']}: {BACKBONE_TEXT[s.backbone]} and open_clip ViT-H-14 "
        f"(random weights) at {s.resolution} x {s.resolution} pixels, mixed_precision {s.mixed_precision}; one round of "
        f"{s.num_batches} batch(es) x {s.batch_size} prompts x {s.split_time} branches = {trajectories} trajectories, "
        f"T = {s.num_steps}, k = {s.split_step}, CFG 5, train batch {s.train_batch_size}, forward_chunk {s.forward_chunk}, "
        f"reward batch {s.reward_batch_size}, gradient checkpointing {s.gradient_checkpointing}, attention {s.attention}, "
        f"channels_last {s.channels_last}; torch {result['torch']}, {result['threads']} thread(s).",
        "",
        "| stage | seconds | model load s | start-up s (imports s) | work | per second (bare) | efficiency | peak memory | bytes written |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for stage, _ in STAGES:
        st, row = stages[stage], rows[stage]
        memory = _gib(st["peak_memory_bytes"]) + (" RSS" if st["peak_memory_kind"] == "peak_rss" else " CUDA")
        lines.append(
            f"| {stage} | {st['seconds']:.1f} | {st['load_seconds']:.1f} | {st['startup_seconds']:.1f} ({row['import_seconds']:.1f}) | "
            f"{row['work']:.0f} {row['unit']} | {row['rate']:.2f} ({row['bare_rate']:.2f}) | {row['efficiency']:.2f} | {memory} | "
            f"{_mib(st['bytes_written'])} |"
        )
    before, now = disk["paper_round0"]["before"], disk["paper_round0"]["now"]
    lines += [
        "",
        f"Stored tensors of this round: {disk['measured_tensor_bytes']} bytes measured, {disk['predicted_tensor_bytes']} computed "
        f"from the shapes ({'equal' if disk['measured_tensor_bytes'] == disk['predicted_tensor_bytes'] else 'DIFFERENT'}). "
        f"Selected fraction {disk['selected_fraction']:.2f}; mean PNG {disk['image_bytes_measured'] / 1024:.1f} KiB.",
        "",
        f"Disk per round at paper scale (768 trajectories, k = 14, latents 4 x 64 x 64, PNG {disk['paper_image_bytes'] / 2**10:.0f} KiB"
        f"{'' if s.resolution == 512 else ' = raw 512 x 512 x 3, an upper bound'}, selected fraction {disk['selected_fraction']:.2f}):",
        "",
        "| | samples/ | selected.safetensors | images | written | kept after training | kept over 100 rounds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| before (fp32, every round kept) | {_mib(before['samples'])} | {_mib(before['selected'])} | {_mib(before['images'])} | "
        f"{_mib(before['written'])} | {_mib(before['kept'])} | {_gib(disk['paper_run_kept']['before'])} |",
        f"| now (fp16, save_interval 0) | {_mib(now['samples'])} | {_mib(now['selected'])} | {_mib(now['images'])} | "
        f"{_mib(now['written'])} | {_mib(now['kept'])} | {_gib(disk['paper_run_kept']['now'])} |",
        "",
        f"Projected wall time of a default run's first {projection['reward_queries']} reward queries ({projection['rounds']} rounds of 768, "
        f"k from the 100-round schedule, at this setting's achieved rates and {s.resolution} x {s.resolution} pixels, one process): "
        f"{projection['hours']:.1f} h ({projection['fixed_seconds_per_round']:.0f} s per round of start-up and loading).",
    ]
    return "\n".join(lines)


def _models(setting, models_root, resolution=None):
    """(pipeline folder, open_clip checkpoint) of ``setting``'s backbone, built once per resolution."""
    resolution = resolution or setting.resolution
    return build_models(model_dir(resolution, models_root, setting.backbone), resolution, backbone=setting.backbone)


def run(setting, workdir, models_root=BENCH_DIR):
    import torch

    pipeline_dir, clip_path = _models(setting, models_root)
    os.makedirs(workdir, exist_ok=True)
    # The bare UNet is timed in one process before the stages and one after, and the faster of the
    # two counts: on a shared machine one process can run 10-40% slower than the next.
    print("bench: bare UNet ...", flush=True)
    before = _worker(setting, pipeline_dir, clip_path, ("sample", "train"))
    stages, round_dir = run_stages(setting, pipeline_dir, clip_path, workdir)
    print("bench: bare UNet and CLIP ...", flush=True)
    bare = _worker(setting, pipeline_dir, clip_path, ("sample", "train", "clip"))
    for key in ("sample_pre_branch_seconds", "sample_branches_seconds", "train_seconds"):
        bare[key] = min(bare[key], before[key])
    bare["bare_before_stages"] = before
    imports = {stage: import_seconds(STAGE_IMPORTS[stage]) for stage, _ in STAGES}
    result = {
        "setting": asdict(setting),
        "device": _device_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "stages": stages,
        "bare": bare,
        "imports": imports,
    }
    result["analysis"] = analyse(setting, stages, bare, round_dir, imports)
    path = os.path.join(workdir, f"{_prefix(setting)}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1, allow_nan=False)
    return result, path


LEVERS = {
    "baseline": {},
    "channels_last": {"channels_last": True},
    "attention math": {"attention": "math"},
    "gradient checkpointing": {"gradient_checkpointing": True},
    "torch.compile": {"compile_unet": True},
    "baseline, again (the machine's noise)": {},
}


def run_levers(setting, models_root, names):
    """The bare UNet (sampling at the branch batch, training at forward_chunk) with each speed lever on
    its own, each in a fresh process; returns {lever: bare dict}."""
    pipeline_dir, clip_path = _models(setting, models_root)
    results = {}
    for name in names:
        print(f"bench: lever {name} ...", flush=True)
        results[name] = _worker(replace(setting, **LEVERS[name]), pipeline_dir, clip_path, ("sample", "train"))
    return results


def levers_report(setting, results):
    base = results["baseline"]
    lines = [
        f"Speed levers, bare UNet at {setting.resolution} x {setting.resolution} pixels ({setting.mixed_precision}): sampling "
        f"{setting.batch_size * setting.split_time * 2} rows per call, training {setting.forward_chunk * 2} rows per forward+backward "
        "(fastest of the timed calls; each lever alone, in a fresh process).",
        "",
        "| lever | sampling s/call | vs baseline | training s/call | vs baseline | training activations | first call s (sampling, training) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['sample_branches_seconds']:.3f} | {base['sample_branches_seconds'] / r['sample_branches_seconds']:.2f}x | "
            f"{r['train_seconds']:.3f} | {base['train_seconds'] / r['train_seconds']:.2f}x | {_gib(r['train_activation_bytes'])} | "
            f"{r['sample_branches_first_call_seconds']:.1f}, {r['train_first_call_seconds']:.1f} |"
        )
    return "\n".join(lines)


def run_memory(setting, models_root, chunks=(1, 2, 4, 8)):
    """Training memory and time per forward+backward against train.forward_chunk, with and without
    gradient checkpointing (one fresh process per point); returns a list of dicts."""
    pipeline_dir, clip_path = _models(setting, models_root, SETTINGS["small"].resolution)
    points = []
    for checkpointing in (False, True):
        for chunk in chunks:
            print(f"bench: memory, forward_chunk {chunk}, gradient checkpointing {checkpointing} ...", flush=True)
            point = replace(setting, forward_chunk=chunk, gradient_checkpointing=checkpointing, repeats=1)
            r = _worker(point, pipeline_dir, clip_path, ("train",))
            points.append(
                {
                    "forward_chunk": chunk,
                    "gradient_checkpointing": checkpointing,
                    "seconds": r["train_seconds"],
                    "activation_bytes": r["train_activation_bytes"],
                    "peak_rss_bytes": r["peak_rss_bytes"],
                }
            )
    return points


def memory_report(setting, points):
    lines = [
        f"Training memory at {setting.resolution} x {setting.resolution} pixels ({setting.mixed_precision}): what one UNet "
        "forward+backward of forward_chunk pairs (2 rows each, CFG) adds to the loaded model "
        "(CUDA max allocated on a GPU, peak RSS on the CPU).",
        "",
        "| forward_chunk | rows | activations | s per forward+backward | activations, checkpointing | s, checkpointing |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    plain = {p["forward_chunk"]: p for p in points if not p["gradient_checkpointing"]}
    saved = {p["forward_chunk"]: p for p in points if p["gradient_checkpointing"]}
    for chunk in sorted(plain):
        a, b = plain[chunk], saved.get(chunk)
        lines.append(
            f"| {chunk} | {2 * chunk} | {_gib(a['activation_bytes'])} | {a['seconds']:.2f} | "
            f"{_gib(b['activation_bytes']) if b else '-'} | {b['seconds']:.2f} |"
            if b
            else f"| {chunk} | {2 * chunk} | {_gib(a['activation_bytes'])} | {a['seconds']:.2f} | - | - |"
        )
    return "\n".join(lines)


def _prefix(setting):
    """Result files' name: bench_small.json, bench_full.json (SD v1.4), bench_sdxl_small.json, ..."""
    return f"bench_{setting.name}" if setting.backbone == "sd14" else f"bench_{setting.backbone}_{setting.name}"


def _device_name():
    import torch

    from b2diffurl.perf import cpu_name

    if torch.cuda.is_available():
        return f"1 x {torch.cuda.get_device_name(0)}"
    return f"CPU ({cpu_name()}, {os.cpu_count()} cores)"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m b2diffurl.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--small", action="store_true", help="the CPU setting: 64 x 64 pixels, 1 batch of 2 prompts, fp32"
    )
    parser.add_argument("--batches", type=int, help="prompt batches to sample (default: 1 small, 4 full)")
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), help="default: no (small), fp16 (full)")
    parser.add_argument("--forward-chunk", type=int, help="train.forward_chunk (default 8)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--attention", choices=("sdpa", "math"), default="sdpa")
    parser.add_argument(
        "--resolution",
        type=int,
        help="image pixels (a multiple of 64; default 64 small, the backbone's own full: 512, 768, 1024)",
    )
    parser.add_argument(
        "--backbone",
        choices=BACKBONES,
        default="sd14",
        help="the networks' shapes: sd14 (default), sd21 (SD 2.1, v-prediction), sdxl (SDXL base)",
    )
    parser.add_argument("--compile", action="store_true", help="runtime.compile_unet")
    parser.add_argument(
        "--levers",
        nargs="*",
        metavar="LEVER",
        help=f"instead of the stages: time the bare UNet with each speed lever ({', '.join(LEVERS)}; default all)",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="instead of the stages: training memory and time against forward_chunk (--chunks), with and without gradient checkpointing",
    )
    parser.add_argument(
        "--one-process",
        type=int,
        default=0,
        metavar="N",
        help="instead of the stages: a round as three stage processes and as one process (OneProcess=1), N times each",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        metavar="N",
        help="timed calls of each bare-network timing after its warm-up call, the fastest kept (default 5; "
        "1 shortens a CPU run of a big backbone, at the cost of a noisier rate)",
    )
    parser.add_argument("--chunks", default="1,2,4,8", help="forward_chunk values of --memory (default 1,2,4,8)")
    parser.add_argument(
        "--workdir", default=os.path.join(BENCH_DIR, "work"), help="where the round and the JSON result go"
    )
    parser.add_argument("--models", default=BENCH_DIR, help="where the random models are built (reused)")
    args = parser.parse_args(argv)
    setting = SETTINGS["small" if args.small else "full"]
    changes = {
        "gradient_checkpointing": args.gradient_checkpointing,
        "channels_last": args.channels_last,
        "attention": args.attention,
        "compile_unet": args.compile,
        "backbone": args.backbone,
    }
    if not args.small:
        changes["resolution"] = NATIVE_RESOLUTION[args.backbone]
    if args.resolution is not None and (args.resolution < 64 or args.resolution % 64):
        parser.error(
            f"--resolution={args.resolution} must be a multiple of 64 (the UNet halves 8 x 8 latents three times)"
        )
    try:
        args.chunks = tuple(int(c) for c in args.chunks.split(","))
        assert all(c >= 1 for c in args.chunks)
    except (ValueError, AssertionError):
        parser.error(f"--chunks={args.chunks} must be positive integers separated by commas, e.g. 1,2,4")
    if args.one_process < 0:
        parser.error(f"--one-process={args.one_process} must be >= 1 (rounds each way), or 0 for the stages' benchmark")
    for name in ("batches", "mixed_precision", "forward_chunk", "resolution", "repeats"):
        value = getattr(args, name)
        if value is not None:
            if name in ("batches", "forward_chunk", "repeats") and value < 1:
                parser.error(f"--{name.replace('_', '-')}={value} must be >= 1")
            changes["num_batches" if name == "batches" else name] = value
    return replace(setting, **changes), args


def main(argv):
    if argv and argv[0] == "_bare":  # worker: python -m b2diffurl.bench _bare SETTING_JSON PIPELINE CLIP PARTS
        from b2diffurl.cli import quiet_libraries

        quiet_libraries()
        setting = Setting(**json.loads(argv[1]))
        print(json.dumps(bare_rates(setting, argv[2], argv[3], tuple(argv[4].split(",")))))
        return 0
    setting, args = parse_args(argv)
    import torch

    if setting.mixed_precision == "fp16" and not torch.cuda.is_available():
        print(
            "error: --mixed-precision fp16 (the full setting's) needs a GPU and none is visible: on a CPU run "
            "python -m b2diffurl.bench --small (or pass --mixed-precision no / bf16)",
            file=sys.stderr,
        )
        return 2
    os.makedirs(args.workdir, exist_ok=True)
    if args.one_process:
        result = {
            "setting": asdict(setting),
            "device": _device_name(),
            "one_process": run_one_process(setting, args.models, args.workdir, args.one_process),
        }
        path = os.path.join(args.workdir, f"{_prefix(setting)}_{setting.resolution}px_one_process.json")
        with open(path, "w") as f:
            json.dump(result, f, indent=1, allow_nan=False)
        print(
            f"device: {result['device']}\n\n{one_process_report(setting, result['one_process'])}\n\nfull result: {path}"
        )
        return 0
    if args.levers is not None or args.memory:
        unknown = [name for name in args.levers or [] if name not in LEVERS]
        if unknown:
            print(f"error: --levers {unknown[0]!r} is not a lever: choose from {', '.join(LEVERS)}", file=sys.stderr)
            return 2
        result, text = {"setting": asdict(setting), "device": _device_name()}, []
        if args.levers is not None:
            result["levers"] = run_levers(setting, args.models, args.levers or list(LEVERS))
            text.append(levers_report(setting, result["levers"]))
        if args.memory:
            result["memory"] = run_memory(setting, args.models, args.chunks)
            text.append(memory_report(setting, result["memory"]))
        path = os.path.join(
            args.workdir,
            f"{_prefix(setting)}_{setting.resolution}px_{'levers' if args.levers is not None else 'memory'}.json",
        )
        with open(path, "w") as f:
            json.dump(result, f, indent=1, allow_nan=False)
        print(f"device: {result['device']}\n\n" + "\n\n".join(text) + f"\n\nfull result: {path}")
        return 0
    result, path = run(setting, args.workdir, args.models)
    print(report(result))
    print(f"\nfull result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
