"""The toy world's captioning reward (b2diffurl.rewards.toycaption): the detector's caption in the
captions' words, and BERTScore's recall of the prompt with the toy CLIP's token embeddings."""

import numpy as np
import pytest
import torch

from b2diffurl.rewards.toycaption import describe
from b2diffurl.toyworld.world import Object, Scene, render, sample_scene


def scene(*objects):
    return Scene(tuple(Object(shape, colour, x, 0.5, 0.16) for shape, colour, x in objects), "")


def test_the_caption_counts_groups_left_to_right_and_names_a_relation():
    assert describe(scene()) == "nothing"
    assert describe(scene(("circle", "red", 0.2))) == "a red circle"
    assert describe(scene(("circle", "red", 0.7), ("circle", "red", 0.2))) == "two red circles"
    assert (
        describe(scene(("square", "blue", 0.8), ("triangle", "green", 0.3))) == "a green triangle left of a blue square"
    )
    many = scene(*(("circle", "red", x) for x in (0.1, 0.3, 0.5, 0.7)), ("square", "blue", 0.05))
    assert describe(many) == "a blue square and three red circles", "four read as three; groups left to right"


@pytest.fixture(scope="module")
def reward():
    from b2diffurl.rewards import build_reward
    from config.stage_process import get_config

    config = get_config("toy,toycaption")
    assert config.reward.name == "toycaption" and config.evaluate.metrics == "toycaption"
    return build_reward(config.reward)


def test_rendered_images_recall_their_own_caption_and_not_another(reward):
    rng = np.random.default_rng(0)
    prompts = ["two red circles", "a blue square left of a green triangle", "a yellow circle"]
    images = torch.from_numpy(np.stack([render(sample_scene(p, rng)) for p in prompts]))
    own = reward(images, prompts)
    assert reward.last_captions == prompts and reward.record() == {"captions": prompts}
    assert own.dtype == torch.float32 and own.tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    swapped = reward(images, prompts[1:] + prompts[:1])
    assert (swapped < 0.9).all(), swapped


def test_the_recall_ignores_what_the_caption_adds_and_credits_near_words(reward):
    """It can disagree with the truth, as a VLM caption scored by BERTScore can: an extra object costs
    nothing, a wrong count only part of the score."""
    recall = reward.recall(
        ["two red circles and a blue square", "three red circles", "two blue circles", "nothing"],
        ["two red circles"] * 4,
    )
    assert recall[0].item() == pytest.approx(1.0, abs=1e-5)
    assert 1.0 > recall[1].item() > recall[3].item() and 1.0 > recall[2].item() > recall[3].item()
