"""Backbones beyond SD v1.4 (b2diffurl.backbones): tiny SD 2.x-shaped (v-prediction) and SDXL-shaped
pipelines built in code, through the three stages and evaluation with the same guarantees as SD v1.x."""

import math
import os

import pytest
import torch
from conftest import run_driver

from b2diffurl import records


def _tiny(tmp_path_factory, variant):
    from b2diffurl.tiny import build_tiny_pipeline

    return build_tiny_pipeline(str(tmp_path_factory.mktemp(variant) / f"tiny-{variant}"), variant=variant)


@pytest.fixture(scope="module")
def sd2_dir(tmp_path_factory):
    return _tiny(tmp_path_factory, "sd21")


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory):
    return _tiny(tmp_path_factory, "sdxl")


def test_the_backbone_comes_from_the_checkpoint(sd2_dir, sdxl_dir, tiny_dir):
    """load_pipeline reads model_index.json: each tiny checkpoint loads as its own pipeline class."""
    from b2diffurl import backbones
    from b2diffurl.models import load_pipeline

    for folder, cls, name in (
        (tiny_dir, "StableDiffusionPipeline", "sd"),
        (sd2_dir, "StableDiffusionPipeline", "sd"),
        (sdxl_dir, "StableDiffusionXLPipeline", "sdxl"),
    ):
        pipeline = load_pipeline(folder)
        assert type(pipeline).__name__ == cls and backbones.backbone(pipeline) == name
        assert backbones.backbone_of(backbones.read_model_index(folder)) == name
    # what a run records of its model (settings.json's "model")
    assert backbones.checkpoint_record(sd2_dir) == {
        "pipeline": "StableDiffusionPipeline",
        "backbone": "sd",
        "prediction_type": "v_prediction",
    }
    assert (
        backbones.checkpoint_record(sdxl_dir)["backbone"] == "sdxl"
        and backbones.checkpoint_record(str(sd2_dir) + "-missing") == {}
    )


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


def test_sdxl_conditioning_is_the_pipelines(sdxl_dir):
    """SDXL's prompt embeddings, pooled embeddings, zeroed unconditional prompt and add_time_ids are
    what StableDiffusionXLPipeline builds, and the guided UNet call is its denoising loop's."""
    from diffusers import StableDiffusionXLPipeline

    from b2diffurl import backbones
    from b2diffurl.models import load_pipeline

    ours = load_pipeline(sdxl_dir)
    stock = StableDiffusionXLPipeline.from_pretrained(sdxl_dir)
    prompts = ["a red circle", "two blue squares"]
    cond, negative = backbones.encode_prompts(ours, prompts), backbones.negative_conditioning(ours)
    embeds, negative_embeds, pooled, negative_pooled = stock.encode_prompt(
        prompts, device="cpu", do_classifier_free_guidance=True
    )
    torch.testing.assert_close(cond.hidden, embeds)
    torch.testing.assert_close(cond.pooled, pooled)
    torch.testing.assert_close(negative.hidden, negative_embeds[:1])
    torch.testing.assert_close(negative.pooled, negative_pooled[:1])
    assert not negative.hidden.any() and not negative.pooled.any(), "force_zeros_for_empty_prompt"
    size = stock.default_sample_size * stock.vae_scale_factor
    time_ids = stock._get_add_time_ids(
        (size, size), (0, 0), (size, size), embeds.dtype, stock.text_encoder_2.config.projection_dim
    )
    torch.testing.assert_close(cond.time_ids, time_ids.repeat(2, 1))
    torch.testing.assert_close(negative.time_ids, time_ids)

    x = torch.randn(2, *backbones.latent_shape(ours), generator=torch.Generator().manual_seed(0))
    t = torch.tensor(501)
    with torch.no_grad():
        guided = backbones.predict_noise(ours.unet, x, t, cond, negative, 5.0)
        rows = stock.unet(
            torch.cat([x, x]),
            t,
            encoder_hidden_states=torch.cat([negative_embeds, embeds]),
            added_cond_kwargs={"text_embeds": torch.cat([negative_pooled, pooled]), "time_ids": time_ids.repeat(4, 1)},
        ).sample
    uncond, conditional = rows.chunk(2)
    torch.testing.assert_close(guided, uncond + 5.0 * (conditional - uncond), atol=1e-5, rtol=1e-5)


def _stock_image(folder, lora_dir=None):
    """A stock pipeline of the checkpoint's class (no code of ours), 3 DDIM steps at a fixed seed, with
    the LoRA of ``lora_dir`` loaded through its own load_lora_weights when given: [H, W, 3] in [0, 1]."""
    import diffusers
    from diffusers import DDIMScheduler

    from b2diffurl import backbones

    cls = getattr(diffusers, backbones.read_model_index(folder)["_class_name"])
    pipeline = cls.from_pretrained(
        folder, **({"safety_checker": None} if cls.__name__ == "StableDiffusionPipeline" else {})
    )
    pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
    if lora_dir:
        pipeline.load_lora_weights(lora_dir)
    pipeline.set_progress_bar_config(disable=True)
    image = pipeline(
        "a red circle",
        num_inference_steps=3,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    )
    return image.images[0]


