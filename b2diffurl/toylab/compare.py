"""Base model beside the last evaluated round: ``python -m b2diffurl.toyworld compare RUN_DIR``."""

import os
import sys

from b2diffurl import layout


def rounds_with_grid(run_dir, prompt_set):
    """The names of the run's round folders that hold ``prompt_set``'s evaluation grid, in round order."""
    return [
        name for _, name in layout.round_folders(run_dir) if os.path.isfile(layout.eval_grid(run_dir, name, prompt_set))
    ]


def compare(run_dir, out, prompt_set="test"):
    """Write base | last round evaluation grids side by side (rows: prompts, columns: seeds)."""
    import numpy as np
    from PIL import Image

    base = layout.eval_grid(run_dir, layout.BASE, prompt_set)
    rounds = rounds_with_grid(run_dir, prompt_set)
    if not os.path.isfile(base) or not rounds:
        print(
            f"error: {run_dir} lacks base/eval/{prompt_set}_grid.png or an evaluated round: "
            "run it with EvalInterval >= 1",
            file=sys.stderr,
        )
        return 2
    from b2diffurl.grids import titled

    left = titled(np.asarray(Image.open(base).convert("RGB")), "left: base model")
    right = np.asarray(Image.open(layout.eval_grid(run_dir, rounds[-1], prompt_set)).convert("RGB"))
    right = titled(right, f"right: {rounds[-1]} (same prompts and seeds)")
    if right.shape[0] != left.shape[0]:
        print(
            f"error: the grids of base and {rounds[-1]} differ in size: "
            "rerun the evaluation of both with the same settings",
            file=sys.stderr,
        )
        return 2
    gap = np.full((left.shape[0], 8, 3), 255, dtype=np.uint8)
    Image.fromarray(np.concatenate([left, gap, right], axis=1)).save(out)
    print(f"wrote {out}: base model (left) and {rounds[-1]} (right), same seeds")
    return 0
