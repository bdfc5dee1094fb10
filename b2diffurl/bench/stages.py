"""The benchmark itself: the three stage scripts on one round, each in its own process as a user runs
them, the bare networks timed around them, and the report of seconds, rates, efficiency, memory,
bytes and the projected run (``python -m b2diffurl.bench``)."""

import json
import os
import shutil
from dataclasses import asdict

from b2diffurl import records
from b2diffurl.bench.bare import worker
from b2diffurl.bench.models import setting_models
from b2diffurl.bench.process import STAGE_IMPORTS, device_name, import_seconds, run_script
from b2diffurl.bench.projections import analyse
from b2diffurl.bench.setting import BENCH_DIR, STAGES, Setting, result_prefix, setting_round_dir, stage_flags
from b2diffurl.bench.shapes import BACKBONE_TEXT
from b2diffurl.bench.sizes import gib, mib
from b2diffurl.summaries import read_summary


def _summary_value(summary, name):
    """A summary's field ``name``, or its ``extra`` entry where the stage's summary has no such field."""
    return getattr(summary, name) if hasattr(summary, name) else summary.extra[name]


def _stage_measurements(stage, marker, wall, rss):
    """One stage's row of the result: its process's wall time and memory with its marker's summary."""
    summary = read_summary(marker, stage)
    kind = _summary_value(summary, "peak_memory_kind")
    return {
        "wall_seconds": wall,
        "seconds": summary.seconds,
        "load_seconds": summary.load_seconds,
        "startup_seconds": max(0.0, wall - summary.seconds - summary.load_seconds),
        "peak_memory_bytes": rss if kind == "peak_rss" else _summary_value(summary, "peak_memory_bytes"),
        "peak_memory_kind": kind,
        "bytes_written": _summary_value(summary, "bytes_written"),
        "marker": {k: v for k, v in marker.items() if k != "files"},
    }


def run_stages(setting, pipeline_dir, clip_path, workdir):
    """The three stage scripts on one round, each in its own process; returns per-stage measurements."""
    save_path = os.path.join(workdir, "runs")
    round_dir = setting_round_dir(setting, save_path)
    if os.path.isdir(os.path.dirname(round_dir)):
        shutil.rmtree(os.path.dirname(round_dir))
    flags = stage_flags(setting, pipeline_dir, clip_path, save_path)
    stages = {}
    for stage, script in STAGES:
        print(f"bench: {stage} ...", flush=True)
        wall, rss, _ = run_script(script, flags)
        stages[stage] = _stage_measurements(stage, records.read_marker(round_dir, stage), wall, rss)
    return stages, round_dir


def _bare_around_stages(setting, pipeline_dir, clip_path, workdir):
    """(stages, round folder, bare rates): the bare UNet is timed in one process before the stages and
    one after, and the faster of the two counts (one process can run slower than the next on a shared
    machine: docs/PERFORMANCE.md)."""
    print("bench: bare UNet ...", flush=True)
    before = worker(setting, pipeline_dir, clip_path, ("sample", "train"))
    stages, round_dir = run_stages(setting, pipeline_dir, clip_path, workdir)
    print("bench: bare UNet and CLIP ...", flush=True)
    bare = worker(setting, pipeline_dir, clip_path, ("sample", "train", "clip"))
    for key in ("sample_pre_branch_seconds", "sample_branches_seconds", "train_seconds"):
        bare[key] = min(bare[key], before[key])
    bare["bare_before_stages"] = before
    return stages, round_dir, bare


