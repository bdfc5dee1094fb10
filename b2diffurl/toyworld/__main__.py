"""The toy world's command line.

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


def main(argv):
    parser = argparse.ArgumentParser(prog="python -m b2diffurl.toyworld", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("prompts", help="write the train and held-out prompt lists under prompts/")
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
