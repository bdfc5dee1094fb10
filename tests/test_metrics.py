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


def test_splits_are_equal_consecutive_chunks():
    # chunk 1: two one-hot classes (IS 2); chunk 2: one class twice (IS 1); the odd last row is left out
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    mean, std = inception_score(probs, splits=2)
    assert mean == pytest.approx(1.5) and std == pytest.approx(0.5)
    with pytest.raises(ValueError, match="splits"):
        inception_score(probs, splits=6)


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
