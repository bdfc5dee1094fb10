"""normalize_scores and select_pairs on hand-computed cases."""

import math

import pytest
import torch

from b2diffurl.errors import RecordError
from b2diffurl.selection import history_rounds, normalize_scores, select_pairs


def test_normalisation_without_history():
    scores = torch.tensor([1.0, 2.0, 3.0, 10.0, 20.0])
    prompts = ["a", "a", "a", "b", "b"]
    # prompt a: mean 2, std 1; prompt b: mean 15, std sqrt(50)
    expected = torch.tensor([-1.0, 0.0, 1.0, -5 / math.sqrt(50), 5 / math.sqrt(50)])
    torch.testing.assert_close(normalize_scores(scores, prompts, []), expected, atol=1e-6, rtol=1e-6)


def test_normalisation_with_history():
    scores = torch.tensor([4.0, 6.0])
    prompts = ["a", "b"]
    history = [{"a": [1.0, 2.0], "c": [100.0]}, {"a": [3.0], "b": [6.0, 8.0]}]
    # a: values 1, 2, 3, 4 -> mean 2.5, unbiased std sqrt(5/3); b: 6, 8, 6 -> mean 20/3, std sqrt(4/3)
    a = (4.0 - 2.5) / (math.sqrt(5 / 3) + 1e-8)
    b = (6.0 - 20 / 3) / (math.sqrt(4 / 3) + 1e-8)
    torch.testing.assert_close(normalize_scores(scores, prompts, history), torch.tensor([a, b]), atol=1e-6, rtol=1e-6)
    # only the rounds passed are used: dropping the oldest changes a
    a_recent = (4.0 - 3.5) / (math.sqrt(0.5) + 1e-8)
    assert normalize_scores(scores, prompts, history[1:])[0].item() == pytest.approx(a_recent, rel=1e-6)


def test_zero_std_and_single_sample():
    scores = torch.tensor([0.3, 0.3, 0.7])
    out = normalize_scores(scores, ["a", "a", "b"], [])
    assert torch.equal(out, torch.zeros(3)), "equal scores and a prompt seen once give r_hat = 0, never NaN"


def test_matches_torch_std_definition():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(12, generator=g)
    prompts = [f"p{i % 3}" for i in range(12)]
    out = normalize_scores(scores, prompts, [])
    for p in range(3):
        s = scores[p::3]
        torch.testing.assert_close(out[p::3], (s - s.mean()) / (s.std() + 1e-8))


def test_select_best_and_worst_per_group():
    normalised = torch.tensor([0.9, -0.2, -0.8, 0.1, 0.2, 0.3, 1.5, -1.5, 0.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    keep = select_pairs(normalised, groups, 0.5, -0.5)
    # group 0: best 0.9 >= 0.5 and worst -0.8 < -0.5; group 1: neither; group 2: both
    assert keep.tolist() == [0, 2, 6, 7]
    assert keep.dtype == torch.long


def test_thresholds_are_inclusive_above_and_strict_below():
    normalised = torch.tensor([0.5, 0.0, -0.5])
    keep = select_pairs(normalised, torch.tensor([0, 0, 0]), 0.5, -0.5)
    assert keep.tolist() == [0], "0.5 >= pos is kept, -0.5 < neg is not"


def test_group_with_only_one_side():
    normalised = torch.tensor([2.0, 1.0, 0.9, -0.1, -0.2, -3.0])
    keep = select_pairs(normalised, torch.tensor([7, 7, 7, 3, 3, 3]), 0.5, -0.5)
    assert keep.tolist() == [0, 5]


def test_ties_go_to_the_lowest_index_and_groups_need_not_be_contiguous():
    normalised = torch.tensor([1.0, -1.0, 1.0, -1.0, 0.0])
    groups = torch.tensor([5, 2, 5, 2, 2])
    keep = select_pairs(normalised, groups, 0.5, -0.5)
    # group 5: rows 0, 2 (tie at 1.0 -> 0; worst tie at 1.0 -> 0, but 1.0 is not < -0.5)
    # group 2: rows 1, 3, 4 (best 0.0 < 0.5: none; worst tie -1.0 -> 1)
    assert keep.tolist() == [0, 1]


def test_ddpo_mode_keeps_every_trajectory_once():
    normalised = torch.tensor([0.3, -2.0, 0.0, 5.0])
    keep = select_pairs(normalised, torch.arange(4), float("-inf"), float("inf"))
    assert keep.tolist() == [0, 1, 2, 3]


def test_infinite_thresholds_with_branches_keep_argmax_and_argmin():
    normalised = torch.tensor([0.1, 0.2, 0.3, -1.0, -1.0, -1.0])
    keep = select_pairs(normalised, torch.tensor([0, 0, 0, 1, 1, 1]), float("-inf"), float("inf"))
    assert keep.tolist() == [0, 2, 3], "group 1 is all ties: its argmax and argmin are both row 3"


def test_empty_selection():
    keep = select_pairs(torch.zeros(6), torch.tensor([0, 0, 0, 1, 1, 1]), 0.5, -0.5)
    assert keep.tolist() == []


def test_history_rounds_are_the_last_rounds_and_all_must_be_finished(tmp_path):
    for r in range(6):
        (tmp_path / f"round_{r:03d}").mkdir()
        (tmp_path / f"round_{r:03d}" / "select.done").write_text("{}")
    (tmp_path / "other_001").mkdir()
    found = history_rounds(str(tmp_path), "round_005", 3)
    assert [p.rsplit("/", 1)[1] for p in found] == ["round_002", "round_003", "round_004"]
    assert history_rounds(str(tmp_path), "round_000", 8) == []
    assert history_rounds(str(tmp_path), "round_005", 0) == []
    assert len(history_rounds(str(tmp_path), "round_002", 8)) == 2, "the first rounds have a shorter history"
    # A round of the window without its selection would shorten the history: an error with the fix.
    (tmp_path / "round_003" / "select.done").unlink()
    with pytest.raises(RecordError) as err:
        history_rounds(str(tmp_path), "round_005", 3)
    message = str(err.value)
    assert "round_003/select.done is missing" in message and "History_Cnt" in message and "to 1" in message
    assert [p.rsplit("/", 1)[1] for p in history_rounds(str(tmp_path), "round_005", 1)] == ["round_004"]
    # The official names (stage0, stage1, ..., stage10) are found too.
    for r in (8, 9):
        (tmp_path / f"stage{r}").mkdir()
        (tmp_path / f"stage{r}" / "select.done").write_text("{}")
    assert [p.rsplit("/", 1)[1] for p in history_rounds(str(tmp_path), "stage10", 2)] == ["stage8", "stage9"]
