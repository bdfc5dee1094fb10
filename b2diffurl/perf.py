"""What a round costs: UNet work per stage, peak memory, bytes on disk, projected wall time.

Pure functions of the settings (counts of UNet image-forwards, bytes of the stored tensors), used by
the stage summaries and by the paper-scale benchmark (``python -m b2diffurl.bench``). An
"image-forward" is one latent through the UNet once; with classifier-free guidance every sampled or
trained latent costs two (unconditional and conditional).
"""

import math
import platform

from b2diffurl.records import trajectory_nbytes
from b2diffurl.schedule import interval_length


def cpu_name(cpuinfo="/proc/cpuinfo"):
    """The CPU's model name (Linux's /proc/cpuinfo, else the platform's processor or architecture). Float
    sums differ between CPU models, so a run's numbers on the CPU depend on it: records name it."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# A default run's reward queries of the paper's Fig. 5 x-axis (one query = one scored image).
PAPER_REWARD_QUERIES = 25_600


def cfg_factor(guidance_scale):
    """UNet rows per latent: 2 with classifier-free guidance (uncond + cond), 1 without."""
    return 1 if guidance_scale == 1.0 else 2


def sampling_forwards(batch_size, split_time, num_steps, k, guidance_scale):
    """UNet image-forwards of one sampling batch: T - k shared steps on B latents, then k steps on
    B * split_time branches."""
    return cfg_factor(guidance_scale) * ((num_steps - k) * batch_size + k * batch_size * split_time)


def training_forwards(pairs, guidance_scale):
    """UNet image-forward+backwards of a training stage over ``pairs`` (trajectory, step) pairs, all
    epochs (DPOK's extra reference forward without gradient is not counted)."""
    return cfg_factor(guidance_scale) * pairs


def stage_memory():
    """{"peak_memory_bytes", "peak_memory_kind"} of this process, for a stage's summary: CUDA max
    allocated on a GPU, else the peak RSS."""
    import resource

    import torch

    if torch.cuda.is_available():
        return {"peak_memory_bytes": int(torch.cuda.max_memory_allocated()), "peak_memory_kind": "cuda_max_allocated"}
    return {
        "peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_memory_kind": "peak_rss",
    }


def disk_per_round(trajectories, k, latent_shape, latent_itemsize, selected_fraction, image_bytes, keep_latents):
    """Bytes one round writes and keeps.

    trajectories: per round; latent_shape: [C, H, W]; latent_itemsize: 4 (fp32) or 2 (fp16/bf16);
    selected_fraction: selected / sampled trajectories; image_bytes: bytes of one PNG;
    keep_latents: whether the round keeps samples/ and selected.safetensors once trained.
    Returns {samples, selected, images, written, kept} (LoRA, optimizer and JSON files, a few MB,
    are not counted).
    """
    samples = trajectories * trajectory_nbytes(k, latent_shape, latent_itemsize)
    selected = round(trajectories * selected_fraction) * trajectory_nbytes(
        k, latent_shape, latent_itemsize, selected=True
    )
    images = trajectories * image_bytes
    written = samples + selected + images
    return {
        "samples": samples,
        "selected": selected,
        "images": images,
        "written": written,
        "kept": written if keep_latents else images,
    }


def rounds_for_queries(queries, trajectories_per_round):
    """Rounds a run needs for ``queries`` reward queries (one per sampled trajectory)."""
    return math.ceil(queries / trajectories_per_round)


def schedule_ks(rounds, stage_cnt, k_left, k_right):
    """k of the first ``rounds`` rounds of the BPT schedule over ``stage_cnt`` rounds."""
    return [interval_length(r, stage_cnt, k_left, k_right) for r in range(min(rounds, stage_cnt))]
