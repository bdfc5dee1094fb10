"""The reward's settings (``reward.*``): its name or weighted sum, its precision, whether it can score
the config's prompts, and the local files and folders of its models."""

import os

from b2diffurl.checks.model import check_model_location
from b2diffurl.choices import REWARD_NAMES, REWARD_PRECISIONS
from b2diffurl.rewards.colour import prompt_colour
from b2diffurl.rewards.combined import RewardSpecError, parse_spec

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".bin", ".pth")


def check_reward(c, prompts):
    """The reward must be able to score this config's prompts: checked before sampling, not after it."""
    reward = c.config.reward
    c.integer("reward.batch_size", 1)
    c.one_of(
        "reward.precision",
        REWARD_PRECISIONS,
        f"must be one of {', '.join(REWARD_PRECISIONS)} "
        "(fp32 keeps close branch scores apart; fp16 is faster on a GPU)",
    )
    try:
        names = [name for name, _ in parse_spec(reward.name, REWARD_NAMES)]
    except RewardSpecError as err:
        c.require(False, "reward.name", reward.name, str(err))
        return
    if "colour" in names and prompts:
        _check_colour_prompts(c, prompts)
    if "bertscore" in names:
        check_bertscore(c)
    if "clipscore" in names or "toycaption" in names:  # (toycaption embeds with the reward's CLIP too)
        _check_clip_files(c)


def _check_colour_prompts(c, prompts):
    """One line for the first prompt the colour reward cannot score."""
    for prompt in prompts:
        try:
            prompt_colour(prompt)
        except ValueError:
            c.require(
                False,
                "reward.name",
                "colour",
                f"cannot score prompt {prompt!r} (it names no colour): use clipscore or a prompt file such as "
                "prompts/template2_train.json",
            )
            return


def _check_clip_files(c):
    """The open_clip config and checkpoint, when they are given as local files, exist."""
    reward = c.config.reward
    if reward.clip_model.endswith(".json"):
        c.require(
            os.path.isfile(reward.clip_model),
            "reward.clip_model",
            reward.clip_model,
            "does not exist: fix the open_clip config path",
        )
    if reward.clip_pretrained.endswith(CHECKPOINT_SUFFIXES):
        c.require(
            os.path.isfile(reward.clip_pretrained),
            "reward.clip_pretrained",
            reward.clip_pretrained,
            "does not exist: fix the checkpoint path",
        )


def reward_components(name):
    """The reward names in ``reward.name`` (one, or a weighted sum); [] when it is not a valid spec."""
    try:
        return [n for n, _ in parse_spec(name, REWARD_NAMES)]
    except RewardSpecError:
        return []


def check_bertscore(c):
    """The bertscore reward's settings: the reference names the prompt, lengths and layer in range, and
    the captioner and encoder are local folders of their kind (or hub ids, checked by
    :mod:`b2diffurl.checks.hub`)."""
    reward = c.config.reward
    c.integer("reward.caption_max_tokens", 1)
    c.integer("reward.bertscore_layer", 1)
    c.require(
        isinstance(reward.caption_question, str) and reward.caption_question.strip() != "",
        "reward.caption_question",
        reward.caption_question,
        "is empty: ask the captioner a question (the release's: 'Answer concisely: what is going on in this image?')",
    )
    c.require(
        isinstance(reward.caption_reference, str) and "{prompt}" in reward.caption_reference,
        "reward.caption_reference",
        reward.caption_reference,
        "must contain {prompt}, where each image's prompt goes (the release's: 'The image contains {prompt}')",
    )
    c.one_of(
        "reward.caption_precision",
        ("auto", *REWARD_PRECISIONS),
        f"must be auto or one of {', '.join(REWARD_PRECISIONS)}",
    )
    if reward.build_tiny_text:
        return
    for field, kind in (
        ("captioner", "a LLaVA model (transformers' LlavaForConditionalGeneration)"),
        ("bertscore_model", "an encoder such as microsoft/deberta-xlarge-mnli"),
    ):
        check_model_location(
            c, f"reward.{field}", reward[field], "config.json", f"{kind} saved with save_pretrained", f" of {kind}"
        )
