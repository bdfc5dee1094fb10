"""Held-out metrics of generated toy-world images, independent of the reward.

- **alignment**: the fraction of images whose detected objects (:mod:`b2diffurl.toyworld.detect`,
  colour blobs, no learned model) are exactly what the caption asks: colours, shapes, counts and the
  left/right order.
- **diversity** over the attributes no caption names (the paper's "style"): per prompt, the entropy
  (bits) of the background class (the nearest of the world's 6 backgrounds to the median border pixel)
  and of the size class (small / large, single-object captions only: two or three objects are drawn
  at a capped size), averaged over prompts. A base model that draws every background evenly scores
  near log2(6) = 2.58 bits; a run that collapses to one background scores 0.
"""

import numpy as np
import torch

from b2diffurl.metrics import mean_and_sem
from b2diffurl.toyworld.detect import detect
from b2diffurl.toyworld.world import BACKGROUNDS, SIZES, parse, shows

SIZE_THRESHOLD = sum(SIZES.values()) / 2  # object radius (fraction of the side) between small and large


def background_of(image):
    """Name of the world background nearest to the median border pixel of uint8 RGB [H, W, 3]."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(np.float64)  # [4S, 3]
    median = np.median(border, axis=0)
    names = list(BACKGROUNDS)
    distances = [np.linalg.norm(median - np.array(BACKGROUNDS[n], dtype=np.float64)) for n in names]
    return names[int(np.argmin(distances))]


def entropy_bits(labels):
    """Entropy (bits) of the empirical distribution of a list of labels."""
    _, counts = np.unique(np.array(labels, dtype=object).astype(str), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def judge_images(images, prompts):
    """Per image: (aligned, background, size or None). images: uint8 [N, H, W, 3] (numpy or torch)."""
    images = np.asarray(images)
    out = []
    for image, prompt in zip(images, prompts):
        scene = detect(image)
        groups, _ = parse(prompt)
        size = None
        if sum(count for count, _, _ in groups) == 1 and len(scene.objects) == 1:
            size = "large" if scene.objects[0].radius > SIZE_THRESHOLD else "small"
        out.append((shows(scene, prompt), background_of(image), size))
    return out


def toy_metrics(images, prompts):
    """The JSON keys of the toy metrics of images [N, H, W, 3] with their N prompts: alignment
    mean / sem (over images), background and size entropy (bits, mean over prompts), per-prompt
    alignment, and each image's 0/1 (``aligned``, in image order: evaluations on the same seeds
    compare image by image, a paired difference with a much smaller standard error)."""
    judged = judge_images(images, prompts)
    flags = np.array([a for a, _, _ in judged], dtype=np.float64)
    by_prompt = {}
    for prompt, (ok, background, size) in zip(prompts, judged):
        entry = by_prompt.setdefault(prompt, {"aligned": [], "background": [], "size": []})
        entry["aligned"].append(ok)
        entry["background"].append(background)
        if size is not None:
            entry["size"].append(size)
    sizes = [entropy_bits(e["size"]) for e in by_prompt.values() if len(e["size"]) > 1]
    mean, sem = mean_and_sem(torch.from_numpy(flags))  # raises for no images
    return {
        "alignment_mean": mean,
        "alignment_sem": sem,
        "background_entropy": float(np.mean([entropy_bits(e["background"]) for e in by_prompt.values()])),
        "size_entropy": float(np.mean(sizes)) if sizes else None,
        "per_prompt_alignment": {p: float(np.mean(e["aligned"])) for p, e in by_prompt.items()},
        "aligned": [int(a) for a in flags],
    }


def paired_gain(before, after):
    """(mean, standard error) of the per-image alignment change between two evaluations on the same
    seeds (their ``aligned`` lists, same length and image order)."""
    if len(before) != len(after) or len(before) < 2:
        raise ValueError(f"paired_gain needs two equal lists of at least 2 images (got {len(before)} and {len(after)})")
    return mean_and_sem(torch.tensor(after, dtype=torch.float64) - torch.tensor(before, dtype=torch.float64))
