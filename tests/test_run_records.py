"""A run tells the truth (issue 16): its settings recorded and compared on a rerun, misspelt and bad
variables caught all at once, one driver per run folder, and its outcome printed at the end."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from conftest import REFERENCE_RUN, REPO, error_lines, run_driver, run_state

from b2diffurl.records import STAGES


def _copy_run(reference_run, tmp_path):
    save_path = tmp_path / "runs"
    shutil.copytree(reference_run[1], save_path / REFERENCE_RUN["ExpName"])
    return save_path, save_path / REFERENCE_RUN["ExpName"]


@pytest.mark.slow
def test_settings_are_recorded_and_a_changed_one_stops_the_rerun(reference_run, tmp_path):
    save_path, exp = _copy_run(reference_run, tmp_path)
    settings = json.loads((exp / "settings.json").read_text())
    # the effective config (preset and variables applied), the variables, versions and commit
    assert settings["config"]["train.learning_rate"] == 3e-3 and settings["config"]["process.stage_cnt"] == 2
    assert settings["config"]["seed"] == REFERENCE_RUN["Seed"] and "save_path" not in settings["config"]
    assert settings["variables"]["LR"] == 3e-3 and settings["variables"]["StageCnt"] == 2
    assert settings["versions"]["torch"] and settings["versions"]["python"].startswith("3.")
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", settings["commit"]) and settings["changes"] == []
    assert settings["model"] == {"pipeline": "StableDiffusionPipeline", "backbone": "sd", "prediction_type": "epsilon"}
    for stage in ("sample", "select", "train"):  # and each stage's own settings in its marker
        marker = json.loads((exp / "round_001" / f"{stage}.done").read_text())
        assert marker["config"]["seed"] == REFERENCE_RUN["Seed"] + 1 and marker["config"]["split_step"] == 3
        assert (
            marker["config"]["resume_from"] == os.path.join("round_000", "lora") and "save_path" not in marker["config"]
        )

    before = run_state(exp)
    started = time.time()
    proc = run_driver(save_path, check=False, **{**REFERENCE_RUN, "LR": "2e-3"})
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and time.time() - started < 30 and "Traceback" not in proc.stderr
    assert lines[0] == (
        "error: LR 0.003 -> 0.002: the finished stages of this run "
        "(round_001/sample, round_001/select, round_001/train) used 0.003"
    ), lines
    assert len(lines) == 2 and "AllowChanges=1" in lines[1]
    assert run_state(exp) == before, "nothing of the run changed"

    # free changes: no evaluation interval, one more round (the BPT schedule keeps the finished rounds' k)
    proc = run_driver(save_path, **{**REFERENCE_RUN, "StageCnt": 3})
    assert "round 2: k = 4" in proc.stdout and "all 3 rounds finished" in proc.stdout
    assert (exp / "round_002" / "train.done").is_file()
    assert {
        k: v
        for k, v in run_state(exp).items()
        if not k.startswith("round_002") and k not in ("progress.csv", "settings.json")
    } == {k: v for k, v in before.items() if k not in ("progress.csv", "settings.json")}
    assert json.loads((exp / "settings.json").read_text())["config"]["process.stage_cnt"] == 3

    # AllowChanges=1 goes on and records what changed from which round
    proc = run_driver(save_path, **{**REFERENCE_RUN, "StageCnt": 3, "LR": "2e-3", "AllowChanges": 1})
    assert "note: AllowChanges=1: LR 0.003 -> 0.002 from round 3 on" in proc.stderr
    changes = json.loads((exp / "settings.json").read_text())["changes"]
    assert changes == [{"from_round": 3, "fields": {"LR": [0.003, 0.002]}}]


def _start_driver(save_path, **variables):
    env = {k: v for k, v in os.environ.items() if k != "B2DIFFURL_FAULT"}
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHON": sys.executable,
            "CONFIG": "config/stage_process.py:tiny",
            "SavePath": str(save_path),
            **{k: str(v) for k, v in variables.items()},
        }
    )
    return subprocess.Popen(
        ["bash", os.path.join(REPO, "run_process.sh")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_two_drivers_on_one_run_folder(reference_run, tmp_path):
    drivers = [_start_driver(tmp_path, **REFERENCE_RUN) for _ in range(2)]
    started = time.time()
    ended = {}
    while len(ended) < 2:
        for i, proc in enumerate(drivers):
            if i not in ended and proc.poll() is not None:
                ended[i] = (time.time() - started, proc.returncode, *proc.communicate())
        time.sleep(0.2)
        assert time.time() - started < 1200
    (winner,) = [i for i, e in ended.items() if e[1] == 0]
    loser = ended[1 - winner]
    lines = error_lines(loser[3])
    assert loser[1] == 2 and len(lines) == 1 and "Traceback" not in loser[3], loser[3][-2000:]
    assert lines[0].startswith(f"error: {tmp_path / 'ref'} is in use by pid ") and "(driver, since" in lines[0]
    assert loser[0] < 30 and loser[0] < ended[winner][0] / 2, "the second driver stops at once"
    assert run_state(tmp_path / "ref") == run_state(reference_run[1]), "the finished folder is the uninterrupted run"


def test_a_stage_started_by_hand_on_a_locked_folder_stops(tmp_path):
    """The lock is held for the holder's life, named in the message, and dropped when it dies."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from b2diffurl import runlock; "
            f"runlock.acquire({str(tmp_path)!r}, command='driver'); print('held', flush=True); time.sleep(60)",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        from b2diffurl import runlock

        with pytest.raises(runlock.RunFolderBusy, match=r"is in use by pid \d+ on .*\(driver, since "):
            runlock.acquire_for_stage(str(tmp_path))
    finally:
        holder.kill()
        holder.wait()
    assert runlock.acquire_for_stage(str(tmp_path)) is True  # a killed holder leaves it free
    assert runlock.acquire_for_stage(str(tmp_path / "new")) is False and not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    "name,meant", [("Lr", "LR"), ("Stagecnt", "StageCnt"), ("SAVEPATH", "SavePath"), ("SplitTme", "SplitTime")]
)
def test_a_misspelt_variable_stops_before_round_0(name, meant, tmp_path):
    proc = run_driver(tmp_path, check=False, **{name: "1e-3"})
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and lines == [
        f"error: {name}=1e-3 is not a variable of run_process.sh: did you mean {meant}? "
        "(names are case-sensitive; unset it)"
    ]
    assert not os.listdir(tmp_path)


