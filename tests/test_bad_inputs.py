"""Bad inputs as users make them: each stops with exit status 2 and one line naming the value (the
driver's variable when the user set one) before anything runs, and no file of the existing run changes."""

import json
import os
import shutil

import pytest
from conftest import REFERENCE_RUN, REPO, error_lines, run_driver, run_stage, run_state

LORA = "round_001/lora/pytorch_lora_weights.safetensors"
OPTIMIZER = "round_001/lora/optimizer.safetensors"


def _config_file(folder, body):
    """A user's config file: the tiny preset with ``body`` applied to ``config``."""
    path = folder / "my_config.py"
    path.write_text(
        "from config.stage_process import get_config as base\n\n\n"
        "def get_config(preset='tiny'):\n"
        "    config = base(preset)\n" + "".join(f"    {line}\n" for line in body.splitlines()) + "    return config\n"
    )
    return str(path)


def _json_file(folder, content, name="prompts.json"):
    path = folder / name
    path.write_text(content)
    return str(path)


# (variables, fragments of the one error line); {dir} is a scratch folder of the case.
DRIVER_CASES = [
    ({"CONFIG": "config/stage_process.py:nope"}, ["CONFIG=config/stage_process.py:nope", "unknown preset 'nope'"]),
    ({"CONFIG": "config/missing.py"}, ["CONFIG=config/missing.py", "does not exist"]),
    ({"CONFIG": "README.md"}, ["CONFIG=README.md", "not a Python config file"]),
    ({"CONFIG": "{dir}/broken_config.py"}, ["CONFIG={dir}/broken_config.py", "does not load", "NameError"]),
    ({"StageCnt": "abc"}, ["StageCnt=abc must be an integer"]),
    ({"Algorithm": "sac"}, ["Algorithm=sac is not known", "dpok"]),
    ({"EvalInterval": "-1"}, ["EvalInterval=-1 must be >= 0"]),
    (
        {"EvalInterval": "1", "PromptFile": "{dir}/mine.json"},
        ["evaluate.test_prompt_file=", "does not end in _train.json", "set evaluate.test_prompt_file"],
    ),
    ({"Algorithm": "dpo", "SplitTime": "1"}, ["SplitTime=1 gives DPO no pairs", "ddpo,dpo"]),
    ({"LogWith": "mlflow"}, ["LogWith=mlflow must be"]),
    ({"StageCnt": "0"}, ["StageCnt=0 must be >= 1"]),
    ({"StageCnt": "2.5"}, ["StageCnt=2.5 must be an integer"]),
    ({"Seed": "abc"}, ["Seed=abc must be an integer"]),
    ({"Seed": "-1"}, ["Seed=-1 must be >= 0"]),
    ({"NUM_PROCESSES": "abc"}, ["NUM_PROCESSES=abc must be an integer"]),
    ({"NUM_PROCESSES": "0"}, ["NUM_PROCESSES=0 must be >= 1"]),
    (
        {"NUM_MACHINES": "2", "MACHINE_RANK": "2", "MAIN_PROCESS_IP": "10.0.0.1", "NUM_PROCESSES": "2"},
        ["MACHINE_RANK=2 must be below NUM_MACHINES=2"],
    ),
    ({"NUM_MACHINES": "2", "NUM_PROCESSES": "2"}, ["MAIN_PROCESS_IP is not set", "address of machine rank 0"]),
    (
        {"NUM_MACHINES": "3", "MAIN_PROCESS_IP": "10.0.0.1", "NUM_PROCESSES": "2"},
        ["NUM_PROCESSES=2 must be a multiple of NUM_MACHINES=3", "total"],
    ),
    ({"NUM_MACHINES": "0"}, ["NUM_MACHINES=0 must be >= 1"]),
    ({"MAIN_PROCESS_PORT": "70000"}, ["MAIN_PROCESS_PORT=70000 must be a port, 1..65520", "15 ports above it"]),
    (
        {"SaveInterval": "-1"},
        ["SaveInterval=-1 must be >= 0 (0 keeps no round's interval latents, 1 keeps every round's)"],
    ),
    ({"SaveInterval": "x"}, ["SaveInterval=x must be an integer"]),
    ({"BatchCnt": "0"}, ["BatchCnt=0 must be >= 1"]),
    ({"BatchCnt": "3", "NUM_PROCESSES": "2"}, ["BatchCnt=3 does not divide over 2 processes", "multiple of 2"]),
    ({"SplitStepLeft": "0"}, ["SplitStepLeft=0 must be >= 1"]),
    ({"SplitStepLeft": "4", "SplitStepRight": "3"}, ["SplitStepLeft=4 is above SplitStepRight=3"]),
    ({"SplitStepRight": "9"}, ["SplitStepRight=9 exceeds NumStep=4", "1..4"]),
    ({"NumStep": "2"}, ["SplitStepRight=4 exceeds NumStep=2"]),
    ({"NumStep": "0"}, ["NumStep=0 must be >= 1"]),
    ({"NumStep": "four"}, ["NumStep=four must be an integer"]),
    ({"TrainEpoch": "0"}, ["TrainEpoch=0 must be >= 1"]),
    ({"AccStep": "0"}, ["AccStep=0 must be >= 1"]),
    ({"AccStep": "-2"}, ["AccStep=-2 must be >= 1"]),
    ({"LR": "0"}, ["LR=0 must be > 0"]),
    ({"LR": "-1e-4"}, ["LR=-1e-4 must be > 0"]),
    ({"LR": "nan"}, ["LR=nan must be a number"]),
    ({"LR": "inf"}, ["LR=inf must be finite"]),
    ({"LR": "fast"}, ["LR=fast must be a number"]),
    ({"Beta1": "nan"}, ["Beta1=nan must be a number"]),
    ({"Beta2": "-1"}, ["Beta2=-1 must be >= 0"]),
    ({"History_Cnt": "-1"}, ["History_Cnt=-1 must be >= 0"]),
    ({"PosThreshold": "abc"}, ["PosThreshold=abc must be a number"]),
    ({"NegThreshold": "nan"}, ["NegThreshold=nan must be a number"]),
    ({"SplitTime": "0"}, ["SplitTime=0 must be >= 1"]),
    ({"RandomPrompt": "2"}, ["RandomPrompt=2 must be 0 or 1"]),
    ({"ExpName": "a/b"}, ["ExpName=a/b must be a plain folder name"]),
    ({"ExpName": ".."}, ["ExpName=.. must be a plain folder name"]),
    ({"MixedPrecision": "fp8"}, ["MixedPrecision=fp8 must be one of no, fp16, bf16"]),
    ({"FreshOptimizer": "x"}, ["FreshOptimizer=x must be a round number"]),
    ({"SavePath": "/proc/b2diffurl-runs"}, ["SavePath=/proc/b2diffurl-runs is not writable"]),
    ({"SavePath": "{dir}/a_file/runs"}, ["SavePath={dir}/a_file/runs cannot hold the run", "is a file"]),
    ({"PromptFile": "{dir}/missing.json"}, ["PromptFile={dir}/missing.json does not exist"]),
    ({"PromptFile": "{dir}/not_json.json"}, ["PromptFile={dir}/not_json.json is not valid JSON"]),
    ({"PromptFile": "{dir}/empty.json"}, ["PromptFile={dir}/empty.json holds an empty list"]),
    (
        {"PromptFile": "{dir}/numbers.json"},
        ["PromptFile={dir}/numbers.json must hold a JSON list of non-empty strings"],
    ),
    (
        {"PromptFile": "prompts/template1_train.json"},
        ["reward.name='colour' cannot score prompt 'a cat washing dishes'", "set in CONFIG"],
    ),
    (
        {"CONFIG": "{dir}/hub_model.py"},
        ["pretrained.model='someone/not-cached-model' is not in the local Hugging Face cache", "HF_HUB_OFFLINE=1"],
    ),
    ({"CONFIG": "{dir}/clip_tag.py"}, ["reward.clip_pretrained='openai' is not in the local Hugging Face cache"]),
    ({"CONFIG": "{dir}/model_folder.py"}, ["pretrained.model=", "without model_index.json"]),
    (
        {"CONFIG": "{dir}/other_pipeline.py"},
        ["pretrained.model=", "is a KandinskyPipeline checkpoint", "not supported", "StableDiffusionXLPipeline"],
    ),
    (
        {"CONFIG": "{dir}/sdxl_one_encoder.py"},
        ["pretrained.model=", "StableDiffusionXLPipeline checkpoint without its text_encoder_2 and tokenizer_2"],
    ),
    ({"CONFIG": "{dir}/reward_name.py"}, ["reward.name='bertscor' is not a known reward", "'bertscore'"]),
    (
        {"CONFIG": "{dir}/reward_weight.py"},
        ["reward.name='colour+-0.5*clipscore' gives clipscore the weight -0.5: weights must be positive"],
    ),
    (
        {"CONFIG": "{dir}/bertscore_reference.py"},
        ["reward.caption_reference='The image contains' must contain {{prompt}}"],
    ),
    (
        {"CONFIG": "{dir}/bertscore_hub.py"},
        ["reward.captioner='someone/not-cached-llava' is not in the local Hugging Face cache", "HF_HUB_OFFLINE=1"],
    ),
    ({"CONFIG": "{dir}/bertscore_folder.py"}, ["reward.bertscore_model=", "is a folder without config.json"]),
    (
        {"CONFIG": "{dir}/eval_metric.py"},
        ["evaluate.metrics='bertscore,bleu' names 'bleu', which is no reward", "'bertscore'"],
    ),
    (
        {"CONFIG": "{dir}/eval_metric_hub.py"},
        ["reward.captioner='someone/not-cached-llava' is not in the local Hugging Face cache"],
    ),
    ({"CONFIG": "{dir}/eta.py"}, ["sample.eta=0.0 must be > 0", "set in CONFIG"]),
    (
        {"CONFIG": "{dir}/bf16_latents.py"},
        ["sample.latent_dtype='bf16' rounds a stored latent by up to 73%", "use fp16", "set in CONFIG"],
    ),
    ({"OneProcess": "2"}, ["OneProcess=2 is outside 0..1", "one process per stage"]),
    ({"EvalImages": "0"}, ["EvalImages=0 must be >= 1"]),
    ({"EvalSets": "train,val"}, ["EvalSets=train,val must name train and/or test"]),
    ({"AllowChanges": "2"}, ["AllowChanges=2 must be 0 or 1"]),
]


