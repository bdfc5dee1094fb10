"""Shared fixtures: one tiny pipeline per test session, configs pointing at it, stage runners."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


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
    return (exe, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0")
