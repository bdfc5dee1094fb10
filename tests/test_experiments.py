"""The paper's experiments end to end on the tiny preset: every objective through the driver, held-out
evaluation during training, and the figures and tables from two experiments."""

import json
import os

import pytest
from PIL import Image

from b2diffurl import records
from conftest import REPO, reward_gain, run_driver

SHORT = {"StageCnt": 2, "BatchCnt": 4, "Seed": 7}


def train_metrics(exp, rounds=2):
    return [records.read_json(exp / f"round_{r:03d}" / "metrics.json") for r in range(rounds)]


@pytest.mark.slow
@pytest.mark.parametrize("presets,algorithm", [("tiny", "pg"), ("tiny,ddpo", "pg"), ("tiny,ddpo", "dpok"), ("tiny,ddpo", "dpo")])
def test_every_objective_runs_the_full_loop(tmp_path, presets, algorithm):
    """ppo (both presets), and dpok and dpo with branching, run through the loop in the other tests."""
    run_driver(tmp_path, config=f"config/stage_process.py:{presets}", ExpName="run", Algorithm=algorithm, **SHORT)
    for metrics in train_metrics(tmp_path / "run"):
        assert metrics["algorithm"] == algorithm
        assert metrics["optimizer_steps"] > 0 and metrics["first_step_max_ratio_deviation"] < 1e-5
        if algorithm == "dpok":
            assert metrics["kl_reference"] >= 0
        if algorithm == "dpo":  # no branching: pairs are two trajectories of the same prompt
            assert metrics["dpo_pairs_by"] == "prompt" and metrics["dpo_pairs"] > 0
    assert train_metrics(tmp_path / "run")[1].get("kl_reference", 1.0) > 0, "round 1 starts from a trained LoRA"


# Per objective: (minimum reward gain, minimum gain in standard errors) on fixed seeds after 6 rounds
# on "red apple", and the driver variables it runs with (PPO's own check, 0.01 and 5 SE, is in
# test_run_process.py). Measured here: DPOK +0.027 (10 SE), DPO +0.028 (10 SE).
# DPO trains only on branch groups whose best and worst were both selected; on one prompt the three
# branches of a group score nearly alike next to the spread between groups, so with thresholds
# +-0.5 no group qualifies and nothing is trained. Thresholds 0 / 0 give it a few pairs per round.
LEARNS = {"dpok": (0.01, 5.0, {}), "dpo": (0.01, 5.0, {"PosThreshold": 0, "NegThreshold": 0})}


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", sorted(LEARNS))
def test_dpok_and_dpo_learn(tmp_path, algorithm):
    prompt_file = tmp_path / "red.json"
    prompt_file.write_text(json.dumps(["red apple"]))
    min_gain, min_se, variables = LEARNS[algorithm]
    run_driver(tmp_path, PromptFile=prompt_file, StageCnt=6, BatchCnt=4, ExpName="learn", Seed=11, Algorithm=algorithm, **variables)
    metrics = train_metrics(tmp_path / "learn", 6)
    if algorithm == "dpo":
        assert all(m["dpo_pairs_by"] == "branch group" for m in metrics) and sum(m["dpo_pairs"] for m in metrics) > 0
    gain, standard_error = reward_gain(tmp_path / "learn" / "round_005" / "lora", ["red apple"])
    assert gain > min_gain and gain > min_se * standard_error


