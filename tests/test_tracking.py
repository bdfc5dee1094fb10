"""The per-round experiment log: scalars from a round's markers, its image grid, tensorboard files
read back, nothing written (or imported) when off, and one-line config errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from b2diffurl import layout, records, tracking
from b2diffurl.checks import check_config, trackers
from config.stage_process import get_config

SAMPLE = {
    "trajectories": 48,
    "split_step": 3,
    "split_time": 3,
    "images": 5,
    "bytes_written": 1000,
    "seconds": 1.5,
    "num_processes": 1,
}
SELECT = {
    "trajectories": 48,
    "selected": 12,
    "reward_mean": 0.25,
    "reward_std": 0.125,
    "history_rounds": 0,
    "seconds": 0.5,
}
TRAIN = {
    "algorithm": "dpok",
    "loss": -0.5,
    "approx_kl": 0.001,
    "clipfrac": 0.25,
    "grad_norm": 0.75,
    "optimizer_steps": 2,
    "fresh_optimizer": True,
    "lora_checksum_by_rank": [[1.0, 2.0]],
    "kl_reference": 0.0625,
    "num_processes": 1,
    "seconds": 2.0,
}
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Logging makes accelerate's default process state when none exists: drop it after the test, so
    a later test's Accelerator(cpu=True) in this process is not handed a state made for the GPU."""
    from accelerate.state import PartialState

    existed = bool(PartialState._shared_state)
    yield
    if not existed:
        PartialState._reset_state()


def fake_round(folder, n_images=5, size=8):
    """A finished round's folder: the three markers (as finish_stage writes them) and ``n_images`` PNGs."""
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    for stage, summary in zip(records.STAGES, (SAMPLE, SELECT, TRAIN)):
        records.write_json(
            layout.marker_path(folder, stage), {"format_version": records.FORMAT_VERSION, **summary, "files": {}}
        )
    for i in range(n_images):
        Image.new("RGB", (size, size), COLOURS[i % len(COLOURS)]).save(os.path.join(folder, records.image_name(i)))
    return folder


def logging_config(tmp_path, log_with="tensorboard"):
    config = get_config("tiny")
    config.save_path = str(tmp_path / "runs")
    config.prompt_file = os.path.join(REPO, config.prompt_file)
    config.run_name = "round_002"
    config.log_with = log_with
    return config


