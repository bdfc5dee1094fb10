"""Shared fixtures: one tiny pipeline per test session, configs pointing at it, stage runners."""

import os
import subprocess
import sys

import pytest

# what a stage measures about its own run (markers, metrics.json): differs from run to run
from b2diffurl.summaries import MEASURED

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # pytest -n N: the cores are shared out, one share per worker, and the stage processes a test
    # starts inherit it; N workers with torch's default (every core) each would oversubscribe them
    _THREADS = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, _THREADS)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from b2diffurl.tiny import build_tiny_pipeline

    return build_tiny_pipeline(str(tmp_path_factory.mktemp("tiny") / "tiny-sd"))


@pytest.fixture
def tiny_config(tiny_dir, tmp_path):
    """The tiny preset with its model at the session's tiny folder and outputs under tmp_path."""
    from b2diffurl.tiny import tiny_clip_paths
    from config.stage_process import get_config

    config = get_config("tiny")
    config.pretrained.model = tiny_dir
    config.pretrained.build_tiny = False
    config.reward.clip_model, config.reward.clip_pretrained = tiny_clip_paths(tiny_dir)
    config.save_path = str(tmp_path / "runs")
    config.prompt_file = os.path.join(REPO, config.prompt_file)
    return config


@pytest.fixture(scope="session")
def pipeline(tiny_dir):
    from b2diffurl.models import load_pipeline

    return load_pipeline(tiny_dir)


def run_round(config, accelerator, r, resume_from=""):
    """One full round in process (round_<r>, seed + r); returns (round folder, select summary, train
    metrics, the pipeline it sampled and trained with)."""
    import copy

    from b2diffurl.layout import round_dir
    from b2diffurl.models import load_policy
    from b2diffurl.rewards import build_reward
    from b2diffurl.sampler import sample_round
    from b2diffurl.selection import select_round
    from b2diffurl.trainer import train_round

    config = copy.deepcopy(config)
    config.run_name, config.seed, config.resume_from = f"round_{r:03d}", config.seed + r, resume_from
    out = round_dir(config)
    pipeline = load_policy(config, accelerator.device)
    sample_round(config, accelerator, pipeline)
    selected = select_round(config, build_reward(config.reward, "cpu"), out, os.path.dirname(out))
    return out, selected, train_round(config, accelerator, pipeline, out), pipeline


def run_stage(script, *flags, launcher=(), check=True, timeout=300, env=None):
    """Run a stage script as a user would (own process, offline); returns the CompletedProcess."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    cmd = [*launcher, os.path.join(REPO, script)] if launcher else [sys.executable, os.path.join(REPO, script)]
    proc = subprocess.run([*cmd, *flags], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def accelerate_two_processes():
    """accelerate launch with 2 processes: gloo on the CPU when there is no GPU (--cpu would start only one)."""
    exe = os.path.join(os.path.dirname(sys.executable), "accelerate")
    return (
        exe,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
    )


def _default_sigint():
    """Ctrl-C as in a terminal: a pytest started in the background (``pytest &``) ignores SIGINT, and
    its children would inherit that and never see the fault tests' INT."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_driver(save_path, check=True, config="config/stage_process.py:tiny", timeout=1200, cwd=REPO, **variables):
    """bash run_process.sh as users run it (own session, so a fault can stop its whole process group)."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "B2DIFFURL_FAULT"}
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHON": sys.executable,
            "CONFIG": config,
            "SavePath": str(save_path),
        }
    )
    env.update({k: str(v) for k, v in variables.items()})
    proc = subprocess.run(
        ["bash", os.path.join(REPO, "run_process.sh")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"run_process.sh failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def error_lines(stderr):
    """The lines a user reads on stderr, progress bars left out."""
    lines = [part.strip() for line in stderr.splitlines() for part in line.split("\r")]
    return [
        line
        for line in lines
        if line and "it/s]" not in line and "s/it]" not in line and not line.startswith(("sampling ", "training "))
    ]


# A small run that every crash and bad-input test compares against: 2 rounds (k = 2, 3), 2 prompt
# batches, SaveInterval=2 (round_001's samples/ are removed once trained).
REFERENCE_RUN = {"StageCnt": 2, "BatchCnt": 2, "SaveInterval": 2, "ExpName": "ref", "Seed": 5}


def shared_folder(tmp_path_factory, name):
    """A session folder every xdist worker sees (the parent of the workers' base temp); one worker
    builds what goes in it (see :func:`built_once`)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name


def built_once(folder, build):
    """``build(folder)`` unless another worker of this session did: a file lock, then a marker."""
    from filelock import FileLock

    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        marker = folder.parent / (folder.name + ".built")
        if not marker.exists():
            build(folder)
            marker.touch()
    return folder


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """(save_path, experiment folder) of REFERENCE_RUN, finished without interruption; run once per
    session, whatever the number of workers (tests copy it before they change anything)."""
    save_path = built_once(
        shared_folder(tmp_path_factory, "reference"), lambda folder: run_driver(folder, **REFERENCE_RUN)
    )
    return save_path, save_path / REFERENCE_RUN["ExpName"]


def run_state(exp_dir):
    """Everything about a run folder that must not depend on how often it was stopped:
    {relative path: content digest}, with the run's measurements (:data:`MEASURED`), its lock file and
    the git commit in settings.json left out."""
    import csv
    import hashlib
    import io
    import json

    state = {}
    for dirpath, _, names in os.walk(exp_dir):
        for name in names:
            if name == ".run.lock":  # who held the run folder last (b2diffurl.runlock): not a result
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, exp_dir)
            data = open(path, "rb").read()
            if name.endswith(".done") or name == "metrics.json":
                try:
                    content = json.loads(data)
                except ValueError:  # a damaged marker: compared as bytes
                    content = {"bytes": data.hex()}
                for key in MEASURED:
                    content.pop(key, None)
                content.get("files", {}).pop("metrics.json", None)  # it holds the seconds
                data = json.dumps(content, sort_keys=True).encode()
            elif rel == "settings.json":  # the commit may move on between two runs of a session
                content = json.loads(data)
                content.pop("commit", None)
                data = json.dumps(content, sort_keys=True).encode()
            elif name == "progress.csv":
                rows = list(csv.DictReader(io.StringIO(data.decode())))
                data = json.dumps([{k: v for k, v in row.items() if k != "seconds"} for row in rows]).encode()
            state[rel] = hashlib.sha256(data).hexdigest()
    return state


