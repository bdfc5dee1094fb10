"""Training memory (``python -m b2diffurl.bench --memory``): what one UNet forward+backward adds to the
loaded model, and its time, against train.forward_chunk, with and without gradient checkpointing."""

from dataclasses import replace

from b2diffurl.bench.bare import worker
from b2diffurl.bench.models import setting_models
from b2diffurl.bench.setting import SETTINGS
from b2diffurl.bench.sizes import gib


def run_memory(setting, models_root, chunks=(1, 2, 4, 8)):
    """Training memory and time per forward+backward against train.forward_chunk, with and without
    gradient checkpointing (one fresh process per point); returns a list of dicts."""
    pipeline_dir, clip_path = setting_models(setting, models_root, SETTINGS["small"].resolution)
    points = []
    for checkpointing in (False, True):
        for chunk in chunks:
            print(f"bench: memory, forward_chunk {chunk}, gradient checkpointing {checkpointing} ...", flush=True)
            point = replace(setting, forward_chunk=chunk, gradient_checkpointing=checkpointing, repeats=1)
            r = worker(point, pipeline_dir, clip_path, ("train",))
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


def _chunk_line(chunk, a, b):
    """A table row: forward_chunk ``chunk`` without (``a``) and with (``b``, or None) checkpointing."""
    if b is None:
        return f"| {chunk} | {2 * chunk} | {gib(a['activation_bytes'])} | {a['seconds']:.2f} | - | - |"
    return (
        f"| {chunk} | {2 * chunk} | {gib(a['activation_bytes'])} | {a['seconds']:.2f} | "
        f"{gib(b['activation_bytes'])} | {b['seconds']:.2f} |"
    )


def memory_report(setting, points):
    lines = [
        f"Training memory at {setting.resolution} x {setting.resolution} pixels ({setting.mixed_precision}): what one "
        "UNet forward+backward of forward_chunk pairs (2 rows each, CFG) adds to the loaded model "
        "(CUDA max allocated on a GPU, peak RSS on the CPU).",
        "",
        "| forward_chunk | rows | activations | s per forward+backward | activations, checkpointing "
        "| s, checkpointing |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    plain = {p["forward_chunk"]: p for p in points if not p["gradient_checkpointing"]}
    saved = {p["forward_chunk"]: p for p in points if p["gradient_checkpointing"]}
    lines += [_chunk_line(chunk, plain[chunk], saved.get(chunk)) for chunk in sorted(plain)]
    return "\n".join(lines)
