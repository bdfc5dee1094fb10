"""The toy world's command line.

python -m b2diffurl.toyworld build [--force]      train the toy model and CLIP reward (~40 min on 2 cores)
                                                  into b2diffurl/toyworld/model/ with quality.json and SHA256SUMS
python -m b2diffurl.toyworld build --only clip    train only the CLIP reward again (7-16 min), same reward
python -m b2diffurl.toyworld remeasure            redo quality.json of the built weights (metrics changed)
python -m b2diffurl.toyworld verify               check the committed model against SHA256SUMS, print quality.json
python -m b2diffurl.toyworld benchmark [--part all|grid|fig5|fig7|fig8|caption|f1] [--quick] [--report]
                                                  the paper's experiments on the toy world under the fixed
                                                  protocol of b2diffurl/toylab/protocol.py (resumable; each
                                                  finished run recorded in docs/results/toy_benchmark/ and
                                                  never run again), writes docs/RESULTS.md and
                                                  docs/figures/toy_benchmark/ from that record
python -m b2diffurl.toyworld compare RUN_DIR [--out PNG]
                                                  the base model's evaluation grid beside the last
                                                  evaluated round's (same seeds), one PNG
python -m b2diffurl.toyworld prompts              write prompts/toy{1,2,3}_{train,test}.json
python -m b2diffurl.toyworld grid OUT.png CAPTION [CAPTION ...] [--per-caption 4] [--size 64] [--seed 0]
                                                  rendered samples of captions, one row per caption
"""

import argparse
import json
import os
import sys

from b2diffurl.toylab.ledger import RECORD_ROOT
from b2diffurl.toylab.prompts import write_prompts
from b2diffurl.toylab.scene_grid import grid
from b2diffurl.toyworld.world import parse


def error(message):
    """One ``error:`` line on stderr; returns the exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def run_build(args, out):
    """``build`` (or ``build --only clip``): the summary to print, or an exit status on a bad argument."""
    from b2diffurl.toylab import build, quality

    sizes = dict(
        dataset_size=args.dataset_size,
        vae_steps=args.vae_steps,
        unet_steps=args.unet_steps,
        clip_steps=args.clip_steps,
    )
    bad = [f"--{k.replace('_', '-')}={v}" for k, v in sizes.items() if v < 1]
    if bad:
        return error(f"{', '.join(bad)} must be >= 1")
    if args.only == "clip":
        if not os.path.isfile(os.path.join(out, quality.QUALITY_FILE)):
            return error(
                f"--only clip retrains the reward of a built model, and {out} holds no "
                f"{quality.QUALITY_FILE}: build it first (without --only)"
            )
        summary = build.retrain_clip(out, clip_steps=args.clip_steps)
        print(f"wrote {os.path.join(out, 'clip')} and {os.path.join(out, quality.QUALITY_FILE)}")
        return summary
    if os.path.isdir(out) and not args.force:
        return error(f"{out} exists: pass --force to rebuild it")
    summary = build.build(out, seed=args.seed, force=args.force, **sizes)
    print(f"wrote {out}")
    return summary


def run_remeasure(out):
    from b2diffurl.toylab import quality

    if not os.path.isfile(os.path.join(out, quality.QUALITY_FILE)):
        return error(f"{out} holds no {quality.QUALITY_FILE}: build it first")
    summary = quality.remeasure(out)
    print(f"rewrote {os.path.join(out, quality.QUALITY_FILE)}")
    return summary


def run_verify(out):
    from b2diffurl.toylab import checksums, quality

    problems = checksums.verify(out)
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if problems:
        return 1
    with open(os.path.join(out, quality.QUALITY_FILE)) as f:
        summary = json.load(f)
    print(f"{out}: every file matches {checksums.CHECKSUMS_FILE}")
    return summary


def build_or_verify(args):
    """``build``, ``remeasure`` or ``verify`` of the model folder, then its quality summary."""
    from b2diffurl.toylab import quality
    from b2diffurl.toyworld import models

    out = args.out or models.MODEL_DIR
    if args.command == "build":
        summary = run_build(args, out)
    elif args.command == "remeasure":
        summary = run_remeasure(out)
    else:
        summary = run_verify(out)
    if isinstance(summary, int):
        return summary
    quality.print_summary(summary)
    return 0


def benchmark_problem(args):
    """What is wrong with ``benchmark``'s flags (one line), or None."""
    if args.quick and args.part != "all":
        return f"--quick with --part {args.part}: --quick is its own subset (B2-DiffuRL vs DDPO); drop one of them"
    if args.stop_after is not None and not args.stop_after > 0:
        return f"--stop-after {args.stop_after}: give the minutes after which no new run starts, more than 0"
    if args.jobs < 1:
        return f"--jobs {args.jobs}: give the number of runs to run at once, 1 or more (2 on 2 cores)"
    return None


def write_report(args):
    """``benchmark --report``: the report from the record (with --quick: from SAVE_PATH/quick's runs)."""
    from b2diffurl.toylab import benchmark, results

    if args.quick:
        save_path = os.path.abspath(args.save_path)
        results.write(
            save_path,
            os.path.join(save_path, "quick", "RESULTS.md"),
            os.path.join(save_path, "quick", "figures"),
            quick=True,
        )
    else:
        results.write(os.path.abspath(args.record), *benchmark.report_paths(args.record))


