"""The speed levers (``python -m b2diffurl.bench --levers``): the bare UNet with each config switch
alone, each in a fresh process, against the baseline."""

from dataclasses import replace

from b2diffurl.bench.bare import worker
from b2diffurl.bench.models import setting_models
from b2diffurl.bench.sizes import gib

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
    pipeline_dir, clip_path = setting_models(setting, models_root)
    results = {}
    for name in names:
        print(f"bench: lever {name} ...", flush=True)
        results[name] = worker(replace(setting, **LEVERS[name]), pipeline_dir, clip_path, ("sample", "train"))
    return results


def _lever_line(name, r, base):
    return (
        f"| {name} | {r['sample_branches_seconds']:.3f} | "
        f"{base['sample_branches_seconds'] / r['sample_branches_seconds']:.2f}x | "
        f"{r['train_seconds']:.3f} | {base['train_seconds'] / r['train_seconds']:.2f}x | "
        f"{gib(r['train_activation_bytes'])} | "
        f"{r['sample_branches_first_call_seconds']:.1f}, {r['train_first_call_seconds']:.1f} |"
    )


def levers_report(setting, results):
    base = results["baseline"]
    lines = [
        f"Speed levers, bare UNet at {setting.resolution} x {setting.resolution} pixels ({setting.mixed_precision}): "
        f"sampling {setting.batch_size * setting.split_time * 2} rows per call, training "
        f"{setting.forward_chunk * 2} rows per forward+backward "
        "(fastest of the timed calls; each lever alone, in a fresh process).",
        "",
        "| lever | sampling s/call | vs baseline | training s/call | vs baseline | training activations "
        "| first call s (sampling, training) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [_lever_line(name, r, base) for name, r in results.items()]
    return "\n".join(lines)
