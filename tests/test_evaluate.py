"""Evaluation bookkeeping without models: how a prompt set's images are spread over its prompts, and the grid."""

import torch

from b2diffurl.evaluate import eval_batches, image_grid, images_per_prompt, item_prompts


def test_images_are_spread_over_the_prompts():
    # Table 3: 1,600 images on template 1's 90 held-out prompts -> 70 prompts x 18 + 20 x 17
    counts = images_per_prompt(90, 1600)
    assert counts.sum().item() == 1600 and counts[:70].tolist() == [18] * 70 and counts[70:].tolist() == [17] * 20
    assert (
        images_per_prompt(40, 1600).tolist() == [40] * 40
        and images_per_prompt(30, 1600).tolist() == [54] * 10 + [53] * 20
    )
    assert item_prompts(["a", "b", "c"], 7) == ["a", "a", "a", "b", "b", "c", "c"], (
        "prompt-major, the first prompts one more"
    )
    batches = eval_batches(3, 7, 3)
    assert [b.tolist() for b in batches] == [[0, 0, 0], [1, 1, 2], [2]], (
        "fixed batches: batch b draws its noise from (seed, b)"
    )


def test_the_grid_takes_each_prompts_first_images():
    # 3 prompts with 3, 2, 2 images of 1 x 1 pixel whose value is the image's index
    images = torch.arange(7, dtype=torch.uint8).view(7, 1, 1, 1).expand(7, 1, 1, 3)
    grid = image_grid(images, torch.tensor([3, 2, 2]), grid_prompts=2)
    assert grid[..., 0].tolist() == [[0, 1], [3, 4]], "rows = prompts, columns = as many seeds as every row has"


def test_methods_are_named_as_the_paper_names_them():
    """Table 2's columns come from these labels: vanilla DPO's 2 samples from one x_T (presets ddpo,dpo)
    are the vanilla algorithm, not branch-based sampling."""
    from b2diffurl.evaluate import method_of
    from config.stage_process import get_config

    def label(presets):
        config = get_config(presets)
        return method_of(config, config.split_time)["label"], config.train.algorithm

    assert label("template1") == ("B2-DiffuRL", "ppo") and label("template1,dpo") == ("B2-DiffuRL", "dpo")
    assert label("template1,ddpo") == ("vanilla", "ppo") and label("template1,ddpo,dpok") == ("vanilla", "dpok")
    assert label("template1,ddpo,dpo") == ("vanilla", "dpo")
    assert label("template1,bpt_only") == ("BPT only", "ppo")
    config = get_config("template1,ddpo")
    config.split_time = 3  # branching from x_T with PPO: branch-based sampling without BPT
    assert method_of(config, 3)["label"] == "BS only"


def test_grids_label_themselves():
    """A title band on top and a band above each row, with dark text on the light band; rows keep their images."""
    import numpy as np

    from b2diffurl.grids import BAND, label_grid

    grid = np.zeros((2 * 32, 3 * 32, 3), dtype=np.uint8)
    grid[32:] = 200
    out = label_grid(grid, 2, "round_001 LoRA | test prompts | seeds 10000+", ["a red circle", "two green squares"])
    band = (out.shape[0] - 2 * 32) // 3
    assert out.shape == (3 * band + 2 * 32, 3 * 32, 3) and band >= 12
    for top in (0, band, 2 * band + 32):  # the title band, then each row's band
        strip = out[top : top + band]
        assert (strip == np.array(BAND, dtype=np.uint8)).all(axis=-1).mean() > 0.5 and (strip < 100).any(), (
            "text on a band"
        )
    assert (out[2 * band : 2 * band + 32] == 0).all() and (out[3 * band + 32 :] == 200).all()


def test_a_nan_metric_stops_the_evaluation_naming_it():
    """Every number the evaluation reports is checked before anything is written, evaluate.metrics'
    included: the first NaN or infinite one is named in one line (NonFiniteError, exit status 3)."""
    import math

    import pytest

    from b2diffurl.errors import NonFiniteError
    from b2diffurl.evaluate import check_finite

    scores = {
        "clipscore_mean": 0.3,
        "inception_score": 1.5,
        "inception_score_per_prompt": 1.1,
        "reward_mean": 0.3,
        "alignment_mean": 0.8,
        "toycaption_mean": 0.9,
        "seed": 7,
    }
    check_finite(scores, "evaluate base on test")
    for key, bad in (("toycaption_mean", math.nan), ("reward_mean", math.inf), ("alignment_mean", -math.inf)):
        with pytest.raises(NonFiniteError) as err:
            check_finite({**scores, key: bad}, "evaluate base on test")
        assert (
            str(err.value)
            == f"evaluate base on test: {key} is {bad}: check the images in the grid and the reward model"
        )
