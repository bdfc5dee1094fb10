"""Backbones beyond SD v1.4: a tiny SD 2.x-style pipeline (v-prediction, linear projections, GELU text
encoder) through the three stages and evaluation, with the same guarantees as SD v1.x."""

import math

import pytest
import torch

from b2diffurl import records
from conftest import run_driver


@pytest.fixture(scope="module")
def sd2_dir(tmp_path_factory):
    from b2diffurl.tiny import build_tiny_pipeline

    return build_tiny_pipeline(str(tmp_path_factory.mktemp("sd2") / "tiny-sd2"), variant="sd2")


def test_a_v_prediction_pipeline_loads_and_samples_as_diffusers_does(sd2_dir):
    """load_pipeline keeps the checkpoint's v-prediction in its DDIM scheduler, and one policy step on
    the tiny SD 2.x UNet's output has the mean of diffusers' DDIMScheduler.step (eta 1)."""
    from b2diffurl.ddim import step_mean_std
    from b2diffurl.models import load_pipeline

    pipeline = load_pipeline(sd2_dir)
    scheduler = pipeline.scheduler
    assert type(scheduler).__name__ == "DDIMScheduler" and scheduler.config.prediction_type == "v_prediction"
    scheduler.set_timesteps(4)
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    embeddings = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(1))
    t = int(scheduler.timesteps[1])
    with torch.no_grad():
        v = pipeline.unet(x, t, encoder_hidden_states=embeddings).sample
    mean, std, x0 = step_mean_std(scheduler, v, t, x, 1.0)
    reference = scheduler.step(v, t, x, eta=1.0, variance_noise=torch.zeros_like(x))
    torch.testing.assert_close(mean, reference.prev_sample, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x0, reference.pred_original_sample, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_a_v_prediction_model_runs_the_loop(sd2_dir, tmp_path):
    """Two rounds and their evaluation on the tiny SD 2.x pipeline: training recomputes the sampled
    log-probs exactly (the v-prediction step is the same in both stages), trains the LoRA, and every
    number is finite."""
    from b2diffurl.tiny import tiny_clip_paths

    clip_model, clip_weights = tiny_clip_paths(sd2_dir)
    config = tmp_path / "sd2_config.py"
    config.write_text(
        "from config.stage_process import get_config as base\n\n\n"
        "def get_config(preset='tiny'):\n"
        "    config = base(preset)\n"
        f"    config.pretrained.model = {sd2_dir!r}\n"
        "    config.pretrained.build_tiny = False\n"
        f"    config.reward.clip_model, config.reward.clip_pretrained = {clip_model!r}, {clip_weights!r}\n"
        "    return config\n"
    )
    out = run_driver(tmp_path, config=str(config), ExpName="sd2", StageCnt=2, BatchCnt=2, EvalInterval=2, OneProcess=1, Seed=4).stdout
    assert "all 2 rounds finished" in out
    for r in range(2):
        metrics = records.read_json(tmp_path / "sd2" / f"round_{r:03d}" / "metrics.json")
        assert metrics["optimizer_steps"] > 0 and metrics["first_step_max_ratio_deviation"] < 1e-5
        assert math.isfinite(metrics["loss"]) and metrics["approx_kl"] >= 0
    result = records.read_json(tmp_path / "sd2" / "round_001" / "eval" / "train.json")
    assert math.isfinite(result["clipscore_mean"]) and result["reward_queries"] > 0
