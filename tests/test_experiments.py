"""The paper's experiments end to end on the tiny preset: every objective through the driver, held-out
evaluation during training, and the figures and tables from two experiments."""

import json
import os

import pytest
import torch
from conftest import REPO, reward_gain, run_driver
from PIL import Image

from b2diffurl import records

SHORT = {"StageCnt": 2, "BatchCnt": 2, "Seed": 7}


def train_metrics(exp, rounds=2):
    return [records.read_json(exp / f"round_{r:03d}" / "metrics.json") for r in range(rounds)]


@pytest.mark.slow
@pytest.mark.parametrize(
    "presets,algorithm", [("tiny", "pg"), ("tiny,ddpo", "pg"), ("tiny,ddpo", "dpok"), ("tiny,ddpo,dpo", "dpo")]
)
def test_every_objective_runs_the_full_loop(tmp_path, presets, algorithm):
    """ppo (both presets), and dpok and dpo with branching, run through the loop in the other tests.
    Vanilla DPO (ddpo,dpo) samples 2 branches from step 0, so each pair shares its initial noise x_T."""
    run_driver(
        tmp_path,
        config=f"config/stage_process.py:{presets}",
        ExpName="run",
        Algorithm=algorithm,
        SaveInterval=1,
        OneProcess=1,
        **SHORT,
    )
    for metrics in train_metrics(tmp_path / "run"):
        assert metrics["algorithm"] == algorithm
        assert metrics["optimizer_steps"] > 0 and metrics["first_step_max_ratio_deviation"] < 1e-5
        if algorithm in ("dpok", "dpo"):  # both compare with the frozen base model by default
            assert metrics["kl_reference"] >= 0
        if algorithm == "dpo":
            assert metrics["dpo_pairs"] > 0 and metrics["dpo_unpaired"] == 0, "thresholds -inf/+inf keep both members"
    assert train_metrics(tmp_path / "run")[1].get("kl_reference", 1.0) > 0, "round 1 starts from a trained LoRA"
    if algorithm == "dpo":
        manifest, trajectories = records.load_samples(str(tmp_path / "run" / "round_000"))
        assert manifest["split_time"] == 2 and manifest["split_step"] == manifest["num_steps"], (
            "branching at x_T (k = T)"
        )
        x_T = trajectories.latents[:, 0]  # [N, C, H, W]: the latent before the first step
        assert torch.equal(x_T[0::2], x_T[1::2]) and not torch.equal(x_T[0::2][0], x_T[0::2][1]), (
            "pairs share x_T, groups do not"
        )
        assert torch.equal(trajectories.group_ids[0::2], trajectories.group_ids[1::2])
        assert not torch.equal(trajectories.latents[0::2, -1], trajectories.latents[1::2, -1]), "then they diverge"


