"""Every config error is one clear line naming the field, the value and the fix, before heavy work."""

import json
import os

import pytest
from conftest import run_stage

from b2diffurl.checks import ConfigError, check_config, check_device, check_resume, check_stage
from b2diffurl.errors import RecordError
from config.stage_process import get_config


def check_common(config, num_processes=1):
    check_config(config, num_processes)[0].raise_first()


def _expect(config, *fragments, num_processes=1):
    problems = check_config(config, num_processes)[0].problems
    assert problems, "the config must be refused"
    message = str(problems[0])
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_the_tiny_preset_is_valid(tiny_config):
    check_common(tiny_config)


@pytest.mark.parametrize("value", [0, 5, -1])
def test_split_step_outside_range(tiny_config, value):
    tiny_config.split_step = value
    _expect(tiny_config, f"split_step={value}", "1..4")


def test_split_time_below_one(tiny_config):
    tiny_config.split_time = 0
    _expect(tiny_config, "split_time=0", ">= 1")


def test_missing_prompt_file(tiny_config, tmp_path):
    tiny_config.prompt_file = str(tmp_path / "nope.json")
    _expect(tiny_config, "prompt_file=", "nope.json", "does not exist")


def test_empty_prompt_file(tiny_config, tmp_path):
    path = tmp_path / "empty.json"
    path.write_text("[]")
    tiny_config.prompt_file = str(path)
    _expect(tiny_config, "empty list")


def test_prompt_file_that_is_not_a_list_of_strings(tiny_config, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"a": 1}))
    tiny_config.prompt_file = str(path)
    _expect(tiny_config, "JSON list of non-empty strings")


def test_a_single_prompt_needs_no_file(tiny_config):
    tiny_config.prompt, tiny_config.prompt_file = "red apple", ""
    check_common(tiny_config)


def test_batches_that_do_not_divide_over_processes(tiny_config):
    tiny_config.sample.num_batches_per_epoch = 3
    _expect(tiny_config, "sample.num_batches_per_epoch=3", "2 processes", "multiple of 2", num_processes=2)


def test_missing_model_path(tiny_config):
    tiny_config.pretrained.model = "./no/such/model"
    _expect(tiny_config, "pretrained.model='./no/such/model'", "neither an existing folder nor a hub id")


def test_hub_id_is_accepted_without_touching_the_network(tiny_config):
    tiny_config.pretrained.model = "CompVis/stable-diffusion-v1-4"
    check_common(tiny_config)


def test_resume_from_without_lora(tiny_config, tmp_path):
    tiny_config.resume_from = str(tmp_path)
    with pytest.raises(RecordError, match="pytorch_lora_weights.safetensors is missing"):
        check_resume(tiny_config)


@pytest.mark.parametrize(
    "field,value,fragment",
    [
        ("sample.eta", 0.0, "sample.eta=0.0"),
        ("sample.eta", 1.5, "sample.eta=1.5"),
        ("reward.name", "bertscor", "reward.name='bertscor'"),
        ("reward.batch_size", 0, "reward.batch_size=0"),
        ("sample.batch_size", 0, "sample.batch_size=0"),
        ("sample.guidance_scale", 0.5, "sample.guidance_scale=0.5"),
        ("mixed_precision", "fp8", "mixed_precision='fp8'"),
        ("prompt_random_choose", 2, "prompt_random_choose=2"),
        ("run_name", "a/b", "run_name='a/b'"),
        ("seed", -1, "seed=-1"),
    ],
)
def test_other_fields(tiny_config, field, value, fragment):
    group, _, name = field.rpartition(".")
    (tiny_config[group] if group else tiny_config)[name] = value
    _expect(tiny_config, fragment)


def test_fp16_without_gpu():
    config = get_config()
    with pytest.raises(ConfigError, match="mixed_precision='fp16' needs a GPU"):
        check_device(config, "cpu")
    check_device(config, "cuda")


def test_presets():
    base, ddpo, bpt = get_config(), get_config("ddpo"), get_config("bpt_only")
    assert (base.split_step, base.split_time, base.sample.num_steps) == (14, 3, 20)
    assert (base.eval.pos_threshold, base.eval.neg_threshold, base.eval.history_cnt) == (0.5, -0.5, 8)
    assert (ddpo.split_step, ddpo.split_time, ddpo.train.gradient_accumulation_steps) == (20, 1, 128)
    assert bpt.split_time == 1 and bpt.split_step == 14
    tiny_ddpo = get_config("tiny,ddpo")
    assert tiny_ddpo.split_step == tiny_ddpo.sample.num_steps == 4
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        get_config("nope")


def test_cli_prints_one_line_and_writes_nothing(tiny_config, tmp_path):
    proc = run_stage(
        "run_sample.py",
        "--config",
        "config/stage_process.py:tiny",
        "--config.split_step",
        "9",
        "--config.save_path",
        str(tmp_path / "out"),
        "--config.pretrained.model",
        tiny_config.pretrained.model,
        check=False,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: split_step=9 is outside 1..4 (sample.num_steps): pick the interval length k in that range"
    ]
    assert not os.path.exists(tmp_path / "out")


def test_colour_reward_needs_colour_prompts(tiny_config):
    tiny_config.prompt_file = tiny_config.prompt_file.replace("template2_train", "template1_train")
    _expect(tiny_config, "reward.name='colour' cannot score prompt 'a cat washing dishes'", "clipscore")


def test_missing_clip_files(tiny_config, tmp_path):
    tiny_config.reward.name = "clipscore"
    check_common(tiny_config)
    tiny_config.reward.clip_pretrained = str(tmp_path / "missing.safetensors")
    _expect(tiny_config, "reward.clip_pretrained=", "missing.safetensors", "does not exist")
    tiny_config.reward.clip_model = str(tmp_path / "missing.json")
    _expect(tiny_config, "reward.clip_model=", "missing.json")