def run_benchmark(args):
    from b2diffurl.toylab import benchmark, results
    from b2diffurl.toylab.protocol import FINAL_PARTS

    parts = ["grid", *FINAL_PARTS] if args.part == "all" else [args.part]
    problem = benchmark_problem(args)
    if problem:
        return error(problem)
    try:
        if args.report:
            write_report(args)
            return 0
        benchmark.benchmark(
            args.save_path,
            parts,
            quick=args.quick,
            jobs=args.jobs,
            record_root=os.path.abspath(args.record),
            stop_after=None if args.stop_after is None else args.stop_after * 60,
        )
    except (benchmark.BenchmarkError, results.ReportError) as err:
        return error(err)
    return 0


def run_grid(args):
    for caption in args.captions:
        try:
            parse(caption)
        except ValueError as err:
            return error(err)
    if args.per_caption < 1 or args.size < 8:
        return error(f"--per-caption={args.per_caption} must be >= 1 and --size={args.size} >= 8")
    grid(args.out, args.captions, args.per_caption, args.size, args.seed)
    return 0


def add_build(commands):
    b = commands.add_parser("build", help="train the toy model and its CLIP reward from fixed seeds")
    b.add_argument("--out", default=None, help="output folder (default: the committed b2diffurl/toyworld/model)")
    b.add_argument("--force", action="store_true", help="replace an existing output folder")
    b.add_argument("--dataset-size", type=int, default=40_000)
    b.add_argument("--vae-steps", type=int, default=1800)
    b.add_argument("--unet-steps", type=int, default=5000)
    b.add_argument("--clip-steps", type=int, default=1200)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument(
        "--only",
        choices=["clip"],
        default=None,
        help="clip: train only the CLIP reward again, on the built model's VAE and dataset settings (its "
        "quality.json); the diffusion model is kept",
    )


def add_benchmark(commands):
    m = commands.add_parser(
        "benchmark",
        help="the paper's experiments on the toy world (protocol: b2diffurl/toylab/protocol.py); "
        "writes docs/RESULTS.md",
    )
    m.add_argument(
        "--part",
        default="all",
        choices=["all", "grid", "fig5", "fig7", "fig8", "caption", "f1"],
        help="grid (learning rates, first), fig5 (B2-DiffuRL vs DDPO: Fig. 5, Table 3), fig7 (BPT-only: Fig. 7, "
        "Table 1), fig8 (PG, DPOK, DPO: Fig. 8, Table 2), caption (B2-DiffuRL trained on the captioning reward: "
        "Fig. 7a's second reward), f1 (App. F.1's stability study, no training); all: every part in that order",
    )
    m.add_argument(
        "--quick",
        action="store_true",
        help="B2-DiffuRL vs DDPO, 2 seeds, 4 rounds (under 30 min); report in SAVE_PATH/quick/",
    )
    m.add_argument(
        "--report",
        action="store_true",
        help="only rewrite the report and figures from the recorded runs "
        "(with --quick: from SAVE_PATH/quick's run folders)",
    )
    m.add_argument(
        "--save-path", default="./model/toy_benchmark", help="folder of the run folders (resumable; out of git)"
    )
    m.add_argument(
        "--record",
        default=RECORD_ROOT,
        help="the committed record of finished runs: recorded runs are skipped, the report is written from it "
        "(to the docs/ that holds RECORD when it is <checkout>/docs/results/NAME, else into RECORD)",
    )
    m.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="run folders run at once, the CPU cores shared out between them "
        "(2 on 2 cores: about 1.45x the throughput of 1; each run's numbers depend on its thread count)",
    )
    m.add_argument(
        "--stop-after",
        type=float,
        default=None,
        metavar="MINUTES",
        help="start no run after MINUTES (a machine lent for a fixed time): the running ones finish and are "
        "recorded, no later part starts, the report is written; the same command later goes on with the rest",
    )


def add_tools(commands):
    """remeasure, compare, verify and grid."""
    r = commands.add_parser("remeasure", help="redo quality.json of the built weights (after a change of the metrics)")
    r.add_argument("--out", default=None)
    c = commands.add_parser(
        "compare", help="base model's evaluation grid beside the last evaluated round's (same seeds)"
    )
    c.add_argument("run_dir", help="<save_path>/<exp_name>, e.g. model/runs/toy")
    c.add_argument("--out", default=None, help="PNG to write (default: RUN_DIR/base_vs_last.png)")
    c.add_argument("--prompt-set", default="test")
    v = commands.add_parser("verify", help="check the built model's files against SHA256SUMS and print its quality")
    v.add_argument("--out", default=None)
    g = commands.add_parser("grid", help="render samples of captions into one PNG")
    g.add_argument("out")
    g.add_argument("captions", nargs="+")
    g.add_argument("--per-caption", type=int, default=4)
    g.add_argument("--size", type=int, default=64)
    g.add_argument("--seed", type=int, default=0)


def make_parser():
    parser = argparse.ArgumentParser(
        prog="python -m b2diffurl.toyworld", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("prompts", help="write the train and held-out prompt lists under prompts/")
    add_build(commands)
    add_benchmark(commands)
    add_tools(commands)
    return parser


def main(argv):
    args = make_parser().parse_args(argv)
    if args.command == "prompts":
        write_prompts()
        return 0
    if args.command == "compare":
        from b2diffurl.toylab.compare import compare

        return compare(args.run_dir, args.out or os.path.join(args.run_dir, "base_vs_last.png"), args.prompt_set)
    if args.command == "benchmark":
        return run_benchmark(args)
    if args.command in ("build", "verify", "remeasure"):
        return build_or_verify(args)
    return run_grid(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