# Per objective: (minimum reward gain, minimum gain in standard errors, evaluation images) on fixed
# seeds after its rounds on "red apple", and the driver variables it runs with (PPO's own check, 0.01
# and 5 SE, is in test_run_process.py), with the releases' settings (DPOK: weights 1000 / 0.1, ratio
# clamped to 1 +- 1e-4; DPO: the frozen base model as reference, ratios clamped to 1 +- 0.1), at one
# thread (as a worker of pytest -n 2 runs it). The runs' floats differ from CPU to CPU, and so do the
# gains. DPOK gains about +0.01 .. +0.025 whatever the budget: measured 2026-12-01 on 64 images, a run
# of 3 rounds +0.0097 (3.6 SE), of 4 +0.0231 (8.5 SE), of 5 +0.0089 (3.2 SE), of 6 +0.0097 (3.5 SE);
# on 256 images the 3- and 5-round runs +0.0098 (7.8 SE) and +0.0090 (7.1 SE). So it is judged on 256
# images, 5 SE and +0.005. DPO (2026-11-30, one 6-round run, after rounds 1..6) +0.002, 0.002, 0.012,
# 0.012, 0.026, 0.038 (0.8, 0.8, 4.2, 4.2, 9.4, 14.1 SE), so 6 rounds.
LEARNS = {
    "dpok": (0.005, 5.0, 256, {"StageCnt": 3}),
    "dpo": (0.01, 5.0, 64, {"StageCnt": 6, "PosThreshold": 0, "NegThreshold": 0}),
}


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", sorted(LEARNS))
def test_dpok_and_dpo_learn(tmp_path, algorithm):
    prompt_file = tmp_path / "red.json"
    prompt_file.write_text(json.dumps(["red apple"]))
    min_gain, min_se, images, variables = LEARNS[algorithm]
    rounds = variables["StageCnt"]
    run_driver(
        tmp_path,
        PromptFile=prompt_file,
        BatchCnt=4,
        ExpName="learn",
        Seed=11,
        Algorithm=algorithm,
        OneProcess=1,
        **variables,
    )
    metrics = train_metrics(tmp_path / "learn", rounds)
    if algorithm == "dpo":
        assert sum(m["dpo_pairs"] for m in metrics) > 0
    gain, standard_error = reward_gain(
        tmp_path / "learn" / f"round_{rounds - 1:03d}" / "lora", ["red apple"], images=images
    )
    assert gain > min_gain and gain > min_se * standard_error


