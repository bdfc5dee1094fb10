"""The bare networks in a tight loop: seconds per call of the UNet (LoRA attached, CFG rows batched as
the stages do) at the stages' batch sizes and of the CLIP image tower at the reward's, with the peak
memory each call adds. :func:`worker` runs them in a process of their own
(``python -m b2diffurl.bench _bare ...``), so that each measurement has its own peak memory.
"""

import json
import os
import sys
import time
from dataclasses import asdict
from functools import partial

from b2diffurl.backbones import encode_prompts, negative_conditioning, predict_noise
from b2diffurl.bench.process import run_measured
from b2diffurl.bench.setting import BENCH_DIR, CLIP_ARCH, setting_config
from b2diffurl.perf import cfg_factor


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
    one warm-up call (the hardware's limit; on a shared machine the median wanders, see
    docs/PERFORMANCE.md; torch.compile compiles in the warm-up), synchronising a GPU."""
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


def _sample_rates(out, net, setting):
    """The UNet without gradients at the pre-branch batch and at the branched batch."""
    import torch

    net.unet.eval()
    for label, n in (("pre_branch", setting.batch_size), ("branches", setting.batch_size * setting.split_time)):
        x, embeds, t = net.inputs(n)
        mark = _memory_mark()
        with torch.no_grad():
            out[f"sample_{label}_seconds"], out[f"sample_{label}_first_call_seconds"] = _timed(
                partial(net.predict, x, t, embeds), setting.repeats
            )
        out[f"sample_{label}_rows"] = net.rows * n
        out[f"sample_{label}_activation_bytes"] = _memory_peak_since(mark)


def _train_rates(out, net, setting):
    """One forward+backward of the UNet (gradients into the LoRA) at train.forward_chunk pairs."""
    net.unet.train()
    if setting.gradient_checkpointing:
        net.unet.enable_gradient_checkpointing()
    x, embeds, t = net.inputs(setting.forward_chunk)
    lora = [p for p in net.unet.parameters() if p.requires_grad]

    def forward_backward():
        eps = net.predict(x, t, embeds)
        eps.square().mean().backward()
        for p in lora:
            p.grad = None

    mark = _memory_mark()
    out["train_seconds"], out["train_first_call_seconds"] = _timed(forward_backward, setting.repeats)
    out["train_rows"] = net.rows * setting.forward_chunk
    out["train_activation_bytes"] = _memory_peak_since(mark)  # what forward+backward adds to the loaded model


def _clip_rates(out, config, setting, clip_path, device, generator):
    """The CLIP image tower at the reward's batch (capped at the round's images)."""
    import torch

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


class _BareUNet:
    """The loaded policy's UNet with the backbone's own conditioning, and random inputs for it."""

    def __init__(self, config, setting, device, generator):
        from b2diffurl.models import load_policy

        self.pipeline = load_policy(config, device)
        self.unet = self.pipeline.unet
        self.latent = setting.resolution // 8  # the UNet is convolutional: one folder serves every resolution here
        self.negative = negative_conditioning(self.pipeline)  # the backbone's own conditioning (SDXL: pooled, time ids)
        self.prompt = encode_prompts(self.pipeline, ["a photo of a red apple"])
        self.rows = cfg_factor(config.sample.guidance_scale)
        self.guidance = config.sample.guidance_scale
        self.device, self.generator = device, generator

    def inputs(self, n):
        import torch

        x = torch.randn(n, 4, self.latent, self.latent, generator=self.generator).to(self.device)
        return x, self.prompt.expand(n), torch.full((n,), 501, device=self.device)

    def predict(self, x, t, embeds):
        return predict_noise(self.unet, x, t, embeds, self.negative, self.guidance)


def bare_rates(setting, pipeline_dir, clip_path, parts=("sample", "train", "clip")):
    """Seconds per call of the bare UNet (LoRA attached, CFG rows batched as the stages do) at the
    stages' batch sizes, and of the CLIP image tower at the reward's; plus the peak memory of each
    part on a GPU. Returns a dict."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = setting_config(setting, pipeline_dir, clip_path, os.path.join(BENCH_DIR, "unused"))
    out = {"device": device}
    generator = torch.Generator().manual_seed(0)
    net = _BareUNet(config, setting, device, generator)
    if "sample" in parts:
        _sample_rates(out, net, setting)
    if "train" in parts:
        _train_rates(out, net, setting)
    net = None  # the pipeline is freed before CLIP loads
    if "clip" in parts:
        _clip_rates(out, config, setting, clip_path, device, generator)
    return out


def worker(setting, pipeline_dir, clip_path, parts):
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