def reward_gain(lora_dir, prompts, preset="tiny", images=64):
    """(mean reward gain, its standard error) of a LoRA over the base model on the same fixed
    evaluation seeds (b2diffurl.evaluate's sampling), ``images`` images spread over ``prompts``."""
    from b2diffurl.evaluate import sample_images
    from b2diffurl.models import load_lora, load_policy
    from b2diffurl.rewards import build_reward
    from config.stage_process import get_config

    config = get_config(preset)
    config.evaluate.num_images = images
    reward = build_reward(config.reward, "cpu")
    pipeline = load_policy(config, "cpu")
    item_prompts = [p for p in prompts for _ in range(images // len(prompts))]
    base = reward(sample_images(pipeline, prompts, config), item_prompts)
    load_lora(pipeline.unet, str(lora_dir))
    trained = reward(sample_images(pipeline, prompts, config), item_prompts)
    gain = (trained.mean() - base.mean()).item()
    standard_error = (base.var() / len(base) + trained.var() / len(trained)).sqrt().item()
    print(f"reward base {base.mean():.4f}, trained {trained.mean():.4f}, gain {gain:.4f}, SE {standard_error:.4f}")
    return gain, standard_error


# ---------------------------------------------------------------- order: longest first
# With workers (pytest -n 2, docs/TESTS.md) a free worker takes the next test; starting the longest
# ones first keeps one of them from running alone at the end. Seconds on 2 cores, one test at a time
# (--durations); a test not named here counts 50 s when marked slow, else 0.
LONG_TESTS = {
    "test_toymodel.py::test_the_quick_start_ends_above_the_base_model": 1200,  # long (-m long)
    "test_toymodel.py::test_the_captioning_reward_trains": 1200,  # long
    "test_experiments.py::test_two_experiments_evaluate_and_plot": 360,
    "test_experiments.py::test_dpok_and_dpo_learn": 300,
    "test_run_process.py::test_the_loop_learns_resumes_and_reruns_for_free": 300,
    "test_readme.py::test_readme_commands_run_verbatim": 210,
    "test_performance.py::test_bf16_end_to_end_on_the_cpu": 125,
    "test_experiments.py::test_every_objective_runs_the_full_loop": 100,
    "test_machines.py::test_two_machines_run_as_one_machine_with_two_processes": 260,
    "test_backbones.py::test_a_v_prediction_model_runs_the_loop": 100,
    "test_weights.py::test_a_vit_h_14_reward_loads_in_at_most_1_2x_its_weights": 90,
    "test_faults.py::test_stops_anywhere_then_rerun_give_the_uninterrupted_run": 85,
    "test_run_records.py::test_two_drivers_on_one_run_folder": 80,
}


def pytest_collection_modifyitems(items):
    def cost(item):
        name = item.nodeid.split("/")[-1].split("[")[0]
        return LONG_TESTS.get(name, 50 if item.get_closest_marker("slow") else 0)

    items.sort(key=cost, reverse=True)  # stable: equal costs keep the file order
