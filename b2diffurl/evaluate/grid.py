"""An evaluation's image grid: the first ``evaluate.grid_prompts`` prompts (rows) x their first seeds
(columns), labelled with the policy, the prompt set and each row's prompt (b2diffurl.grids)."""

from b2diffurl.evaluate.sampling import images_per_prompt
from b2diffurl.grids import label_grid

GRID_SEEDS = 8  # most columns of the image grid


def image_grid(images, counts, grid_prompts):
    """uint8 [rows * H, cols * W, 3]: the first ``grid_prompts`` prompts (rows) x their first seeds
    (columns: up to 8, as many as the rows all have). images: uint8 [N, H, W, 3] in (prompt, image)
    order; counts: LongTensor [P], images of each prompt (:func:`images_per_prompt`)."""
    import torch

    rows = min(grid_prompts, len(counts))
    cols = min(GRID_SEEDS, int(counts[:rows].min()))
    first = torch.cumsum(counts, 0) - counts  # [P] index of each prompt's first image
    picked = images[first[:rows, None] + torch.arange(cols)]  # [rows, cols, H, W, 3]
    return picked.permute(0, 2, 1, 3, 4).reshape(rows * images.shape[1], cols * images.shape[2], 3)


def policy_grid(images, prompts, evaluate, name, r, prompt_set):
    """uint8 numpy [H', W', 3]: the labelled grid of one policy's evaluation images (``name``, round
    ``r``; r < 0 for the base model) on ``prompt_set``; ``evaluate``: the config's evaluate fields."""
    grid = image_grid(images, images_per_prompt(len(prompts), evaluate.num_images), evaluate.grid_prompts)
    rows = min(evaluate.grid_prompts, len(prompts))
    policy = "base model" if r < 0 else f"{name} LoRA"
    return label_grid(grid.numpy(), rows, f"{policy} | {prompt_set} prompts | seeds {evaluate.seed}+", prompts[:rows])
