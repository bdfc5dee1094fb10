"""run_process.sh end to end on the tiny preset: learning, resuming, several processes."""

import glob
import hashlib
import json
import os
import time

import pytest
from conftest import REPO, reward_gain, run_driver, run_stage

from b2diffurl import records


def drive(save_path, **variables):
    return run_driver(save_path, **variables).stdout


def snapshot(folder):
    """{path: (mtime, sha256)} of every file under folder."""
    out = {}
    for path in glob.glob(os.path.join(folder, "**", "*"), recursive=True):
        if os.path.isfile(path) and os.path.basename(path) != ".run.lock":  # who ran last: not a result
            out[path] = (os.path.getmtime(path), hashlib.sha256(open(path, "rb").read()).hexdigest())
    return out


@pytest.mark.slow
def test_the_loop_learns_resumes_and_reruns_for_free(tmp_path):
    """Six rounds on one prompt with the colour reward: the reward on fixed evaluation seeds rises
    above the base model's by more than 5 standard errors (and by at least 0.01). A round's stages
    run in one process (OneProcess=1, the same files as the three scripts: tests/test_faults.py), which
    spares 12 process start-ups; the three scripts run in the README's, the faults' and the machines'
    tests."""
    prompt_file = tmp_path / "red.json"
    prompt_file.write_text(json.dumps(["red apple"]))
    rounds = 6
    # EvalImages/EvalSets (no evaluations here: EvalInterval is 0) reach every stage's recorded config
    run = dict(
        PromptFile=prompt_file,
        StageCnt=rounds,
        BatchCnt=4,
        ExpName="learn",
        Seed=11,
        SaveInterval=1,
        OneProcess=1,
        EvalImages=96,
        EvalSets="test",
    )
    out = drive(tmp_path, **run)
    exp = tmp_path / "learn"
    summary_lines = [line for line in out.splitlines() if line.startswith("round_")]
    assert len(summary_lines) == rounds and all(" | reward " in line for line in summary_lines)
    table = (exp / "progress.csv").read_text().splitlines()
    assert table[0].startswith("round,run_name,k,") and len(table) == rounds + 1
    assert [row.split(",")[2] for row in table[1:]] == ["2", "2", "3", "3", "4", "4"]  # BPT k_r
    # SaveInterval=1 keeps every round's interval latents (the default, 0, keeps none: test_toymodel)
    assert records.read_json(exp / "round_000" / "samples" / "manifest.json")["seed"] == 11
    assert records.read_json(exp / "round_003" / "samples" / "manifest.json")["seed"] == 14
    assert (exp / "round_005" / "selected.safetensors").is_file()
    for stage in records.STAGES:
        evaluate = records.read_marker(exp / "round_002", stage)["config"]["evaluate"]
        assert (evaluate["num_images"], evaluate["prompt_sets"]) == (96, "test"), stage

    # It learns: base policy vs the last round's LoRA on the same evaluation seeds and prompt.
    gain, standard_error = reward_gain(exp / f"round_{rounds - 1:03d}" / "lora", ["red apple"])
    assert gain > 0.01 and gain > 5 * standard_error

    # A rerun right after finishes at once and changes no file.
    before = snapshot(exp)
    started = time.time()
    again = drive(tmp_path, **run)
    redone = [
        line for line in again.splitlines() if line.startswith(("||=========== round", "sample ", "select ", "train "))
    ]
    assert time.time() - started < 15 and not redone, redone
    assert snapshot(exp) == before

    # A stop during the last round's training: the rerun redoes only that stage, identically.
    last = exp / f"round_{rounds - 1:03d}"
    lora_before = hashlib.sha256((last / "lora" / "pytorch_lora_weights.safetensors").read_bytes()).hexdigest()
    for name in ("train.done", "metrics.json"):
        os.remove(last / name)
    import shutil

    shutil.rmtree(last / "lora")
    resumed = drive(tmp_path, **run)
    assert "sample round_" not in resumed and "select round_" not in resumed and "train round_005" in resumed
    after = snapshot(exp)
    assert {p: v for p, v in after.items() if "round_005" not in p and "progress.csv" not in p} == {
        p: v for p, v in before.items() if "round_005" not in p and "progress.csv" not in p
    }
    assert hashlib.sha256((last / "lora" / "pytorch_lora_weights.safetensors").read_bytes()).hexdigest() == lora_before


def test_stages_refuse_to_run_out_of_order(tiny_dir, tmp_path):
    flags = (
        "--config",
        "config/stage_process.py:tiny",
        "--config.pretrained.model",
        tiny_dir,
        "--config.save_path",
        str(tmp_path),
    )
    for script, missing in (("run_select.py", "sample.done"), ("run_train.py", "select.done")):
        proc = run_stage(script, *flags, check=False)
        assert proc.returncode == 2
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and missing in errors[0] and "run_" in errors[0], proc.stderr[-2000:]


def test_driver_defaults_come_from_the_config(tmp_path):
    from b2diffurl.driver.prepare import prepare
    from b2diffurl.variables import DRIVER_VARIABLES
    from config.stage_process import get_config

    values = prepare(
        {
            "CONFIG": "config/stage_process.py:tiny,ddpo",
            "SavePath": str(tmp_path),
            "B2DIFFURL_CALLER_DIR": str(tmp_path),
        }
    )
    config = get_config("tiny,ddpo")
    assert set(DRIVER_VARIABLES) <= set(values)
    assert values["SplitStepLeft"] == values["SplitStepRight"] == config.sample.num_steps == 4
    assert values["AccStep"] == 128 and values["SplitTime"] == 1
    assert values["PosThreshold"] == config.eval.pos_threshold == float("-inf")
    assert values["Ks"] == [4] * config.process.stage_cnt
    # the config's relative defaults are the repository's files; the user's paths are the caller's
    assert values["PromptFile"] == os.path.join(REPO, "prompts", "template2_train.json")
    assert values["SavePath"] == str(tmp_path) and values["ExpDir"] == str(tmp_path / "tiny")
    assert values["CONFIG"] == os.path.join(REPO, "config", "stage_process.py") + ":tiny,ddpo"
    assert not os.listdir(tmp_path), "checking writes nothing"