def test_every_bad_value_is_reported_at_once(tmp_path):
    proc = run_driver(tmp_path, check=False, StageCnt="two", SplitTime="0", LR="fast")
    assert proc.returncode == 2 and error_lines(proc.stderr) == [
        "error: StageCnt=two must be an integer",
        "error: LR=fast must be a number",
        "error: SplitTime=0 must be >= 1 branches (1 = no branching)",
    ]


@pytest.mark.slow
def test_the_header_states_what_the_rounds_ran_with(tmp_path):
    """The run's first line claims where it runs, how long, and the hyperparameters that decide what it
    learns. With each of them set away from its default, every figure it states is what the finished
    rounds' markers record that their stages ran with (round r with seed Seed + r)."""
    variables = {
        "ExpName": "header",
        "StageCnt": 2,
        "BatchCnt": 1,
        "SplitTime": 2,
        "Algorithm": "dpok",
        "LR": "2e-3",
        "AccStep": 3,
        "TrainEpoch": 1,
        "PosThreshold": 0.4,
        "NegThreshold": -0.3,
        "Seed": 300,
        "EvalInterval": 0,
        "OneProcess": 1,
    }
    header = run_driver(tmp_path, **variables).stdout.splitlines()[0]

    def stated(pattern):
        match = re.search(pattern, header)
        assert match, (pattern, header)
        return match.group(1) if len(match.groups()) == 1 else match.groups()

    exp = tmp_path / "header"
    rounds = sorted(path.name for path in exp.iterdir() if path.name.startswith("round_"))
    ran = {  # round -> stage -> the config that stage ran with
        name: {stage: json.loads((exp / name / f"{stage}.done").read_text())["config"] for stage in STAGES}
        for name in rounds
    }
    assert stated(r"^experiment (.+?): ") == str(exp)
    assert int(stated(r"(\d+) rounds,")) == len(rounds) == 2
    k_first, k_last = (ran[name]["sample"]["split_step"] for name in (rounds[0], rounds[-1]))
    assert stated(r"\bk (\d+)\.\.(\d+) ") == (str(k_first), str(k_last))
    assert stated(r"evaluation (\w+) \|") == "off" and not any((exp / name / "eval").exists() for name in rounds)
    for r, name in enumerate(rounds):
        for stage, config in ran[name].items():
            where = (name, stage)
            assert config["seed"] == int(stated(r"Seed (\d+)")) + r, where
            assert config["split_time"] == int(stated(r"(\d+) branches")), where
            assert config["sample"]["num_batches_per_epoch"] == int(stated(r"(\d+) prompt batch")), where
            assert config["train"]["algorithm"] == stated(r"Algorithm (\w+),"), where
            assert config["train"]["learning_rate"] == float(stated(r"LR ([^,]+),")), where
            assert config["train"]["gradient_accumulation_steps"] == int(stated(r"AccStep (\d+),")), where
            assert config["train"]["num_epochs"] == int(stated(r"TrainEpoch (\d+),")), where
            assert config["eval"]["pos_threshold"] == float(stated(r"PosThreshold ([^,]+),")), where
            assert config["eval"]["neg_threshold"] == float(stated(r"NegThreshold ([^,]+),")), where
            assert config["mixed_precision"] == stated(r"MixedPrecision (\w+),"), where
    # and the figures are the variables given, not the preset's defaults
    train = ran[rounds[0]]["train"]["train"]  # round 0's train stage: its config's train fields
    assert (train["algorithm"], train["learning_rate"], train["gradient_accumulation_steps"]) == ("dpok", 2e-3, 3)


