"""What the benchmark runs: its settings, and the config and flags they give the stage scripts.

A :class:`Setting` is one round at the paper's values unless it names others; the stages get it as
``--config.<field>=<value>`` flags over the repository's default config (:func:`stage_flags`), and
in-process work (the bare timings) as the same config loaded here (:func:`setting_config`).
"""

import os
from dataclasses import dataclass

from b2diffurl import configs

BENCH_DIR = configs.repo_path("model", "bench")
BENCH_VERSION = 2  # bump when the built models change (2: the ViT-H-14 checkpoint written tensor by tensor)
CLIP_ARCH = "ViT-H-14"
CLIP_FILE = "open_clip_vit_h_14_random.safetensors"
STAGES = (("sample", "run_sample.py"), ("select", "run_select.py"), ("train", "run_train.py"))
ROUND = "round_000"  # the one round each benchmark run works on


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


def result_prefix(setting):
    """Result files' name: bench_small.json, bench_full.json (SD v1.4), bench_sdxl_small.json, ..."""
    return f"bench_{setting.name}" if setting.backbone == "sd14" else f"bench_{setting.backbone}_{setting.name}"


def setting_round_dir(setting, save_path):
    """The folder of the round that ``setting``'s stages write under ``save_path``."""
    return os.path.join(save_path, f"bench_{setting.name}", ROUND)


def setting_overrides(setting, pipeline_dir, clip_path, save_path):
    """{config field: value} of one round of ``setting`` (the default config otherwise)."""
    return {
        "pretrained.model": pipeline_dir,
        "reward.clip_model": CLIP_ARCH,
        "reward.clip_pretrained": clip_path,
        "reward.batch_size": setting.reward_batch_size,
        "save_path": save_path,
        "exp_name": f"bench_{setting.name}",
        "run_name": ROUND,
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
    return [f"--config={configs.DEFAULT_CONFIG_PATH}"] + [f"--config.{k}={v}" for k, v in overrides.items()]


def default_config():
    """The repository's default config, as the stage scripts read it without flags."""
    return configs.load_config(configs.DEFAULT_CONFIG_PATH)


def setting_config(setting, pipeline_dir, clip_path, save_path):
    """The config the stages get for ``setting`` (what :func:`stage_flags` passes them), for in-process work."""
    config = default_config()
    for field, value in setting_overrides(setting, pipeline_dir, clip_path, save_path).items():
        configs.set_field(config, field, value)
    return config