def run(setting, workdir, models_root=BENCH_DIR):
    """The whole benchmark of ``setting``; returns (result, path of its JSON file)."""
    import torch

    pipeline_dir, clip_path = setting_models(setting, models_root)
    os.makedirs(workdir, exist_ok=True)
    stages, round_dir, bare = _bare_around_stages(setting, pipeline_dir, clip_path, workdir)
    imports = {stage: import_seconds(STAGE_IMPORTS[stage]) for stage, _ in STAGES}
    result = {
        "setting": asdict(setting),
        "device": device_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "stages": stages,
        "bare": bare,
        "imports": imports,
    }
    result["analysis"] = analyse(setting, stages, bare, round_dir, imports)
    path = os.path.join(workdir, f"{result_prefix(setting)}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1, allow_nan=False)
    return result, path


def _header(s, result, trajectories):
    return [
        f"setting `{s.name}` on {result['device']}: {BACKBONE_TEXT[s.backbone]} and open_clip ViT-H-14 "
        f"(random weights) at {s.resolution} x {s.resolution} pixels, mixed_precision {s.mixed_precision}; "
        f"one round of {s.num_batches} batch(es) x {s.batch_size} prompts x {s.split_time} branches = "
        f"{trajectories} trajectories, T = {s.num_steps}, k = {s.split_step}, CFG 5, train batch "
        f"{s.train_batch_size}, forward_chunk {s.forward_chunk}, reward batch {s.reward_batch_size}, "
        f"gradient checkpointing {s.gradient_checkpointing}, attention {s.attention}, "
        f"channels_last {s.channels_last}; torch {result['torch']}, {result['threads']} thread(s).",
        "",
        "| stage | seconds | model load s | start-up s (imports s) | work | per second (bare) | efficiency "
        "| peak memory | bytes written |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]


def _stage_line(stage, st, row):
    memory = gib(st["peak_memory_bytes"]) + (" RSS" if st["peak_memory_kind"] == "peak_rss" else " CUDA")
    return (
        f"| {stage} | {st['seconds']:.1f} | {st['load_seconds']:.1f} | {st['startup_seconds']:.1f} "
        f"({row['import_seconds']:.1f}) | {row['work']:.0f} {row['unit']} | {row['rate']:.2f} "
        f"({row['bare_rate']:.2f}) | {row['efficiency']:.2f} | {memory} | {mib(st['bytes_written'])} |"
    )


def _disk_lines(s, disk):
    before, now = disk["paper_round0"]["before"], disk["paper_round0"]["now"]
    measured, predicted = disk["measured_tensor_bytes"], disk["predicted_tensor_bytes"]
    return [
        "",
        f"Stored tensors of this round: {measured} bytes measured, {predicted} computed "
        f"from the shapes ({'equal' if measured == predicted else 'DIFFERENT'}). "
        f"Selected fraction {disk['selected_fraction']:.2f}; mean PNG {disk['image_bytes_measured'] / 1024:.1f} KiB.",
        "",
        "Disk per round at paper scale (768 trajectories, k = 14, latents 4 x 64 x 64, PNG "
        f"{disk['paper_image_bytes'] / 2**10:.0f} KiB"
        f"{'' if s.resolution == 512 else ' = raw 512 x 512 x 3, an upper bound'}, selected fraction "
        f"{disk['selected_fraction']:.2f}):",
        "",
        "| | samples/ | selected.safetensors | images | written | kept after training | kept over 100 rounds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| before (fp32, every round kept) | {mib(before['samples'])} | {mib(before['selected'])} | "
        f"{mib(before['images'])} | {mib(before['written'])} | {mib(before['kept'])} | "
        f"{gib(disk['paper_run_kept']['before'])} |",
        f"| now (fp16, save_interval 0) | {mib(now['samples'])} | {mib(now['selected'])} | {mib(now['images'])} | "
        f"{mib(now['written'])} | {mib(now['kept'])} | {gib(disk['paper_run_kept']['now'])} |",
    ]


def _projection_lines(s, projection):
    return [
        "",
        f"Projected wall time of a default run's first {projection['reward_queries']} reward queries "
        f"({projection['rounds']} rounds of 768, k from the 100-round schedule, at this setting's achieved rates "
        f"and {s.resolution} x {s.resolution} pixels, one process): {projection['hours']:.1f} h "
        f"({projection['fixed_seconds_per_round']:.0f} s per round of start-up and loading).",
    ]


def report(result):
    """Markdown tables of a benchmark result (what the command prints and docs/PERFORMANCE.md shows)."""
    s, stages, analysis = Setting(**result["setting"]), result["stages"], result["analysis"]
    trajectories = read_summary(stages["select"]["marker"], "select").trajectories
    lines = _header(s, result, trajectories)
    lines += [_stage_line(stage, stages[stage], analysis["rows"][stage]) for stage, _ in STAGES]
    lines += _disk_lines(s, analysis["disk"]) + _projection_lines(s, analysis["projection"])
    return "\n".join(lines)
