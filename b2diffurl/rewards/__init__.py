"""Rewards: one score per final image, higher = image better aligned with its prompt.

:data:`REWARDS` maps a reward name (``config.reward.name``) to a factory
``factory(reward_config, device) -> scorer``; :func:`build_reward` looks it up. A scorer is called as
``scorer(images, prompts)`` with ``images`` a uint8 tensor [N, H, W, 3] (RGB, as read from the PNGs)
and ``prompts`` a list of N strings, and returns a float32 CPU tensor [N]. Images go through the
model in chunks of ``reward_config.batch_size``, without gradients.

One module per reward:

- ``clipscore`` (:mod:`.clipscore`, the paper's reward): cosine similarity of the open_clip image and
  text embeddings.
- ``colour`` (:mod:`.colour`): a cheap, deterministic stand-in for tests.
- ``bertscore`` (:mod:`.bertscore`, the paper's second reward): a LLaVA caption of the image against
  the prompt by BERTScore recall (DeBERTa-xlarge-MNLI).
- ``toycaption`` (:mod:`.toycaption`): its toy-world stand-in on the CPU, the toy detector's caption
  against the prompt by the same recall, tokens embedded by the toy CLIP's text tower.

``reward.name`` may also be a weighted sum, ``"clipscore+0.5*bertscore"`` (:mod:`.combined`).
Each factory imports its module's heavy libraries only when its reward is built.
"""

from b2diffurl import heap
from b2diffurl.choices import registry
from b2diffurl.rewards.base import check_inputs
from b2diffurl.rewards.clipscore import PRECISIONS, ClipScore
from b2diffurl.rewards.colour import COLOURS, ColourScore, prompt_colour

__all__ = [
    "COLOURS",
    "PRECISIONS",
    "REWARDS",
    "ClipScore",
    "ColourScore",
    "build_reward",
    "check_inputs",
    "prompt_colour",
]

# reward.name (b2diffurl.choices.REWARD_NAMES) -> its factory
REWARDS = registry(
    {
        "clipscore": lambda cfg, device: ClipScore(
            cfg.clip_model, cfg.clip_pretrained, cfg.batch_size, device, cfg.get("precision", "fp32")
        ),
        "colour": lambda cfg, device: ColourScore(cfg.batch_size),
        "bertscore": lambda cfg, device: _bertscore(cfg, device),
        "toycaption": lambda cfg, device: _toycaption(cfg, device),
    },
    "REWARD_NAMES",
    "b2diffurl.rewards.REWARDS",
)


def _toycaption(cfg, device):
    from b2diffurl.rewards.toycaption import ToyCaption

    return ToyCaption(cfg, device)


def _bertscore(cfg, device):
    from b2diffurl.rewards.bertscore import BertScore

    return BertScore(cfg, device)


def build_reward(reward_config, device="cpu"):
    """The scorer named by ``reward_config.name`` (a ``config.reward`` ConfigDict), on ``device``: one
    reward, or a weighted sum of them (:mod:`.combined`: "clipscore+0.5*bertscore")."""
    from b2diffurl.rewards.combined import Combined, RewardSpecError, parse_spec

    try:
        parts = parse_spec(reward_config.name, list(REWARDS))
    except RewardSpecError as err:
        raise ValueError(f"reward.name={reward_config.name!r} {err}") from None
    if len(parts) == 1 and parts[0][1] == 1.0:
        reward = REWARDS[parts[0][0]](reward_config, device)
    else:
        reward = Combined([(name, weight, REWARDS[name](reward_config, device)) for name, weight in parts])
    heap.settle()  # see b2diffurl.heap
    return reward
