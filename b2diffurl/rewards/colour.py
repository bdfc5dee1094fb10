"""The colour reward: a cheap, deterministic stand-in for tests (not an alignment metric)."""

import math
import re

from b2diffurl.rewards.base import check_inputs

# Target colours of the colour reward: the CSS / X11 named colours, RGB in 0..255.
COLOURS = {
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "orange": (255, 165, 0),
    "purple": (128, 0, 128),
    "pink": (255, 192, 203),
    "brown": (165, 42, 42),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
_COLOUR_WORD = re.compile(r"\b(" + "|".join(COLOURS) + r")\b", re.IGNORECASE)


def prompt_colour(prompt):
    """The first colour word of :data:`COLOURS` in ``prompt`` (whole words, any case)."""
    match = _COLOUR_WORD.search(prompt)
    if match is None:
        raise ValueError(f"prompt {prompt!r} names no colour the colour reward knows; use one of {list(COLOURS)}")
    return match.group(1).lower()


class ColourScore:
    """Cheap, deterministic, prompt-dependent reward for tests and the CPU demo (not a real alignment metric).

    reward = 1 - ||mean RGB of the image - RGB of the prompt's colour word||_2 / sqrt(3), in [0, 1]
    (RGB in [0, 1]; 1 = the image's mean colour is exactly the named colour). The colour is the first
    word of :data:`COLOURS` in the prompt ("red apple" -> red); a prompt naming none is an error.
    """

    def __init__(self, batch_size=64):
        if batch_size < 1:
            raise ValueError(f"reward.batch_size={batch_size} must be >= 1")
        self.batch_size = batch_size

    def __call__(self, images, prompts):
        import torch

        check_inputs(images, prompts)
        if len(prompts) == 0:
            return torch.zeros(0)
        target = torch.tensor([COLOURS[prompt_colour(p)] for p in prompts], dtype=torch.float64) / 255  # [N, 3]
        mean = torch.cat([chunk.double().mean(dim=(1, 2)) for chunk in images.split(self.batch_size)]) / 255  # [N, 3]
        return (1 - (mean - target).norm(dim=-1) / math.sqrt(3)).float()  # [N]