@pytest.mark.slow
def test_two_experiments_evaluate_and_plot(tmp_path):
    """EvalInterval=1 evaluates the base model and every round on both prompt sets; the figures take
    Tables 1-2 from the training prompts and Table 3 from the held-out ones, at equal reward queries."""
    runs = {"b2diffurl_seed0": "tiny", "ddpo_seed0": "tiny,ddpo"}
    for name, presets in runs.items():
        out = run_driver(
            tmp_path,
            config=f"config/stage_process.py:{presets}",
            ExpName=name,
            EvalInterval=1,
            StageCnt=2,
            BatchCnt=2,
            Seed=3,
            OneProcess=1,
        ).stdout
        assert "evaluation: base ===" in out and "eval base on train" in out and "eval base on test" in out
    per_round = {"b2diffurl_seed0": 2 * 8 * 3, "ddpo_seed0": 2 * 8}  # trajectories scored per round
    for name in runs:
        exp = tmp_path / name
        for folder, queries in (("base", 0), ("round_000", per_round[name]), ("round_001", 2 * per_round[name])):
            for prompt_set in ("train", "test"):
                result = records.read_json(exp / folder / "eval" / f"{prompt_set}.json")
                assert result["prompt_set"] == prompt_set and result["template"] == "template2"
                assert result["prompt_file"] == os.path.join(REPO, "prompts", f"template2_{prompt_set}.json")
                assert result["num_images"] == 80 and result["num_prompts"] == 40 and len(result["per_prompt"]) == 40
                assert result["reward_queries"] == queries
                assert -1 <= result["clipscore_mean"] <= 1 and result["clipscore_sem"] > 0
                assert 1 <= result["inception_score_per_prompt"] <= 2 and result["inception_score_per_prompt_sem"] >= 0
                assert result["inception_score_per_prompt"] < result["inception_score"] <= 1000, (
                    "pooled over 40 prompts"
                )
                assert Image.open(exp / folder / "eval" / f"{prompt_set}_grid.png").size == (2 * 32, 8 * 32 + 9 * 16), (
                    "8 rows of 2 images, a 16-px band over each row and a title band"
                )
        label = records.read_json(exp / "round_001" / "eval" / "test.json")["method"]["label"]
        assert label == {"b2diffurl_seed0": "B2-DiffuRL", "ddpo_seed0": "vanilla"}[name]
    # the base model is judged on the same images in both runs
    base = [records.read_json(tmp_path / name / "base" / "eval" / "test.json")["clipscore_mean"] for name in runs]
    assert base[0] == base[1]

    # a rerun checks the finished evaluations (LoRA and settings unchanged) and redoes none
    evals = sorted((tmp_path / "b2diffurl_seed0").glob("*/eval/*"))
    stamps = [p.stat().st_mtime_ns for p in evals]
    again = run_driver(
        tmp_path,
        config="config/stage_process.py:tiny",
        ExpName="b2diffurl_seed0",
        EvalInterval=1,
        StageCnt=2,
        BatchCnt=2,
        Seed=3,
        OneProcess=1,
    ).stdout
    assert "evaluation: base,0,1 ===" in again and again.count("already done, skipped") == 6
    assert [p.stat().st_mtime_ns for p in evals] == stamps and len(evals) == 12

    # two processes shard the evaluation batches and write the same numbers (float summation order aside)
    import shutil
    import subprocess
    import sys

    from conftest import accelerate_two_processes

    shutil.copytree(tmp_path / "b2diffurl_seed0", tmp_path / "copy" / "b2diffurl_seed0")
    os.remove(tmp_path / "copy" / "b2diffurl_seed0" / "round_001" / "eval" / "test.json")
    proc = subprocess.run(
        [
            *accelerate_two_processes(),
            "-m",
            "b2diffurl.evaluate",
            "--config",
            "config/stage_process.py:tiny",
            "--config.save_path",
            str(tmp_path / "copy"),
            "--config.exp_name",
            "b2diffurl_seed0",
            "--rounds",
            "base,1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "eval round_001 on test" in proc.stdout and proc.stdout.count("already done, skipped") == 3, (
        "only the removed one is redone"
    )
    one = records.read_json(tmp_path / "b2diffurl_seed0" / "round_001" / "eval" / "test.json")
    two = records.read_json(tmp_path / "copy" / "b2diffurl_seed0" / "round_001" / "eval" / "test.json")
    for key in ("clipscore_mean", "inception_score", "inception_score_per_prompt"):
        assert two[key] == pytest.approx(one[key], abs=1e-5), key
    assert two["reward_queries"] == one["reward_queries"] and two["per_prompt"].keys() == one["per_prompt"].keys()

    figures = tmp_path / "figures"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "b2diffurl.figures",
            str(tmp_path / "b2diffurl_seed0"),
            str(tmp_path / "ddpo_seed0"),
            "--out",
            str(figures),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("curve_train.png", "curve_test.png", "curve_train_reward.png", "bars_train.png"):
        assert Image.open(figures / name).size[0] > 100
    sections = {part.split("\n", 1)[0]: part for part in (figures / "tables.md").read_text().split("\n## ")[1:]}
    table1, table2, table3 = (
        next(text for title, text in sections.items() if title.startswith(f"Table {n}:")) for n in (1, 2, 3)
    )
    for table in (table1, table2):
        assert (
            "training prompts" in table.split("\n", 1)[0]
            and "Drawn from the training prompts (eval/train.json)" in table
        )
    assert (
        "held-out prompts" in table3.split("\n", 1)[0] and "Drawn from the held-out prompts (eval/test.json)" in table3
    )
    # at the default budget (25,600 queries) each run's last round stands: round_001, with its queries in the cell
    for name, label in (("b2diffurl_seed0", "b2diffurl"), ("ddpo_seed0", "ddpo")):
        last = {s: records.read_json(tmp_path / name / "round_001" / "eval" / f"{s}.json") for s in ("train", "test")}
        queries = f"({2 * per_round[name]} q)"
        assert f"| {label} | {last['train']['inception_score_per_prompt']:.4f} ± " in table1 and queries in table1
        assert (
            f"| {label} | {last['test']['clipscore_mean']:.4f} ± {last['test']['clipscore_sem']:.4f} {queries} |"
            in table3
        )
    assert "| tiny random model (base) |" in table1 and "| tiny random model (base) |" in table3
