"""What an evaluation covers and when it is redone, on run folders built by hand: ``--rounds``
(parse_rounds), the cache check (is_current), the run settings an evaluation reports (run_of) and the
reward queries. No model runs."""

import os

import pytest

from b2diffurl import layout, records
from b2diffurl.errors import ConfigError
from b2diffurl.evaluate import is_current, lora_sha256, parse_rounds, reward_queries, run_of

TRAIN_CONFIG = {
    "seed": 45,  # run seed 42 + round 3
    "split_time": 2,
    "train": {"algorithm": "ppo", "learning_rate": 3e-4, "gradient_accumulation_steps": 4},
}
RUN = {
    "algorithm": "ppo",
    "learning_rate": 3e-4,
    "seed": 42,
    "split_time": 2,
    "gradient_accumulation_steps": 4,
}


def finish(round_dir, stage, summary, files=None):
    """Write ``stage``'s marker in ``round_dir`` as a finished stage does (outputs already in place)."""
    os.makedirs(layout.stage_tmp_dir(str(round_dir), stage), exist_ok=True)
    return records.finish_stage(str(round_dir), stage, summary=summary, files=files)


def trained_run(tmp_path, names, unfinished=()):
    """A run folder whose rounds ``names`` finished training and whose ``unfinished`` ones only sampled."""
    exp_dir = tmp_path / "run"
    for name in [*names, *unfinished]:
        finish(exp_dir / name, "sample", {"split_time": 2})
        finish(exp_dir / name, "select", {"trajectories": 96})
    for name in names:
        finish(exp_dir / name, "train", {"config": TRAIN_CONFIG})
    return str(exp_dir)


def test_rounds_by_keyword_number_and_name(tmp_path):
    exp_dir = trained_run(tmp_path, ["round_000", "round_001", "round_002"])
    assert parse_rounds("base", exp_dir, "round_000") == [("base", -1)]
    assert parse_rounds("all", exp_dir, "round_000") == [("round_000", 0), ("round_001", 1), ("round_002", 2)]
    assert parse_rounds("last", exp_dir, "round_000") == [("round_002", 2)]
    assert parse_rounds(" base , 2,0 ", exp_dir, "round_000") == [("base", -1), ("round_002", 2), ("round_000", 0)]
    assert parse_rounds("round_001,1,round_1", exp_dir, "round_000") == [("round_001", 1)], "repeats once"
    assert parse_rounds("last,all", exp_dir, "round_000") == [
        ("round_002", 2),
        ("round_000", 0),
        ("round_001", 1),
    ], "in the order asked for, first mention kept"


def test_round_names_follow_the_runs_prefix_and_width(tmp_path):
    """The official code's stage3 folders: prefix and width come from run_name, other folders are ignored."""
    exp_dir = trained_run(tmp_path, ["stage0", "stage1", "stage10", "round_000"])
    assert parse_rounds("all", exp_dir, "stage3") == [("stage0", 0), ("stage1", 1), ("stage10", 10)]
    assert parse_rounds("stage1,10", exp_dir, "stage3") == [("stage1", 1), ("stage10", 10)]
    assert parse_rounds("last", exp_dir, "stage3") == [("stage10", 10)], "rounds in number order, not name order"


@pytest.mark.parametrize(
    "spec, text",
    [
        ("first", "has 'first': use base, all, last, round numbers (3) or names (round_003)"),
        ("base,round_x", "has 'round_x': use base, all, last, round numbers (3) or names (round_003)"),
        ("-1", "has '-1': use base, all, last, round numbers (3) or names (round_003)"),
        (" , ", "names no policy: use base, all, last or round numbers"),
        ("", "names no policy: use base, all, last or round numbers"),
    ],
)
def test_bad_parts_name_the_field_and_the_fix(tmp_path, spec, text):
    exp_dir = trained_run(tmp_path, ["round_000"])
    with pytest.raises(ConfigError) as err:
        parse_rounds(spec, exp_dir, "round_000")
    assert (err.value.field, err.value.value, err.value.text) == ("rounds", spec, text)


def test_unfinished_rounds_cannot_be_evaluated(tmp_path):
    exp_dir = trained_run(tmp_path, ["round_000"], unfinished=["round_001"])
    assert parse_rounds("all", exp_dir, "round_000") == [("round_000", 0)]
    assert parse_rounds("last", exp_dir, "round_000") == [("round_000", 0)], "a round that only sampled is not last"
    for spec in ("1", "round_001", "7"):
        with pytest.raises(ConfigError) as err:
            parse_rounds(spec, exp_dir, "round_000")
        r = int(spec.removeprefix("round_"))
        assert err.value.text == f"asks for round {r}, which has not finished training in {exp_dir} (no train.done)"


