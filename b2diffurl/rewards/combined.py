"""Rewards combined: ``reward.name = "clipscore+bertscore"``, or with weights
``"clipscore+0.5*bertscore"``. The weighted sum is *the* reward: selection normalises it per prompt
(App. D.1's normalisation applies to the sum, not to each part) and training follows it; each
component's raw score is kept per image (scores.json's ``components``), and its mean per round in
the stage summary, progress.csv (``reward_<name>_mean``) and the experiment log.
"""

import math
import re

_PART = re.compile(
    r"\s*(?:(?P<weight>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE]-?\d+)?)\s*\*\s*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*"
)


class RewardSpecError(ValueError):
    """A reward.name that is not a reward or a sum of weighted rewards; the message is the fix."""


def parse_spec(spec, known):
    """[(component, weight)] of ``spec`` ("clipscore", "clipscore+0.5*bertscore"); ``known``: the
    reward names. Raises RewardSpecError naming the part at fault."""
    parts = []
    for text in str(spec).split("+"):
        match = _PART.fullmatch(text)
        if match is None:
            raise RewardSpecError(
                f"has a part {text.strip()!r} that is not NAME or WEIGHT*NAME: write e.g. 'clipscore+0.5*bertscore'"
            )
        name, weight = match.group("name"), float(match.group("weight") or 1.0)
        if name not in known:
            raise RewardSpecError(
                f"is not a known reward{' (in ' + repr(text.strip()) + ')' if len(str(spec).split('+')) > 1 else ''}: "
                f"choose from {list(known)}, or a sum such as 'clipscore+0.5*bertscore'"
            )
        if not math.isfinite(weight) or weight <= 0:
            raise RewardSpecError(
                f"gives {name} the weight {weight:g}: weights must be positive (drop a reward rather than weigh it 0)"
            )
        if name in (n for n, _ in parts):
            raise RewardSpecError(f"names {name} twice: give it one weight")
        parts.append((name, weight))
    return parts


class Combined:
    """sum_i w_i * reward_i(images, prompts) [N]; ``record()`` keeps each component's raw scores."""

    def __init__(self, parts):
        self.parts = parts  # [(name, weight, scorer)]
        self.last = {}

    @property
    def names(self):
        """The component rewards' names, in the spec's order."""
        return [name for name, _, _ in self.parts]

    def __call__(self, images, prompts):
        self.last = {name: scorer(images, prompts) for name, _, scorer in self.parts}  # {name: [N]}
        return sum(weight * self.last[name] for name, weight, _ in self.parts).float()

    def record(self):
        """scores.json's extra fields: each component's raw score per image, the weights, and what the
        components read off the images (bertscore's captions)."""
        extra = {
            "components": {name: scores.tolist() for name, scores in self.last.items()},
            "weights": {name: weight for name, weight, _ in self.parts},
        }
        for _, _, scorer in self.parts:
            if hasattr(scorer, "record"):
                extra.update(scorer.record())
        return extra

    def component_means(self):
        """{name: mean raw score} of the last call."""
        return {name: scores.float().mean().item() for name, scores in self.last.items()}
