"""Paper-scale benchmark: the three stages at SD v1.4 size (or SD 2.1's, SDXL's), with random weights.

The command line of ``python -m b2diffurl.bench`` (the package's docstring says what it measures): the
flags, the setting they make, and which run and report they choose; ``_bare`` is the bare-timing
worker's own entry (:func:`b2diffurl.bench.bare.worker`).
"""

import argparse
import json
import os
import sys
from dataclasses import asdict, replace

from b2diffurl.bench.levers import LEVERS, levers_report, run_levers
from b2diffurl.bench.memory import memory_report, run_memory
from b2diffurl.bench.one_process import one_process_report, run_one_process
from b2diffurl.bench.process import device_name
from b2diffurl.bench.setting import BENCH_DIR, SETTINGS, Setting, result_prefix
from b2diffurl.bench.shapes import BACKBONES, NATIVE_RESOLUTION
from b2diffurl.bench.stages import report, run


def _parser():
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
    _add_modes(parser)
    parser.add_argument("--chunks", default="1,2,4,8", help="forward_chunk values of --memory (default 1,2,4,8)")
    parser.add_argument(
        "--workdir", default=os.path.join(BENCH_DIR, "work"), help="where the round and the JSON result go"
    )
    parser.add_argument("--models", default=BENCH_DIR, help="where the random models are built (reused)")
    return parser


def _add_modes(parser):
    """The flags that run something instead of the stages' benchmark, and --repeats."""
    parser.add_argument(
        "--levers",
        nargs="*",
        metavar="LEVER",
        help=f"instead of the stages: time the bare UNet with each speed lever ({', '.join(LEVERS)}; default all)",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="instead of the stages: training memory and time against forward_chunk (--chunks), with and "
        "without gradient checkpointing",
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


def _check(parser, args):
    """Refuse, as argparse does, the values no run can use."""
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


def parse_args(argv):
    parser = _parser()
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
    _check(parser, args)
    for name in ("batches", "mixed_precision", "forward_chunk", "resolution", "repeats"):
        value = getattr(args, name)
        if value is not None:
            if name in ("batches", "forward_chunk", "repeats") and value < 1:
                parser.error(f"--{name.replace('_', '-')}={value} must be >= 1")
            changes["num_batches" if name == "batches" else name] = value
    return replace(setting, **changes), args


def _write(path, result):
    with open(path, "w") as f:
        json.dump(result, f, indent=1, allow_nan=False)


def _bare(argv):
    """The worker: python -m b2diffurl.bench _bare SETTING_JSON PIPELINE CLIP PARTS (one JSON line out)."""
    from b2diffurl.bench.bare import bare_rates
    from b2diffurl.cli import quiet_libraries

    quiet_libraries()
    setting = Setting(**json.loads(argv[1]))
    print(json.dumps(bare_rates(setting, argv[2], argv[3], tuple(argv[4].split(",")))))
    return 0


def _one_process(setting, args):
    result = {
        "setting": asdict(setting),
        "device": device_name(),
        "one_process": run_one_process(setting, args.models, args.workdir, args.one_process),
    }
    path = os.path.join(args.workdir, f"{result_prefix(setting)}_{setting.resolution}px_one_process.json")
    _write(path, result)
    print(f"device: {result['device']}\n\n{one_process_report(setting, result['one_process'])}\n\nfull result: {path}")
    return 0


def _levers_and_memory(setting, args):
    unknown = [name for name in args.levers or [] if name not in LEVERS]
    if unknown:
        print(f"error: --levers {unknown[0]!r} is not a lever: choose from {', '.join(LEVERS)}", file=sys.stderr)
        return 2
    result, text = {"setting": asdict(setting), "device": device_name()}, []
    if args.levers is not None:
        result["levers"] = run_levers(setting, args.models, args.levers or list(LEVERS))
        text.append(levers_report(setting, result["levers"]))
    if args.memory:
        result["memory"] = run_memory(setting, args.models, args.chunks)
        text.append(memory_report(setting, result["memory"]))
    kind = "levers" if args.levers is not None else "memory"
    path = os.path.join(args.workdir, f"{result_prefix(setting)}_{setting.resolution}px_{kind}.json")
    _write(path, result)
    print(f"device: {result['device']}\n\n" + "\n\n".join(text) + f"\n\nfull result: {path}")
    return 0


def main(argv):
    if argv and argv[0] == "_bare":
        return _bare(argv)
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
        return _one_process(setting, args)
    if args.levers is not None or args.memory:
        return _levers_and_memory(setting, args)
    result, path = run(setting, args.workdir, args.models)
    print(report(result))
    print(f"\nfull result: {path}")
    return 0