@pytest.mark.slow
def test_two_experiments_evaluate_and_plot(tmp_path):
    runs = {"b2diffurl_seed0": "tiny", "ddpo_seed0": "tiny,ddpo"}
    for name, presets in runs.items():
        out = run_driver(tmp_path, config=f"config/stage_process.py:{presets}", ExpName=name, EvalInterval=1, StageCnt=2, BatchCnt=2, Seed=3).stdout
        assert "held-out evaluation: base ===" in out and "eval base on test" in out
    per_round = {"b2diffurl_seed0": 2 * 8 * 3, "ddpo_seed0": 2 * 8}  # trajectories scored per round
    for name in runs:
        exp = tmp_path / name
        for folder, queries in (("base", 0), ("round_000", per_round[name]), ("round_001", 2 * per_round[name])):
            result = records.read_json(exp / folder / "eval" / "test.json")
            assert result["prompt_set"] == "test" and result["template"] == "template2"
            assert result["prompt_file"] == os.path.join(REPO, "prompts", "template2_test.json")
            assert result["num_images"] == 40 * 4 and len(result["per_prompt"]) == 40
            assert result["reward_queries"] == queries
            assert -1 <= result["clipscore_mean"] <= 1 and result["clipscore_sem"] > 0
            assert 1 <= result["inception_score"] <= 1000
            assert Image.open(exp / folder / "eval" / "test_grid.png").size == (4 * 32, 8 * 32)
        label = records.read_json(exp / "round_001" / "eval" / "test.json")["method"]["label"]
        assert label == {"b2diffurl_seed0": "B2-DiffuRL", "ddpo_seed0": "vanilla"}[name]
    # the base model is judged on the same images in both runs
    base = [records.read_json(tmp_path / name / "base" / "eval" / "test.json")["clipscore_mean"] for name in runs]
    assert base[0] == base[1]

    # a rerun checks the finished evaluations (LoRA and settings unchanged) and redoes none
    evals = sorted((tmp_path / "b2diffurl_seed0").glob("*/eval/*"))
    stamps = [p.stat().st_mtime_ns for p in evals]
    again = run_driver(tmp_path, config="config/stage_process.py:tiny", ExpName="b2diffurl_seed0", EvalInterval=1, StageCnt=2, BatchCnt=2, Seed=3).stdout
    assert "held-out evaluation: base,0,1 ===" in again and again.count("already done, skipped") == 3
    assert [p.stat().st_mtime_ns for p in evals] == stamps and len(evals) == 6

    # two processes shard the evaluation batches and write the same numbers (float summation order aside)
    import shutil
    import subprocess
    import sys

    from conftest import accelerate_two_processes

    shutil.copytree(tmp_path / "b2diffurl_seed0", tmp_path / "copy" / "b2diffurl_seed0")
    os.remove(tmp_path / "copy" / "b2diffurl_seed0" / "round_001" / "eval" / "test.json")
    proc = subprocess.run(
        [*accelerate_two_processes(), "-m", "b2diffurl.evaluate", "--config", "config/stage_process.py:tiny",
         "--config.save_path", str(tmp_path / "copy"), "--config.exp_name", "b2diffurl_seed0", "--rounds", "base,1"],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "eval base on test" in proc.stdout and "already done, skipped" in proc.stdout, "base was current"
    one = records.read_json(tmp_path / "b2diffurl_seed0" / "round_001" / "eval" / "test.json")
    two = records.read_json(tmp_path / "copy" / "b2diffurl_seed0" / "round_001" / "eval" / "test.json")
    assert two["clipscore_mean"] == pytest.approx(one["clipscore_mean"], abs=1e-5)
    assert two["inception_score"] == pytest.approx(one["inception_score"], abs=1e-5)
    assert two["reward_queries"] == one["reward_queries"] and two["per_prompt"].keys() == one["per_prompt"].keys()

    figures = tmp_path / "figures"
    proc = subprocess.run(
        [sys.executable, "-m", "b2diffurl.figures", str(tmp_path / "b2diffurl_seed0"), str(tmp_path / "ddpo_seed0"), "--out", str(figures)],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("curve_test.png", "curve_train_reward.png", "bars_test.png"):
        assert Image.open(figures / name).size[0] > 100
    tables = (figures / "tables.md").read_text()
    for heading in ("Table 1", "Table 2", "Table 3"):
        assert heading in tables
    assert "| b2diffurl |" in tables and "| ddpo |" in tables and "| SD |" in tables