def _snapshot(exp_dir):
    return {
        os.path.join(f, n): os.stat(os.path.join(f, n)).st_mtime_ns
        for f, _, ns in os.walk(exp_dir)
        for n in ns
        if n != ".run.lock"
    }


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["sd21", "sdxl"])
def test_a_backbone_runs_the_loop(backbone, tmp_path):
    """``CONFIG=config/stage_process.py:tiny,<backbone>``: two rounds and their evaluation through
    run_process.sh. Training recomputes the sampled log-probs exactly (ratio 1 at the first step),
    trains the LoRA, every number is finite; a rerun rewrites nothing; the saved LoRA loads into the
    stock diffusers pipeline of the checkpoint's class and changes its pixels; settings.json records the
    backbone the model resolved to."""
    from b2diffurl.tiny import TINY_DIRS

    run = dict(
        config=f"config/stage_process.py:tiny,{backbone}",
        ExpName=backbone,
        StageCnt=2,
        BatchCnt=1,
        EvalInterval=2,
        OneProcess=1,
        Seed=4,
    )
    out = run_driver(tmp_path, **run).stdout
    assert "all 2 rounds finished" in out
    exp = tmp_path / backbone
    assert records.read_json(exp / "settings.json")["model"]["backbone"] == ("sdxl" if backbone == "sdxl" else "sd")
    for r in range(2):
        metrics = records.read_json(exp / f"round_{r:03d}" / "metrics.json")
        assert metrics["optimizer_steps"] > 0 and metrics["first_step_max_ratio_deviation"] < 1e-5
        assert math.isfinite(metrics["loss"]) and metrics["approx_kl"] >= 0
    for name in ("train", "test"):
        result = records.read_json(exp / "round_001" / "eval" / f"{name}.json")
        assert math.isfinite(result["clipscore_mean"]) and result["reward_queries"] > 0

    before = _snapshot(exp)
    again = run_driver(tmp_path, **run)
    assert _snapshot(exp) == before, "a rerun rewrites nothing"
    assert "all 2 rounds finished" in again.stdout

    base = _stock_image(TINY_DIRS[backbone])
    tuned = _stock_image(TINY_DIRS[backbone], exp / "round_001" / "lora")
    assert base.shape == tuned.shape and abs(tuned - base).max() > 1 / 255, (
        "the LoRA changes the stock pipeline's pixels"
    )


def test_sdxl_gradient_is_the_same_chunked_and_checkpointed(sdxl_dir):
    """On the tiny SDXL UNet (LoRA attached): the PPO gradient of 6 (trajectory, timestep) pairs is the
    same whatever train.forward_chunk, and with gradient checkpointing (the memory levers of 1024 px)."""
    from b2diffurl import backbones
    from b2diffurl.models import attach_lora, load_pipeline
    from b2diffurl.objectives import make_objective
    from b2diffurl.policy import Policy, backward_batch
    from config.stage_process import get_config

    config = get_config("tiny")
    pipeline = load_pipeline(sdxl_dir)
    params = attach_lora(pipeline.unet, 4, config.lora.target_modules)
    with torch.no_grad():  # a LoRA away from zero, so the ratios differ from 1 and every factor has a gradient
        for p in params:
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    pipeline.scheduler.set_timesteps(config.sample.num_steps)
    g = torch.Generator().manual_seed(0)
    m = 6
    latents, next_latents = torch.randn(m, 4, 16, 16, generator=g), torch.randn(m, 4, 16, 16, generator=g)
    timesteps = pipeline.scheduler.timesteps[torch.arange(m) % config.sample.num_steps]
    pairs = (latents, next_latents, timesteps, torch.full((m,), -1.5), torch.arange(m) % 3)
    embeds = backbones.encode_prompts(pipeline, ["a red circle", "two blue squares", "a green triangle"])
    policy = Policy(pipeline.unet, pipeline.scheduler, backbones.negative_conditioning(pipeline), 5.0, 1.0)
    objective = make_objective(config.train)
    pipeline.unet.train()

    def gradient(chunk):
        for p in params:
            p.grad = None
        backward_batch(
            policy,
            pairs,
            embeds,
            torch.tensor([1.0, -0.5, 2.0]),
            objective,
            0.1,
            chunk,
            1.0,
            lambda loss: loss.backward(),
        )
        return torch.cat([p.grad.flatten() for p in params])

    whole = gradient(1000)
    assert whole.abs().max() > 0
    tolerance = dict(atol=1e-5 * whole.abs().max().item(), rtol=1e-4)  # float summation order only
    torch.testing.assert_close(gradient(1), whole, **tolerance)
    pipeline.unet.enable_gradient_checkpointing()
    assert pipeline.unet.is_gradient_checkpointing
    torch.testing.assert_close(gradient(2), whole, **tolerance)


@pytest.mark.slow
@pytest.mark.bench
def test_the_benchmark_runs_sdxl_on_the_cpu(tmp_path):
    """python -m b2diffurl.bench --small --backbone sdxl: SDXL base's networks (random weights, 2.6 B
    UNet parameters) through the three stage scripts at 64 x 64 pixels on the CPU (about 14 GB of RAM)."""
    import json
    import subprocess
    import sys

    from conftest import REPO

    proc = subprocess.run(
        [sys.executable, "-m", "b2diffurl.bench", "--small", "--backbone", "sdxl", "--workdir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "SDXL base's UNet / VAE / ViT-L/14 and OpenCLIP ViT-bigG text encoders" in proc.stdout
    result = json.loads((tmp_path / "bench_sdxl_small.json").read_text())
    assert result["setting"]["backbone"] == "sdxl"
    for stage in ("sample", "select", "train"):
        assert result["stages"][stage]["seconds"] > 0 and result["analysis"]["rows"][stage]["efficiency"] > 0
    assert result["stages"]["train"]["marker"]["first_step_max_ratio_deviation"] < 1e-5
    disk = result["analysis"]["disk"]
    assert disk["measured_tensor_bytes"] == disk["predicted_tensor_bytes"] > 0