def test_every_algorithm_the_checks_accept_builds_its_objective(tiny_config):
    """What the checks let through, the trainer can build: every algorithm with every DPO reference."""
    from b2diffurl.choices import ALGORITHMS, DPO_REFERENCES
    from b2diffurl.objectives import make_objective

    tiny_config.split_time = 2  # (DPO compares branches)
    for algorithm in ALGORITHMS:
        for reference in DPO_REFERENCES:
            tiny_config.train.algorithm, tiny_config.train.dpo_reference = algorithm, reference
            check_common(tiny_config)
            assert make_objective(tiny_config.train).name == algorithm


def test_every_problem_is_reported_at_once(tiny_config):
    tiny_config.seed, tiny_config.train.learning_rate, tiny_config.sample.eta = -1, 0.0, 2.0
    problems = [str(p) for p in check_config(tiny_config)[0].problems]
    assert (
        len(problems) == 3 and problems[0].startswith("seed=-1") and "train.learning_rate=0.0 must be > 0" in problems
    )


def test_experiment_presets_combine():
    from config.stage_process import get_config

    official = get_config("official")
    assert (official.split_time, official.train.gradient_accumulation_steps, official.train.partial_step) == (
        5,
        64,
        "drop",
    )
    assert (official.eval.pos_threshold, official.eval.neg_threshold) == (0.5, -0.5)
    paper = get_config()
    assert (paper.split_time, paper.train.gradient_accumulation_steps, paper.train.partial_step) == (3, 32, "scale"), (
        "Table 6 stays the default"
    )
    assert paper.reward.precision == "fp32"
    vanilla = get_config("template3,ddpo,dpok")
    assert vanilla.prompt_file == "prompts/template3_train.json" and vanilla.train.algorithm == "dpok"
    assert vanilla.split_time == 1 and vanilla.split_step == vanilla.sample.num_steps
    for name in ("pg", "dpok", "dpo"):
        assert get_config(name).train.algorithm == name
    for n in (1, 2, 3):
        assert get_config(f"template{n}").prompt_file == f"prompts/template{n}_train.json"


def test_driver_reads_the_official_preset(tmp_path):
    from b2diffurl.driver.prepare import prepare

    values = prepare(
        {
            "CONFIG": "config/stage_process.py:tiny,official",
            "SavePath": str(tmp_path),
            "B2DIFFURL_CALLER_DIR": str(tmp_path),
        }
    )
    assert values["SplitTime"] == 5 and values["AccStep"] == 64 and values["PosThreshold"] == 0.5
    values = prepare(
        {
            "CONFIG": "config/stage_process.py:tiny",
            "SavePath": str(tmp_path),
            "EvalInterval": "2",
            "Algorithm": "dpo",
            "B2DIFFURL_CALLER_DIR": str(tmp_path),
        }
    )
    assert values["EvalInterval"] == 2 and values["Algorithm"] == "dpo"


def test_evaluation_prompt_sets_and_sizes_are_checked(tiny_config):
    """evaluate.prompt_sets names train and/or test; every prompt of each set gets at least 2 of the
    set's num_images (the per-prompt Inception Score); all of it before any model loads."""
    from b2diffurl.checks import Checker, check_evaluation

    checker, _ = check_config(tiny_config, eval_prompts=True)
    assert not checker.problems and sorted(checker.eval_prompts) == ["test", "train"]
    assert len(checker.eval_prompts["train"]) == len(checker.eval_prompts["test"]) == 40
    tiny_config.evaluate.prompt_sets = "train,heldout"
    _expect(tiny_config, "evaluate.prompt_sets='train,heldout' must name train and/or test")
    tiny_config.evaluate.prompt_sets = "test"
    tiny_config.evaluate.num_images = 79
    problems = [str(p) for p in check_config(tiny_config, eval_prompts=True)[0].problems]
    assert problems == [
        "evaluate.num_images=79 gives fewer than 2 images to some of the 40 test prompts (the per-prompt "
        "Inception Score needs 2): use at least 80"
    ]
    checker = Checker(tiny_config)
    assert check_evaluation(checker, with_prompts=False) is None and checker.problems == [], "sizes need the prompts"
    tiny_config.evaluate.prompt_sets, tiny_config.evaluate.num_images, tiny_config.evaluate.is_splits = (
        "train,test",
        60,
        100,
    )
    problems = [str(p) for p in check_config(tiny_config, eval_prompts=True)[0].problems]
    assert problems == [  # one line each, not one per prompt set
        "evaluate.is_splits=100 exceeds the 60 images of a prompt set: use at most 60",
        "evaluate.num_images=60 gives fewer than 2 images to some of the 40 train prompts "
        "(the per-prompt Inception Score needs 2): use at least 80",
    ]
    # a stage does not evaluate: the evaluation's sizes are the driver's and the evaluation's checks (a
    # stage started by hand may carry the preset's evaluate.num_images while the run's EvalImages is larger)
    tiny_config.evaluate.interval, tiny_config.evaluate.is_splits = 1, 1
    assert any("evaluate.num_images=60" in str(p) for p in check_config(tiny_config)[0].problems), (
        "the driver's check (interval > 0)"
    )
    check_stage(tiny_config, "sample")  # does not raise
    tiny_config.evaluate.num_images, tiny_config.evaluate.is_splits, tiny_config.prompt = 80, 1, "red apple"
    tiny_config.evaluate.interval = 1  # evaluations during the run: their prompt files are checked with the rest
    _expect(
        tiny_config,
        "evaluate.test_prompt_file='' is empty and prompt='red apple' is set (one prompt has no held-out list)",
        "evaluate.prompt_sets=train",
    )