def read_events(config):
    """tensorboard's EventAccumulator of the experiment's run (all images kept)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(
        os.path.join(tracking.logging_dir(config), config.exp_name), size_guidance={"images": 0, "scalars": 0}
    )
    return accumulator.Reload()


def test_round_summary_reads_the_markers(tmp_path):
    summary = tracking.round_summary(fake_round(str(tmp_path / "round_002")))
    assert summary["reward/mean"] == 0.25 and summary["reward/std"] == 0.125
    assert summary["select/selected"] == 12 and summary["select/trajectories"] == 48
    assert summary["sample/k"] == 3 and summary["sample/split_time"] == 3
    assert summary["train/loss"] == -0.5 and summary["train/approx_kl"] == 0.001 and summary["train/clipfrac"] == 0.25
    assert (
        summary["train/grad_norm"] == 0.75
        and summary["train/optimizer_steps"] == 2
        and summary["train/kl_reference"] == 0.0625
    )
    assert (
        summary["time/sample_seconds"] == 1.5
        and summary["time/train_seconds"] == 2.0
        and summary["time/round_seconds"] == 4.0
    )
    # strings, bools, lists and bookkeeping are not curves
    assert not {
        "train/algorithm",
        "train/fresh_optimizer",
        "train/lora_checksum_by_rank",
        "train/seconds",
        "train/num_processes",
    } & set(summary)
    assert all(isinstance(v, float) for v in summary.values())


def test_round_summary_skips_unfinished_stages(tmp_path):
    folder = fake_round(str(tmp_path / "round_000"))
    os.remove(layout.marker_path(folder, "train"))
    summary = tracking.round_summary(folder)
    assert "reward/mean" in summary and not any(tag.startswith("train/") for tag in summary)
    assert summary["time/round_seconds"] == 2.0


def test_sample_grid_tiles_the_first_images(tmp_path):
    folder = fake_round(str(tmp_path / "round_000"), n_images=5, size=8)
    grid = tracking.sample_grid(folder)  # 5 images: 3 columns, 2 rows
    assert grid.dtype == np.uint8 and grid.shape == (16, 24, 3)
    assert tuple(grid[0, 0]) == COLOURS[0] and tuple(grid[0, 8]) == COLOURS[1] and tuple(grid[8, 0]) == COLOURS[3]
    assert tuple(grid[8, 16]) == (0, 0, 0)  # the empty cell
    assert tracking.sample_grid(folder, n=4).shape == (16, 16, 3)
    os.remove(os.path.join(folder, records.image_name(1)))
    assert tracking.sample_grid(folder, n=2).shape == (8, 8, 3)  # only the images that exist
    assert tracking.sample_grid(str(tmp_path / "empty")) is None


def test_tensorboard_log_reads_back(tmp_path):
    config = logging_config(tmp_path)
    exp_dir = os.path.join(config.save_path, config.exp_name)
    for r in (0, 1):
        tracking.log_round(
            config, r, fake_round(os.path.join(exp_dir, f"round_{r:03d}")), extra={"reward/queries": 48 * (r + 1)}
        )
    results = {
        "prompt_set": "test",
        "clipscore_mean": 0.3,
        "clipscore_sem": 0.01,
        "reward_queries": 96,
        "inception_score": float("nan"),
        "model": "x",
    }
    tracking.log_evaluation(config, 1, results, grid=np.full((4, 6, 3), 200, dtype=np.uint8))

    events = read_events(config)
    assert [(e.step, e.value) for e in events.Scalars("reward/mean")] == [(0, 0.25), (1, 0.25)]
    assert [e.step for e in events.Scalars("train/kl_reference")] == [0, 1]
    assert [(e.step, e.value) for e in events.Scalars("reward/queries")] == [(0, 48.0), (1, 96.0)]
    assert [(e.step, e.value) for e in events.Scalars("eval/test/reward_queries")] == [(1, 96.0)]
    assert events.Scalars("eval/test/clipscore_mean")[0].value == pytest.approx(0.3)
    assert "eval/test/inception_score" not in events.Tags()["scalars"]  # NaN is not logged
    samples = events.Images("samples")
    assert [(e.step, e.width, e.height) for e in samples] == [(0, 24, 16), (1, 24, 16)]
    decoded = np.asarray(Image.open(__import__("io").BytesIO(samples[0].encoded_image_string)).convert("RGB"))
    assert tuple(decoded[0, 0]) == COLOURS[0]
    assert [(e.step, e.width, e.height) for e in events.Images("eval/test/samples")] == [(1, 6, 4)]


def test_logging_dir_is_honoured(tmp_path):
    config = logging_config(tmp_path)
    config.logging_dir = str(tmp_path / "elsewhere")
    tracking.log_round(config, 2, fake_round(str(tmp_path / "round_002")))
    assert os.listdir(tmp_path / "elsewhere" / config.exp_name)
    assert read_events(config).Scalars("train/loss")[0].step == 2


def test_nothing_is_written_or_imported_when_off(tmp_path):
    """log_with='' returns before importing accelerate or torch (a fresh process tells)."""
    folder = fake_round(str(tmp_path / "runs" / "tiny" / "round_000"))
    before = sorted(os.listdir(tmp_path / "runs" / "tiny"))
    code = (
        "import sys, types; from b2diffurl import tracking; "
        "config = types.SimpleNamespace(log_with='', logging_dir='', "
        f"save_path={str(tmp_path / 'runs')!r}, exp_name='tiny'); "
        f"tracking.log_round(config, 0, {folder!r}); tracking.log_evaluation(config, 0, {{'clipscore_mean': 0.3}}); "
        "print(sorted(m for m in ('torch', 'accelerate', 'tensorboard', 'wandb') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert sorted(os.listdir(tmp_path / "runs" / "tiny")) == before  # no logs/ folder


def test_the_check_imports_no_tracker(tmp_path):
    code = (
        "import sys; from config.stage_process import get_config; from b2diffurl.checks import check_config; "
        "config = get_config('tiny'); config.log_with = 'tensorboard'; "
        "assert not check_config(config)[0].problems, check_config(config)[0].problems; "
        "print(sorted(m for m in ('tensorboard', 'wandb', 'accelerate') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _problems(config):
    return [str(p) for p in check_config(config)[0].problems]


@pytest.mark.parametrize("value", ["", "tensorboard", " tensorboard , "])
def test_log_with_accepted(tmp_path, value):
    assert _problems(logging_config(tmp_path, value)) == []


@pytest.mark.parametrize("value", ["foo", "tensorboard,foo", "TensorBoard"])
def test_unknown_tracker_is_one_line(tmp_path, value):
    (problem,) = _problems(logging_config(tmp_path, value))
    assert problem.startswith(f"log_with={value!r} must be ") and "\n" not in problem


@pytest.mark.skipif(trackers._installed("wandb"), reason="wandb is installed here")
@pytest.mark.parametrize("value", ["wandb", "tensorboard,wandb"])
def test_wandb_not_installed_is_one_line(tmp_path, value):
    (problem,) = _problems(logging_config(tmp_path, value))
    assert (
        problem.startswith(f"log_with={value!r}")
        and "pip install wandb" in problem
        and "log_with=tensorboard" in problem
    )
    assert "\n" not in problem


def test_tensorboard_not_installed_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(trackers, "_installed", lambda module: module not in ("tensorboard", "tensorboardX"))
    (problem,) = _problems(logging_config(tmp_path, "tensorboard"))
    assert problem.startswith("log_with='tensorboard'") and "pip install tensorboard" in problem and "\n" not in problem


def test_other_field_problems(tmp_path):
    config = logging_config(tmp_path)
    config.run_name = "final"
    (problem,) = _problems(config)
    assert problem.startswith("run_name='final' must end with the round number") and "log_with" in problem
    config.log_with = ""
    assert _problems(config) == []  # without a log a round needs no number here


def test_wandb_run_id_is_stable_and_per_experiment(tmp_path):
    config = logging_config(tmp_path)
    same = logging_config(tmp_path)
    assert tracking.wandb_run_id(config) == tracking.wandb_run_id(same)
    assert tracking.wandb_run_id(config).startswith("tiny-")
    same.save_path = str(tmp_path / "other")
    assert tracking.wandb_run_id(config) != tracking.wandb_run_id(same)


def test_marker_layout_matches_finish_stage(tmp_path):
    """fake_round writes markers the way finish_stage does (summary keys at the top, files last)."""
    folder = str(tmp_path / "round_000")
    os.makedirs(layout.stage_tmp_dir(folder, "select"))
    records.finish_stage(folder, "select", SELECT, {})
    real = records.read_marker(folder, "select")
    fake = fake_round(str(tmp_path / "round_001"))
    with open(layout.marker_path(fake, "select")) as f:
        assert json.load(f) == real


def test_wandb_tracker_gets_a_resumable_run(tmp_path, monkeypatch):
    """With a stand-in wandb module: one run per experiment (project and name exp_name, a fixed id,
    resume='allow'); scalars and the grid in one history row against the logged round, not wandb's step."""
    import types

    calls = []

    class Run:
        def define_metric(self, name, step_metric=None):
            calls.append(("define", name, step_metric))

        def log(self, values, step=None, commit=None):
            calls.append(("log", values, step, commit))

        def finish(self):
            calls.append(("finish",))

    def init(**kwargs):
        calls.append(("init", kwargs))
        return Run()

    monkeypatch.setitem(
        sys.modules, "wandb", types.SimpleNamespace(init=init, Image=lambda array: ("image", array.shape))
    )
    config = logging_config(tmp_path, "wandb")
    tracking.log_round(config, 2, fake_round(str(tmp_path / "round_002")))
    assert calls[0] == (
        "init",
        {
            "project": "tiny",
            "name": "tiny",
            "id": tracking.wandb_run_id(config),
            "resume": "allow",
            "dir": tracking.logging_dir(config),
        },
    )
    defines = [c for c in calls if c[0] == "define"]
    assert defines[0] == ("define", "round", None)
    assert ("define", "reward/mean", "round") in defines and ("define", "samples", "round") in defines
    (_, images, step, commit), (_, scalars, last_step, last_commit) = [c for c in calls if c[0] == "log"]
    assert images == {"samples": [("image", (16, 24, 3))]} and step is None and commit is False
    assert scalars["round"] == 2 and scalars["reward/mean"] == 0.25 and last_step is None and last_commit is None
    assert calls[-1] == ("finish",)