def _scratch(folder):
    """The files the cases above refer to."""
    _json_file(folder, "not json", "not_json.json")
    _json_file(folder, "[]", "empty.json")
    _json_file(folder, "[1, 2]", "numbers.json")
    _json_file(folder, '["red apple"]', "mine.json")
    (folder / "a_file").write_text("a file, not a folder")
    (folder / "broken_config.py").write_text("def get_config(preset=''):\n    return undefined_name\n")
    (folder / "empty_model").mkdir()
    (folder / "encoder").mkdir()
    parts = {part: ["diffusers", "X"] for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler")}
    for name, index in {
        "other_pipeline": {"_class_name": "KandinskyPipeline", **parts},
        "sdxl_one_encoder": {
            "_class_name": "StableDiffusionXLPipeline",
            **parts,
            "text_encoder_2": [None, None],
            "tokenizer_2": [None, None],
        },
    }.items():
        (folder / f"{name}_model").mkdir()
        (folder / f"{name}_model" / "model_index.json").write_text(json.dumps(index))
    (folder / "encoder" / "config.json").write_text("{}")
    tiny_model = "config.pretrained.build_tiny = False"
    encoder, empty_model = str(folder / "encoder"), str(folder / "empty_model")
    for name, lines in {
        "hub_model": ("config.pretrained.model = 'someone/not-cached-model'", tiny_model),
        "clip_tag": (
            "config.reward.name = 'clipscore'",
            "config.reward.clip_model = 'ViT-B-32'",
            "config.reward.clip_pretrained = 'openai'",
        ),
        "model_folder": (f"config.pretrained.model = {empty_model!r}", tiny_model),
        "reward_name": ("config.reward.name = 'bertscor'",),
        "reward_weight": ("config.reward.name = 'colour+-0.5*clipscore'",),
        "other_pipeline": (f"config.pretrained.model = {str(folder / 'other_pipeline_model')!r}", tiny_model),
        "sdxl_one_encoder": (f"config.pretrained.model = {str(folder / 'sdxl_one_encoder_model')!r}", tiny_model),
        "bertscore_reference": (
            "config.reward.name = 'bertscore'",
            "config.reward.build_tiny_text = True",
            "config.reward.caption_reference = 'The image contains'",
        ),
        "bertscore_hub": (
            "config.reward.name = 'bertscore'",
            "config.reward.build_tiny_text = False",
            "config.reward.captioner = 'someone/not-cached-llava'",
            f"config.reward.bertscore_model = {encoder!r}",
        ),
        "bertscore_folder": (
            "config.reward.name = 'bertscore'",
            "config.reward.build_tiny_text = False",
            f"config.reward.captioner = {encoder!r}",
            f"config.reward.bertscore_model = {empty_model!r}",
        ),
        "eval_metric": ("config.evaluate.metrics = 'bertscore,bleu'",),
        "eval_metric_hub": (
            "config.evaluate.metrics = 'bertscore'",
            "config.reward.build_tiny_text = False",
            "config.reward.captioner = 'someone/not-cached-llava'",
            f"config.reward.bertscore_model = {encoder!r}",
        ),
        "eta": ("config.sample.eta = 0.0",),
        "bf16_latents": ("config.sample.latent_dtype = 'bf16'",),
    }.items():
        body = "\n".join(lines)
        os.replace(_config_file(folder, body), folder / f"{name}.py")


@pytest.fixture(scope="module")
def existing_run(reference_run, tmp_path_factory):
    """A copy of the finished reference run that every bad input is aimed at."""
    save_path = tmp_path_factory.mktemp("existing")
    shutil.copytree(reference_run[1], save_path / REFERENCE_RUN["ExpName"])
    return save_path


def _files(folder):
    return sorted(os.path.relpath(os.path.join(d, n), folder) for d, _, names in os.walk(folder) for n in names)


# Every case is refused by ``python -m b2diffurl.driver prepare``, the first thing run_process.sh runs
# (its output and exit status pass through the script unchanged). Every THROUGH_THE_SCRIPT-th case
# runs the whole script; the others call the same prepare in this process, which spares a bash and a
# Python start-up per case (most of the cases' time).
THROUGH_THE_SCRIPT = 8


def prepare_in_process(save_path, config, variables, monkeypatch, capfd):
    """``python -m b2diffurl.driver prepare`` as run_process.sh runs it (same environment, caller's
    folder the repository), in this process; a CompletedProcess-like result."""
    import types

    from b2diffurl.driver.commands import main
    from b2diffurl.variables import KNOWN_VARIABLES

    for name in KNOWN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    env = {
        "CONFIG": config,
        "SavePath": str(save_path),
        "HF_HUB_OFFLINE": "1",
        "B2DIFFURL_CALLER_DIR": REPO,
        **{k: str(v) for k, v in variables.items()},
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capfd.readouterr()
    code = main(["prepare"])
    out, err = capfd.readouterr()
    return types.SimpleNamespace(returncode=code, stdout=out, stderr=err)


def _assert_one_line(proc, fragments, code=2):
    lines = error_lines(proc.stderr)
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    "variables,fragments", DRIVER_CASES, ids=[" ".join(f"{k}={v}" for k, v in c[0].items()) for c in DRIVER_CASES]
)
def test_the_driver_refuses_bad_input_before_round_0(variables, fragments, existing_run, tmp_path, monkeypatch, capfd):
    case = (variables, fragments)
    _scratch(tmp_path)
    variables = {k: v.format(dir=tmp_path) for k, v in variables.items()}
    fragments = [f.format(dir=tmp_path) for f in fragments]
    before, files, scratch = run_state(existing_run / "ref"), _files(existing_run), sorted(os.listdir(tmp_path))
    save_path = variables.pop("SavePath", existing_run)
    config = variables.pop("CONFIG", "config/stage_process.py:tiny")
    if DRIVER_CASES.index(case) % THROUGH_THE_SCRIPT == 0:
        proc = run_driver(save_path, check=False, config=config, **{**REFERENCE_RUN, **variables})
    else:
        proc = prepare_in_process(save_path, config, {**REFERENCE_RUN, **variables}, monkeypatch, capfd)
    _assert_one_line(proc, fragments)
    assert run_state(existing_run / "ref") == before and _files(existing_run) == files, "nothing of the run changed"
    assert sorted(os.listdir(tmp_path)) == scratch, "nothing was written"


def test_default_config_on_a_cpu_says_how_to_run_anyway(tmp_path):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    proc = run_driver(tmp_path, check=False, config="config/stage_process.py")
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        lines[0].startswith("error: MixedPrecision=fp16 needs a GPU")
        and "CONFIG=config/stage_process.py:toy" in lines[0]
    )
    assert "MixedPrecision=no" in lines[0]
    assert all(line.startswith("error: ") for line in lines), "one line per problem (model, reward: not cached offline)"
    assert not os.listdir(tmp_path)


