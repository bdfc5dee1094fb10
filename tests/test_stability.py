"""App. F.1's reward-stability study (b2diffurl.stability): pair differences by hand, and the command
on the tiny models with both rewards."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO
from PIL import Image

from b2diffurl import records
from b2diffurl.stability import pair_differences, summarise


def test_pair_differences_take_every_pair_of_a_group_in_group_order():
    scores = torch.tensor([0.30, 0.50, 0.31, 0.20, 0.52, 0.25])
    group_ids = torch.tensor([7, 3, 7, 9, 3, 9])  # groups 3: (0.50, 0.52), 7: (0.30, 0.31), 9: (0.20, 0.25)
    assert pair_differences(scores, group_ids).tolist() == pytest.approx([0.02, 0.01, 0.05])
    three = pair_differences(torch.tensor([1.0, 1.5, 3.0]), torch.tensor([0, 0, 0]))  # pairs (0,1) (0,2) (1,2)
    assert three.tolist() == pytest.approx([0.5, 2.0, 1.5])
    summary = summarise(torch.tensor([0.005, 0.02, 0.01, 0.5]), 0.01)
    assert summary["fraction_above"] == 0.5 and summary["pairs"] == 4 and summary["median"] == pytest.approx(0.01)
    with pytest.raises(ValueError, match="same number of images"):
        pair_differences(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 0, 1]))


def run_study(tmp_path, *flags):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "b2diffurl.stability",
            "--config",
            "config/stage_process.py:tiny,bertscore",
            "--config.save_path",
            str(tmp_path),
            "--config.exp_name",
            "stab",
            "--groups",
            "8",
            *flags,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )


@pytest.mark.slow
def test_the_study_scores_near_identical_pairs_under_both_rewards(tmp_path):
    """Branches that differ only in the last step score closer than branches that differ in all 4
    (CLIPScore); the JSON's differences are those of its scores within the sampled groups, its
    fractions those of the threshold; bad flags stop with one line each."""
    means = {}
    for steps in (1, 4):
        proc = run_study(tmp_path, "--steps", str(steps))
        assert proc.returncode == 0, proc.stderr[-3000:]
        folder = tmp_path / "stab" / f"stability_k{steps}"
        result = json.loads((folder / "stability.json").read_text())
        assert (
            result["steps"] == steps and result["groups"] == 8 and list(result["rewards"]) == ["clipscore", "bertscore"]
        )
        _, trajectories = records.load_samples(str(folder))
        for name, entry in result["rewards"].items():
            assert len(entry["scores"]) == 16 and entry["pairs"] == 8
            expected = pair_differences(torch.tensor(entry["scores"]), trajectories.group_ids)
            assert entry["differences"] == pytest.approx(expected.tolist(), abs=1e-7)
            assert entry["fraction_above"] == pytest.approx((expected > 0.01).double().mean().item())
            assert f"{name}: 8 pairs" in proc.stdout
        means[steps] = result["rewards"]["clipscore"]["mean"]
        with Image.open(folder / "stability.png") as image:
            assert image.size[0] > 400
    assert means[1] < means[4], means
    bad = run_study(tmp_path, "--steps", "9", "--rewards", "clipscore,bleu")
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert bad.returncode == 2 and len(errors) == 2, bad.stderr[-2000:]
    assert "--steps=9 must be 1..4" in errors[0] or "--steps=9 must be 1..4" in errors[1]
    assert not (tmp_path / "stab" / "stability_k9").exists()


def test_a_non_finite_score_stops_the_study_naming_the_reward():
    from b2diffurl.errors import NonFiniteError
    from b2diffurl.stability import check_scores

    check_scores("clipscore", torch.tensor([0.1, 0.2]))
    with pytest.raises(NonFiniteError) as err:
        check_scores("toycaption", torch.tensor([0.1, float("nan"), 0.3, float("inf")]))
    assert str(err.value) == (
        "stability: the reward toycaption gave 2 of 4 images a non-finite score (the first: image 1): "
        "check the reward model"
    )