@pytest.mark.parametrize("folder", ["empty", "missing"])
def test_all_and_last_need_a_trained_round(tmp_path, folder):
    exp_dir = str(tmp_path / folder)
    if folder == "empty":
        os.makedirs(os.path.join(exp_dir, "round_000"))  # a folder, nothing finished
    assert parse_rounds("base", exp_dir, "round_000") == [("base", -1)]
    for spec in ("all", "base,last"):
        with pytest.raises(ConfigError) as err:
            parse_rounds(spec, exp_dir, "round_000")
        assert err.value.text == (
            f"names trained rounds but {exp_dir} has none: train a round first, or evaluate --rounds base"
        )


def test_a_run_name_without_a_round_number_is_refused(tmp_path):
    with pytest.raises(ValueError, match="must end with the round number"):
        parse_rounds("base", str(tmp_path), "final")


def test_reward_queries_add_up_the_select_markers(tmp_path):
    exp_dir = trained_run(tmp_path, ["stage0", "stage1", "stage2"])
    assert [reward_queries(exp_dir, name, r) for name, r in parse_rounds("base,all", exp_dir, "stage0")] == [
        0,
        96,
        192,
        288,
    ]


def write_eval(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    records.write_json(path, obj)


def test_an_evaluation_is_current_only_for_its_lora_and_settings(tmp_path):
    path = layout.eval_json(str(tmp_path), "round_000", "test")
    wanted = {"format_version": 2, "prompts": ["a red circle"], "evaluate": {"num_images": 8}}
    assert not is_current(path, "abc", wanted), "missing file"
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        f.write('{"lora_sha256": "abc", "settings": ')  # an evaluation cut off while written
    assert not is_current(path, "abc", wanted), "broken JSON"
    write_eval(path, {"lora_sha256": "abc", "settings": wanted, "clipscore_mean": 0.3})
    assert is_current(path, "abc", wanted)
    assert not is_current(path, "def", wanted), "another LoRA"
    assert not is_current(path, "abc", {**wanted, "evaluate": {"num_images": 16}}), "other settings"
    write_eval(path, {"settings": wanted})
    assert not is_current(path, "", wanted), "no LoRA recorded is not the base model's empty one"
    write_eval(path, {"lora_sha256": "", "settings": wanted})
    assert is_current(path, "", wanted), "the base model"


def test_the_lora_is_read_verified_against_train_done(tmp_path):
    exp_dir = tmp_path / "run"
    data = b"lora weights"
    relpath = f"lora/{records.LORA_WEIGHTS_NAME}"
    tmp = layout.stage_tmp_dir(str(exp_dir / "round_000"), "train")
    os.makedirs(os.path.join(tmp, "lora"))
    records.write_bytes(os.path.join(tmp, relpath), data)
    records.finish_stage(str(exp_dir / "round_000"), "train", summary={}, files={relpath: records.sha256(data)})
    assert lora_sha256(str(exp_dir), "round_000") == records.sha256(data)
    assert lora_sha256(str(exp_dir), "base") == ""
    records.write_bytes(str(exp_dir / "round_000" / relpath), b"changed")
    with pytest.raises(records.RecordError, match="does not match its checksum"):
        lora_sha256(str(exp_dir), "round_000")


def test_run_of_a_trained_round_reads_its_train_done(tmp_path):
    exp_dir = trained_run(tmp_path, ["round_003"])
    assert run_of(exp_dir, "round_003", 3) == RUN, "the run's seed: the round's seed less the round"


def test_run_of_the_base_model_reads_settings_json(tmp_path):
    exp_dir = str(tmp_path)
    flat = {
        "seed": 42,
        "split_time": 2,
        "train.algorithm": "ppo",
        "train.learning_rate": 3e-4,
        "train.gradient_accumulation_steps": 4,
        "sample.num_steps": 20,
    }
    records.write_json(layout.settings_path(exp_dir), {"config": flat})
    assert run_of(exp_dir, "base", -1) == RUN


def test_run_of_a_folder_that_recorded_nothing_is_empty(tmp_path):
    exp_dir = str(tmp_path)
    assert run_of(exp_dir, "base", -1) == {}, "no settings.json"
    finish(tmp_path / "round_000", "train", {})
    assert run_of(exp_dir, "round_000", 0) == {}, "a train.done without its config"


def test_importing_the_package_defines_no_flags():
    """Only ``python -m b2diffurl.evaluate`` defines --config and --rounds: a test or a tool that imports
    the evaluation's functions leaves absl's flags alone."""
    import subprocess
    import sys

    code = (
        "from absl import flags\n"
        "import b2diffurl.evaluate\n"
        "from b2diffurl.evaluate import Judge, sample_images\n"
        "print(sorted(n for n in ('config', 'rounds') if n in flags.FLAGS))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