def test_relative_paths_are_taken_from_the_callers_folder(tmp_path):
    """A relative PromptFile and SavePath are the caller's, not the repository's."""
    from b2diffurl.driver.prepare import prepare

    (tmp_path / "mine.json").write_text(json.dumps(["red apple"]))
    values = prepare(
        {
            "CONFIG": "config/stage_process.py:tiny",
            "PromptFile": "mine.json",
            "SavePath": "out",
            "B2DIFFURL_CALLER_DIR": str(tmp_path),
        }
    )
    assert values["PromptFile"] == str(tmp_path / "mine.json") and values["SavePath"] == str(tmp_path / "out")
    assert not (tmp_path / "out").exists()


# Damaged files of a finished run, met when the run is extended to a third round: one line naming
# the file and the recovery, before round_002 writes anything.
def _truncate(path):
    path.write_bytes(path.read_bytes()[:100])


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the checksum notices
    path.write_bytes(bytes(data))


# (name, damage, how the run is extended: "driver" (run_process.sh, StageCnt=3) or "stage" (run_sample.py
# for round_002), fragments of the one error line)
DAMAGE_CASES = [
    (
        "corrupt LoRA",
        lambda exp: _flip(exp / LORA),
        "driver",
        [LORA, "does not match its checksum", "delete", "round_001/train.done"],
    ),
    (
        "truncated LoRA",
        lambda exp: _truncate(exp / LORA),
        "driver",
        [LORA, "does not match its checksum", "round_001/train.done"],
    ),
    (
        "corrupt optimizer",
        lambda exp: _flip(exp / OPTIMIZER),
        "driver",
        [OPTIMIZER, "round_001/train.done", "FreshOptimizer=2"],
    ),
    (
        "missing optimizer",
        lambda exp: (exp / OPTIMIZER).unlink(),
        "driver",
        [OPTIMIZER, "is missing", "AdamW would restart from zero", "FreshOptimizer=2"],
    ),
    (
        "corrupt history scores",
        lambda exp: _flip(exp / "round_000" / "scores.json"),
        "driver",
        ["round_000/scores.json", "round_000/select.done"],
    ),
    (
        "corrupt marker",
        lambda exp: (exp / "round_001" / "train.done").write_text("{"),
        "driver",
        ["round_001/train.done is unreadable", "delete"],
    ),
    # (the driver would redo round_000's selection; a stage run alone must refuse the shorter history)
    (
        "missing history",
        lambda exp: (exp / "round_000" / "select.done").unlink(),
        "stage",
        ["round_000/select.done is missing", "History_Cnt"],
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("damage,via,fragments", [c[1:] for c in DAMAGE_CASES], ids=[c[0] for c in DAMAGE_CASES])
def test_damaged_files_stop_with_the_recovery(damage, via, fragments, reference_run, tmp_path):
    exp = tmp_path / REFERENCE_RUN["ExpName"]
    shutil.copytree(reference_run[1], exp)
    damage(exp)
    before, files = run_state(exp), _files(exp)
    if via == "stage":
        proc = run_stage(
            "run_sample.py",
            "--config",
            "config/stage_process.py:tiny",
            "--config.save_path",
            str(tmp_path),
            "--config.exp_name",
            "ref",
            "--config.run_name",
            "round_002",
            "--config.resume_from",
            str(exp / "round_001" / "lora"),
            check=False,
        )
    else:
        proc = run_driver(tmp_path, check=False, **{**REFERENCE_RUN, "StageCnt": 3})
    _assert_one_line(proc, fragments)
    assert run_state(exp) == before and _files(exp) == files


@pytest.mark.slow
def test_two_processes_print_one_line(reference_run, tmp_path):
    exp = tmp_path / REFERENCE_RUN["ExpName"]
    shutil.copytree(reference_run[1], exp)
    _flip(exp / LORA)
    os.remove(exp / "settings.json")  # as a run folder from before settings were recorded: 2 processes are not a change
    proc = run_driver(
        tmp_path,
        check=False,
        NUM_PROCESSES=2,
        ACCELERATE_ARGS="--main_process_port 0",
        **{**REFERENCE_RUN, "StageCnt": 3},
    )
    _assert_one_line(proc, [LORA, "does not match its checksum"])


STAGE_CASES = [
    (["--config.nofield", "3"], ["unknown config field", "--config.nofield"]),
    (["--config.seed", "abc"], ["--config.seed=abc", "invalid literal"]),
    (["--config.split_step", "x"], ["--config.split_step=x"]),
    (["--config", "config/stage_process.py:nope"], ["--config=config/stage_process.py:nope", "unknown preset 'nope'"]),
    (["--config", "config/missing.py"], ["--config=config/missing.py", "does not exist"]),
    (["--config.train.learning_rate", "-1"], ["train.learning_rate=-1.0 must be > 0"]),
    (["--config.sample.latent_dtype", "fp8"], ["sample.latent_dtype='fp8' must be one of fp16, fp32"]),
    (["--config.sample.latent_dtype", "bf16"], ["sample.latent_dtype='bf16' rounds a stored latent", "use fp16"]),
    (["--config.train.dpo_reference", "frozen"], ["train.dpo_reference='frozen' must be one of base, sampling"]),
]


@pytest.mark.parametrize("flags,fragments", STAGE_CASES, ids=[" ".join(c[0]) for c in STAGE_CASES])
def test_stage_scripts_refuse_bad_flags_in_one_line(flags, fragments, tmp_path):
    base = ["--config", "config/stage_process.py:tiny", "--config.save_path", str(tmp_path)]
    if flags[0] == "--config":
        base = base[2:]
    proc = run_stage("run_sample.py", *base, *flags, check=False)
    _assert_one_line(proc, fragments)
    assert not os.listdir(tmp_path)


def test_every_variable_has_a_bad_input_refused_in_a_line_naming_it(tmp_path, monkeypatch, capfd):
    """Each variable a user sets has a case above, and one of its cases is refused by prepare with
    the case's line, which names that variable (here on a fresh SavePath, in this process); a case
    that sets a variable and is not refused with its line fails too."""
    from b2diffurl.variables import DRIVER_VARIABLES, OTHER_VARIABLES

    _scratch(tmp_path)
    save_path = tmp_path / "runs"
    for variable in (*DRIVER_VARIABLES, *OTHER_VARIABLES):
        cases = [case for case in DRIVER_CASES if variable in case[0] or any(variable in f for f in case[1])]
        assert cases, f"no bad-input case names {variable}"
        for variables, fragments in cases:
            variables = {k: v.format(dir=tmp_path) for k, v in variables.items()}
            fragments = [f.format(dir=tmp_path) for f in fragments]
            config = variables.pop("CONFIG", "config/stage_process.py:tiny")
            variables.setdefault("SavePath", str(save_path))
            proc = prepare_in_process(
                variables.pop("SavePath"), config, {**REFERENCE_RUN, **variables}, monkeypatch, capfd
            )
            _assert_one_line(proc, fragments)
            if any(variable in line for line in error_lines(proc.stderr)):
                break
        else:
            raise AssertionError(f"no case of {variable} is refused in a line naming it")
    assert not save_path.exists(), "nothing was written"


@pytest.mark.slow
def test_fresh_optimizer_is_a_deliberate_flag(reference_run, tmp_path):
    """Without round_001's AdamW state, round_002 refuses to start (above); FreshOptimizer=2 starts it
    from zero on purpose, in that round only, and says so in its metrics."""
    exp = tmp_path / REFERENCE_RUN["ExpName"]
    shutil.copytree(reference_run[1], exp)
    (exp / OPTIMIZER).unlink()
    run_driver(tmp_path, FreshOptimizer=2, **{**REFERENCE_RUN, "StageCnt": 3})
    metrics = json.loads((exp / "round_002" / "metrics.json").read_text())
    assert metrics["fresh_optimizer"] is True and metrics["optimizer_steps"] > 0
    assert json.loads((reference_run[1] / "round_001" / "metrics.json").read_text())["fresh_optimizer"] is False


def test_ports_in_the_ephemeral_range_get_a_warning(tmp_path):
    from b2diffurl.driver.machines import ephemeral_ports, port_warning

    range_file = tmp_path / "ip_local_port_range"
    range_file.write_text("32768\t60999\n")
    ephemeral = ephemeral_ports(str(range_file))
    assert ephemeral == (32768, 60999)
    assert ephemeral_ports(str(tmp_path / "missing")) is None
    two = {"NUM_MACHINES": 2}
    assert port_warning({**two, "MAIN_PROCESS_PORT": 29500}, ephemeral) is None  # the default: below the range
    assert port_warning({**two, "MAIN_PROCESS_PORT": 32752}, ephemeral) is None  # its 16 ports end at 32767
    line = port_warning({**two, "MAIN_PROCESS_PORT": 32753}, ephemeral)  # its last port is the range's first
    assert "32753..32768" in line and "at most 32752" in line
    assert "50000..50015" in port_warning({**two, "MAIN_PROCESS_PORT": 50000}, ephemeral)
    assert port_warning({**two, "MAIN_PROCESS_PORT": 61000}, ephemeral) is None  # above the range
    assert (
        port_warning({"NUM_MACHINES": 1, "MAIN_PROCESS_PORT": 50000}, ephemeral) is None
    )  # one machine: no rendezvous port
    assert port_warning({**two, "MAIN_PROCESS_PORT": 50000}, None) is None


def test_the_driver_prints_the_port_warning_and_goes_on(tmp_path, monkeypatch, capfd):
    from b2diffurl.driver import machines as driver_machines

    monkeypatch.setattr(driver_machines, "ephemeral_ports", lambda: (32768, 60999))
    machines = {"NUM_MACHINES": 2, "MAIN_PROCESS_IP": "10.0.0.1", "NUM_PROCESSES": 2}
    proc = prepare_in_process(
        tmp_path, "config/stage_process.py:tiny", {**machines, "MAIN_PROCESS_PORT": 50000}, monkeypatch, capfd
    )
    assert proc.returncode == 0, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith(
        "warning: MAIN_PROCESS_PORT=50000: the launches meet on ports 50000..50015"
    ), lines
    assert "MAIN_PROCESS_PORT=50000" in proc.stdout  # the run goes on with the port asked for
    proc = prepare_in_process(tmp_path, "config/stage_process.py:tiny", machines, monkeypatch, capfd)  # 29500
    assert proc.returncode == 0 and error_lines(proc.stderr) == [], proc.stderr
