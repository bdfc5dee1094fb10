"""Rendered samples of captions in one PNG: ``python -m b2diffurl.toyworld grid OUT.png CAPTION ...``."""

from b2diffurl.toyworld.world import render, sample_scene


def grid(out, captions, per_caption, size, seed):
    """PNG of ``per_caption`` random scenes of each caption (rows), ``size`` pixels each."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    rows = [np.concatenate([render(sample_scene(c, rng), size) for _ in range(per_caption)], axis=1) for c in captions]
    Image.fromarray(np.concatenate(rows, axis=0)).save(out)
    print(f"wrote {out} ({len(captions)} captions x {per_caption} scenes)")
