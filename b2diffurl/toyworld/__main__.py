"""The toy world's command line.

python -m b2diffurl.toyworld build [--force]      train the toy model and CLIP reward (~40 min on 2 cores)
                                                  into b2diffurl/toyworld/model/ with quality.json and SHA256SUMS
python -m b2diffurl.toyworld build --only clip    train only the CLIP reward again (7-16 min), same reward
python -m b2diffurl.toyworld remeasure            redo quality.json of the built weights (metrics changed)
python -m b2diffurl.toyworld verify               check the committed model against SHA256SUMS, print quality.json
python -m b2diffurl.toyworld benchmark [--part all|grid|fig5|fig7|fig8|caption|f1] [--quick] [--report]
                                                  the paper's experiments on the toy world under the fixed
                                                  protocol of b2diffurl/toyworld/protocol.py (resumable; each
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

from b2diffurl.toyworld.world import parse, prompt_lists, render, sample_scene

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def prompt_file(template, split):
    """prompts/toy<template>_<split>.json of the repository."""
    return os.path.join(REPO_ROOT, "prompts", f"toy{template}_{split}.json")


def write_prompts():
    for template in (1, 2, 3):
        for split, captions in zip(("train", "test"), prompt_lists(template)):
            with open(prompt_file(template, split), "w") as f:
                json.dump(captions, f, indent=1)
                f.write("\n")
            print(f"wrote {prompt_file(template, split)} ({len(captions)} captions)")


def grid(out, captions, per_caption, size, seed):
    """PNG of ``per_caption`` random scenes of each caption (rows), ``size`` pixels each."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    rows = [np.concatenate([render(sample_scene(c, rng), size) for _ in range(per_caption)], axis=1) for c in captions]
    Image.fromarray(np.concatenate(rows, axis=0)).save(out)
    print(f"wrote {out} ({len(captions)} captions x {per_caption} scenes)")


def build_or_verify(args):
    from b2diffurl.toyworld import build, models

    out = args.out or models.MODEL_DIR
    if args.command == "build":
        sizes = dict(
            dataset_size=args.dataset_size,
            vae_steps=args.vae_steps,
            unet_steps=args.unet_steps,
            clip_steps=args.clip_steps,
        )
        bad = [f"--{k.replace('_', '-')}={v}" for k, v in sizes.items() if v < 1]
        if bad:
            print(f"error: {', '.join(bad)} must be >= 1", file=sys.stderr)
            return 2
        if args.only == "clip":
            if not os.path.isfile(os.path.join(out, build.QUALITY_FILE)):
                print(
                    f"error: --only clip retrains the reward of a built model, and {out} holds no {build.QUALITY_FILE}: "
                    "build it first (without --only)",
                    file=sys.stderr,
                )
                return 2
            summary = build.retrain_clip(out, clip_steps=args.clip_steps)
            print(f"wrote {os.path.join(out, 'clip')} and {os.path.join(out, build.QUALITY_FILE)}")
            build.print_summary(summary)
            return 0
        if os.path.isdir(out) and not args.force:
            print(f"error: {out} exists: pass --force to rebuild it", file=sys.stderr)
            return 2
        summary = build.build(out, seed=args.seed, force=args.force, **sizes)
        print(f"wrote {out}")
    elif args.command == "remeasure":
        if not os.path.isfile(os.path.join(out, build.QUALITY_FILE)):
            print(f"error: {out} holds no {build.QUALITY_FILE}: build it first", file=sys.stderr)
            return 2
        summary = build.remeasure(out)
        print(f"rewrote {os.path.join(out, build.QUALITY_FILE)}")
    else:
        problems = build.verify(out)
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        if problems:
            return 1
        with open(os.path.join(out, build.QUALITY_FILE)) as f:
            summary = json.load(f)
        print(f"{out}: every file matches {build.CHECKSUMS_FILE}")
    build.print_summary(summary)
    return 0


def run_benchmark(args):
    from b2diffurl.toyworld import benchmark, results
    from b2diffurl.toyworld.protocol import FINAL_PARTS

    parts = ["grid", *FINAL_PARTS] if args.part == "all" else [args.part]
    if args.quick and args.part != "all":
        print(
            f"error: --quick with --part {args.part}: --quick is its own subset (B2-DiffuRL vs DDPO); drop one of them",
            file=sys.stderr,
        )
        return 2
    if args.stop_after is not None and not args.stop_after > 0:
        print(
            f"error: --stop-after {args.stop_after}: give the minutes after which no new run starts, more than 0",
            file=sys.stderr,
        )
        return 2
    if args.jobs < 1:
        print(
            f"error: --jobs {args.jobs}: give the number of runs to run at once, 1 or more (2 on 2 cores)",
            file=sys.stderr,
        )
        return 2
    try:
        if args.report:
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
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv):
    parser = argparse.ArgumentParser(
        prog="python -m b2diffurl.toyworld", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("prompts", help="write the train and held-out prompt lists under prompts/")
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
    m = commands.add_parser(
        "benchmark",
        help="the paper's experiments on the toy world (protocol: b2diffurl/toyworld/protocol.py); writes docs/RESULTS.md",
    )
    m.add_argument(
        "--part",
        default="all",
        choices=["all", "grid", "fig5", "fig7", "fig8", "caption", "f1"],
        help="grid (learning rates, first), fig5 (B2-DiffuRL vs DDPO: Fig. 5, Table 3), fig7 (BPT-only: Fig. 7, Table 1), "
        "fig8 (PG, DPOK, DPO: Fig. 8, Table 2), caption (B2-DiffuRL trained on the captioning reward: Fig. 7a's "
        "second reward), f1 (App. F.1's stability study, no training); all: every part in that order",
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
        default=os.path.join(REPO_ROOT, "docs", "results", "toy_benchmark"),
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
    args = parser.parse_args(argv)
    if args.command == "prompts":
        write_prompts()
        return 0
    if args.command == "compare":
        from b2diffurl.toyworld.compare import compare

        return compare(args.run_dir, args.out or os.path.join(args.run_dir, "base_vs_last.png"), args.prompt_set)
    if args.command == "benchmark":
        return run_benchmark(args)
    if args.command in ("build", "verify", "remeasure"):
        return build_or_verify(args)
    for caption in args.captions:
        try:
            parse(caption)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    if args.per_caption < 1 or args.size < 8:
        print(f"error: --per-caption={args.per_caption} must be >= 1 and --size={args.size} >= 8", file=sys.stderr)
        return 2
    grid(args.out, args.captions, args.per_caption, args.size, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