def test_outcome_reports_base_best_last_with_paired_se(tmp_path):
    """The end-of-run block from crafted evaluations: best is the highest, the paired SE is over prompts."""
    from b2diffurl import records
    from b2diffurl.outcome import paired_difference, report

    exp = tmp_path / "run"
    values = {"base": [0.5, 0.6, 0.7], "round_000": [0.7, 0.8, 0.8], "round_001": [0.6, 0.7, 0.9]}
    for name, per in values.items():
        (exp / name / "eval").mkdir(parents=True)
        mean = sum(per) / 3
        records.write_json(
            exp / name / "eval" / "test.json",
            {
                "num_prompts": 3,
                "num_images": 6,
                "alignment_mean": mean,
                "alignment_sem": 0.01,
                "clipscore_mean": 0.2,
                "clipscore_sem": 0.01,
                "inception_score_per_prompt": 1.5,
                "background_entropy": 2.0,
                "reward_queries": {"base": 0, "round_000": 96, "round_001": 192}[name],
                "per_prompt": {f"p{i}": {"alignment": v, "clipscore": 0.2} for i, v in enumerate(per)},
                "aligned": {
                    "base": [0, 1, 0, 1, 1, 0],
                    "round_000": [1, 1, 0, 1, 1, 0],
                    "round_001": [1, 1, 0, 1, 1, 1],
                }[name],
            },
        )
    diff = paired_difference(
        json.loads((exp / "round_001/eval/test.json").read_text()),
        json.loads((exp / "base/eval/test.json").read_text()),
        "alignment",
    )
    assert diff[0] == pytest.approx(0.4 / 3) and diff[1] == pytest.approx(
        (((0.1 - 0.4 / 3) ** 2 * 2 + (0.2 - 0.4 / 3) ** 2) / 2 / 3) ** 0.5
    )
    # round folders count as trained only with their three markers
    for name in ("round_000", "round_001"):
        for stage, summary in (
            ("sample", {"split_step": 2, "split_time": 3, "seconds": 1}),
            ("select", {"trajectories": 96, "reward_mean": 0.5, "reward_std": 0.1, "selected": 10, "seconds": 1}),
            (
                "train",
                {"loss": 0.0, "approx_kl": 0.0, "clipfrac": 0.0, "grad_norm": 0.0, "optimizer_steps": 1, "seconds": 1},
            ),
        ):
            records.write_json(exp / name / f"{stage}.done", {**summary, "files": {}})
    text = report(str(exp), str(exp / "figures"))
    assert "2 rounds trained, 192 reward queries" in text
    assert (
        "  base             alignment 60.0% ± 1.0% | IS per prompt 1.500, background entropy 2.00 bits "
        "| 0 reward queries" in text
    )
    assert "  best round_000   alignment 76.7% ± 1.0%" in text and "  last round_001   alignment 73.3% ± 1.0%" in text
    assert "  last - base      +13.3 points ± 3.3 (paired over 3 prompts = +4.0 SE)" in text
    # image by image (same seeds): differences 1, 0, 0, 0, 0, 1 -> mean 1/3, SE sqrt((12 / 9) / 5 / 6)
    assert "\n                   +33.3 points ± 21.1 (paired over 6 images, same seeds = +1.6 SE)\n" in text
    assert f"figures and tables: {exp / 'figures'}" in text
