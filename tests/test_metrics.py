"""The CLIP Inception Score and the mean / standard error on synthetic values."""

import math

import pytest
import torch

from b2diffurl.metrics import inception_score, label_set, mean_and_sem, zero_shot_probs


def test_identical_rows_score_one():
    probs = torch.softmax(torch.randn(1, 7, generator=torch.Generator().manual_seed(0)), dim=1).expand(12, 7)
    mean, std = inception_score(probs)
    assert mean == pytest.approx(1.0) and std == 0.0


@pytest.mark.parametrize("classes", [2, 5, 10])
def test_distinct_one_hot_rows_in_equal_numbers_score_the_class_count(classes):
    probs = torch.eye(classes).repeat(3, 1)  # every class 3 times
    assert inception_score(probs)[0] == pytest.approx(classes)


def test_splits_spread_the_remainder_and_leave_no_row_out():
    # 5 rows in 2 splits: chunks of 3 and 2 rows (none dropped).
    # chunk 1: classes (0, 1, 0): p(y) = (2/3, 1/3), IS = exp((2 log 1.5 + log 3) / 3) = 6.75^(1/3);
    # chunk 2: classes (0, 1): IS 2
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    mean, std = inception_score(probs, splits=2)
    first = 6.75 ** (1 / 3)
    assert mean == pytest.approx((first + 2) / 2) and std == pytest.approx((2 - first) / 2)
    assert inception_score(probs[:4], splits=2) == pytest.approx((1.5, 0.5)), "4 rows: chunks (0, 1) and (0, 0)"
    with pytest.raises(ValueError, match="splits"):
        inception_score(probs, splits=6)


def test_per_prompt_inception_score_by_hand():
    """Within each prompt: identical images score 1, whatever the prompts; the pooled IS of the same
    images counts the different subjects as diversity."""
    from b2diffurl.metrics import per_prompt_inception_score

    # prompt 0: 3 images all class 0; prompt 1: 2 images both class 1; prompt 2: 2 images both class 2
    probs = torch.eye(3)[[0, 0, 0, 1, 1, 2, 2]]
    prompt_ids = torch.tensor([4, 4, 4, 9, 9, 2, 2])
    assert per_prompt_inception_score(probs, prompt_ids) == pytest.approx((1.0, 0.0))
    # pooled: p(y) = (3, 2, 2) / 7, every image one-hot: IS = exp(-sum p log p) = exp(entropy of (3/7, 2/7, 2/7))
    pooled = math.exp(-(3 / 7 * math.log(3 / 7) + 2 * 2 / 7 * math.log(2 / 7)))
    assert inception_score(probs)[0] == pytest.approx(pooled) and pooled > 2.9

    # prompt 0: classes (0, 1) -> IS 2; prompt 1: soft rows (0.5, 0.5, 0) and (1, 0, 0) -> the hand value of
    # test_hand_computed_soft_rows; prompt 7: a single image, left out (its IS is 1 by definition)
    soft = math.exp((0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25) + math.log(1 / 0.75)) / 2)
    probs = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0.5, 0.5, 0], [1.0, 0, 0], [0, 0, 1.0]])
    mean, sem = per_prompt_inception_score(probs, torch.tensor([0, 0, 1, 1, 7]))
    assert mean == pytest.approx((2 + soft) / 2)
    assert sem == pytest.approx(abs(2 - soft) / 2), "two prompts: stdev |a - b| / sqrt(2), over sqrt(2)"
    with pytest.raises(ValueError, match="at least 2 images"):
        per_prompt_inception_score(torch.eye(3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="3 rows but 2 prompt ids"):
        per_prompt_inception_score(torch.eye(3), torch.tensor([0, 1]))


def test_hand_computed_soft_rows():
    probs = torch.tensor([[0.5, 0.5], [1.0, 0.0]])  # marginal (0.75, 0.25)
    kl = [0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25), math.log(1 / 0.75)]
    assert inception_score(probs)[0] == pytest.approx(math.exp(sum(kl) / 2))


def test_zero_shot_probs_are_a_softmax_of_scaled_cosines():
    image = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    labels = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), dim=-1)
    probs = zero_shot_probs(image, labels, 100.0)
    assert probs.sum(dim=1).tolist() == pytest.approx([1.0, 1.0])
    expected = torch.softmax(torch.tensor([100.0, 100 / math.sqrt(2)]), dim=0)
    assert probs[0].tolist() == pytest.approx(expected.tolist())


def test_mean_and_sem():
    mean, sem = mean_and_sem(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert mean == 2.5 and sem == pytest.approx(math.sqrt(5 / 3) / 2)
    assert mean_and_sem(torch.tensor([3.0])) == (3.0, 0.0)


def test_imagenet_label_set():
    names = label_set("imagenet-1k")
    # CLIP's zero-shot names repeat two (missile, sunglasses), as ImageNet's own classes nearly do
    assert len(names) == 1000 and len(set(names)) == 998 and names[0] == "tench"
