"""The DDIM step with log-prob against diffusers' DDIMScheduler.step and the Gaussian density."""

import json
import os
import shutil

import pytest
import torch
from conftest import error_lines, run_stage
from diffusers import DDIMScheduler

from b2diffurl.ddim import check_scheduler_config, ddim_step_with_logprob, step_mean_std
from b2diffurl.errors import ConfigError
from b2diffurl.tiny import SD14_SCHEDULER


def make_scheduler(**overrides):
    """SD v1.4's scheduler as DDIM (20 steps), with scheduler config fields changed by ``overrides``."""
    s = DDIMScheduler(**{**{k: v for k, v in SD14_SCHEDULER.items() if k != "skip_prk_steps"}, **overrides})
    s.set_timesteps(20)
    return s


@pytest.fixture
def scheduler():
    return make_scheduler()


def _inputs(seed, batch=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, 8, 8, generator=g), torch.randn(batch, 4, 8, 8, generator=g)


@pytest.mark.parametrize("eta", [1.0, 0.5])
@pytest.mark.parametrize("index", [0, 7, 19])
def test_matches_diffusers_mean_and_std(scheduler, eta, index):
    t = int(scheduler.timesteps[index])
    sample, eps = _inputs(index)
    noise = torch.randn(sample.shape, generator=torch.Generator().manual_seed(99))
    # diffusers: prev = mean + std * noise; with noise = 0 it gives the mean.
    ref_mean = scheduler.step(eps, t, sample, eta=eta, variance_noise=torch.zeros_like(sample)).prev_sample
    ref_prev = scheduler.step(eps, t, sample, eta=eta, variance_noise=noise).prev_sample
    ref_std = ((ref_prev - ref_mean) / noise).mean()

    mean, std, _ = step_mean_std(scheduler, eps, t, sample, eta)
    torch.testing.assert_close(mean, ref_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(std.flatten(), ref_std.expand(3), atol=1e-6, rtol=1e-4)

    prev, _, _ = ddim_step_with_logprob(scheduler, eps, t, sample, eta, generator=torch.Generator().manual_seed(99))
    torch.testing.assert_close(prev, ref_prev, atol=1e-5, rtol=1e-5)


# SD 2.x (768 px) predicts v; zero-SNR checkpoints rescale the betas and space the steps "trailing"
SCHEDULER_VARIANTS = {
    "v_prediction": {"prediction_type": "v_prediction"},
    "sample": {"prediction_type": "sample"},
    "trailing": {"timestep_spacing": "trailing"},
    "zero_snr_v": {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"},
    "clip_sample_v": {"prediction_type": "v_prediction", "clip_sample": True, "clip_sample_range": 1.0},
}


@pytest.mark.parametrize("variant", sorted(SCHEDULER_VARIANTS))
def test_other_predictions_and_spacings_match_diffusers(variant):
    """Every step of 20, with what the UNet predicts (v, x_0) and the timestep spacings and zero-SNR
    betas of newer checkpoints: the same mean and std as DDIMScheduler.step (eta 1), and the log-prob
    of diffusers' sample under diffusers' own Gaussian."""
    scheduler = make_scheduler(**SCHEDULER_VARIANTS[variant])
    check_scheduler_config(scheduler.config, "/models/sd2")  # accepted at load
    for index, t in enumerate(scheduler.timesteps.tolist()):
        sample, out = _inputs(100 + index)
        noise = torch.randn(sample.shape, generator=torch.Generator().manual_seed(index))
        step = scheduler.step(out, t, sample, eta=1.0, variance_noise=torch.zeros_like(sample))
        ref_mean = step.prev_sample
        ref_prev = scheduler.step(out, t, sample, eta=1.0, variance_noise=noise).prev_sample
        mean, std, _ = step_mean_std(scheduler, out, t, sample, 1.0)
        if scheduler.alphas_cumprod[t] == 0:
            # at zero SNR (alpha-bar 0 at t = 999) sigma^2 = 1 - a_prev, so the direction's weight
            # sqrt(1 - a_prev - sigma^2) is exactly 0. diffusers' float32 leaves the rounding under the root,
            # a few 1e-8 of either sign depending on the CPU: positive, it moves the mean by up to 1e-3;
            # negative, the step is NaN. The reference is diffusers' own x_0 with that weight at its 0.
            a_prev = scheduler.alphas_cumprod[t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps]
            ref_mean = a_prev.sqrt() * step.pred_original_sample
            ref_prev = ref_mean + (1 - a_prev).sqrt() * noise
        atol = 2e-5
        torch.testing.assert_close(mean, ref_mean, atol=atol, rtol=1e-5)
        torch.testing.assert_close(mean + std * noise, ref_prev, atol=atol, rtol=1e-5)
        _, log_prob, _ = ddim_step_with_logprob(scheduler, out, t, sample, 1.0, prev_sample=ref_prev)
        # the log-prob is the density of diffusers' own step: its mean, its std (read off its noise)
        ref_std = ((ref_prev - ref_mean) / noise).mean()
        expected = torch.distributions.Normal(ref_mean, ref_std).log_prob(ref_prev).mean(dim=(1, 2, 3))
        torch.testing.assert_close(log_prob, expected, atol=1e-3 if atol > 1e-4 else 1e-4, rtol=1e-5)
        assert torch.isfinite(log_prob).all(), (variant, t)


def test_log_prob_is_the_gaussian_density(scheduler):
    t = int(scheduler.timesteps[10])
    sample, eps = _inputs(1)
    prev, log_prob, _ = ddim_step_with_logprob(
        scheduler, eps, t, sample, 1.0, generator=torch.Generator().manual_seed(3)
    )
    mean, std, _ = step_mean_std(scheduler, eps, t, sample, 1.0)
    expected = torch.distributions.Normal(mean, std.expand_as(mean)).log_prob(prev).mean(dim=(1, 2, 3))
    torch.testing.assert_close(log_prob, expected, atol=1e-5, rtol=1e-6)
    # A given prev_sample is scored, not replaced.
    again, log_prob2, _ = ddim_step_with_logprob(scheduler, eps, t, sample, 1.0, prev_sample=prev)
    assert torch.equal(again, prev)
    torch.testing.assert_close(log_prob2, log_prob)
    # The mean is the most likely point: its log-prob is higher than the sample's.
    _, at_mean, _ = ddim_step_with_logprob(scheduler, eps, t, sample, 1.0, prev_sample=mean)
    assert (at_mean > log_prob).all()


def test_batch_of_mixed_timesteps_equals_row_by_row(scheduler):
    sample, eps = _inputs(5, batch=4)
    timesteps = scheduler.timesteps[[0, 5, 12, 19]]
    prev = torch.randn(sample.shape, generator=torch.Generator().manual_seed(4))
    _, batched, x0_batched = ddim_step_with_logprob(scheduler, eps, timesteps, sample, 1.0, prev_sample=prev)
    for row, t in enumerate(timesteps.tolist()):
        _, single, x0 = ddim_step_with_logprob(
            scheduler, eps[row : row + 1], t, sample[row : row + 1], 1.0, prev_sample=prev[row : row + 1]
        )
        torch.testing.assert_close(batched[row : row + 1], single, atol=1e-6, rtol=0)
        torch.testing.assert_close(x0_batched[row : row + 1], x0, atol=1e-6, rtol=0)


def test_gradient_flows_through_the_mean_only(scheduler):
    sample, eps = _inputs(2)
    eps.requires_grad_(True)
    prev = torch.randn_like(sample)
    _, log_prob, _ = ddim_step_with_logprob(scheduler, eps, int(scheduler.timesteps[3]), sample, 1.0, prev_sample=prev)
    log_prob.sum().backward()
    assert eps.grad is not None and eps.grad.abs().sum() > 0


def test_rejects_deterministic_eta(scheduler):
    sample, eps = _inputs(0)
    with pytest.raises(ValueError, match="eta=0"):
        ddim_step_with_logprob(scheduler, eps, int(scheduler.timesteps[0]), sample, 0.0)


# ---------------------------------------------------------------- scheduler config fields


def _diffusers_mean(scheduler, eps, t, sample, eta=1.0):
    """diffusers' step mean: its prev_sample with zero variance noise."""
    return scheduler.step(eps, t, sample, eta=eta, variance_noise=torch.zeros_like(sample)).prev_sample


@pytest.mark.parametrize("set_alpha_to_one", [True, False])
def test_final_step_follows_set_alpha_to_one(set_alpha_to_one):
    scheduler = make_scheduler(set_alpha_to_one=set_alpha_to_one)
    t = int(scheduler.timesteps[-1])  # t = 1: its previous timestep is < 0, so alpha_prod_prev = final_alpha_cumprod
    assert t - 1000 // 20 < 0 and scheduler.final_alpha_cumprod.item() == (
        1.0 if set_alpha_to_one else scheduler.alphas_cumprod[0].item()
    )
    sample, eps = _inputs(11)
    mean, std, _ = step_mean_std(scheduler, eps, t, sample, 1.0)
    torch.testing.assert_close(mean, _diffusers_mean(scheduler, eps, t, sample), atol=1e-5, rtol=1e-5)
    if set_alpha_to_one:  # alpha_prod_prev = 1: sigma_t = 0 and the mean is x0_hat
        assert std.abs().max().item() < 1e-3
    other = make_scheduler(set_alpha_to_one=not set_alpha_to_one)
    assert not torch.allclose(mean, step_mean_std(other, eps, t, sample, 1.0)[0]), "the field changes the final step"


@pytest.mark.parametrize("clip_sample,clip_range", [(True, 1.0), (True, 0.5), (False, 1.0)])
@pytest.mark.parametrize("index", [0, 10, 19])
def test_clip_sample_matches_diffusers(clip_sample, clip_range, index):
    scheduler = make_scheduler(clip_sample=clip_sample, clip_sample_range=clip_range)
    t = int(scheduler.timesteps[index])
    sample, eps = _inputs(20 + index)
    sample = 3 * sample  # x0_hat well outside [-1, 1] at every timestep: clipping changes it
    ref_mean = _diffusers_mean(scheduler, eps, t, sample)
    ref_x0 = scheduler.step(eps, t, sample, eta=1.0, variance_noise=torch.zeros_like(sample)).pred_original_sample

    mean, std, x0 = step_mean_std(scheduler, eps, t, sample, 1.0)
    torch.testing.assert_close(mean, ref_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x0, ref_x0, atol=1e-5, rtol=1e-5)
    unclipped = step_mean_std(make_scheduler(clip_sample=False), eps, t, sample, 1.0)[2]
    assert (unclipped.abs() > clip_range).any()
    assert (x0.abs().max().item() <= clip_range) if clip_sample else torch.equal(x0, unclipped)

    # a fixed x_{t-1} is scored under diffusers' mean
    prev = torch.randn(sample.shape, generator=torch.Generator().manual_seed(5))
    _, log_prob, _ = ddim_step_with_logprob(scheduler, eps, t, sample, 1.0, prev_sample=prev)
    expected = torch.distributions.Normal(ref_mean, std.expand_as(ref_mean)).log_prob(prev).mean(dim=(1, 2, 3))
    torch.testing.assert_close(log_prob, expected, atol=1e-4, rtol=1e-5)


def test_set_alpha_to_one_is_refused_at_load():
    """The step follows set_alpha_to_one=True (above), but its last step then has sigma_t = 0: no density."""
    scheduler = make_scheduler(set_alpha_to_one=True)
    sample, eps = _inputs(12)
    _, log_prob, _ = ddim_step_with_logprob(
        scheduler, eps, int(scheduler.timesteps[-1]), sample, 1.0, generator=torch.Generator().manual_seed(0)
    )
    assert not torch.isfinite(log_prob).any()
    with pytest.raises(ConfigError) as err:
        check_scheduler_config(scheduler.config, "/models/sd")
    message = str(err.value)
    assert "\n" not in message and message.startswith("pretrained.model='/models/sd' has set_alpha_to_one=True")


@pytest.mark.parametrize(
    "field,value,others",
    [
        ("thresholding", True, {}),
        ("prediction_type", "flow", {}),
        ("rescale_betas_zero_snr", True, {"timestep_spacing": "trailing"}),
        ("timestep_spacing", "linspace", {}),
    ],
)
def test_unsupported_scheduler_fields_are_refused(field, value, others):
    scheduler = make_scheduler(**{field: value, **others})
    with pytest.raises(ConfigError) as err:
        check_scheduler_config(scheduler.config, "/models/sd")
    message = str(err.value)
    assert "\n" not in message and message.startswith("pretrained.model='/models/sd' has ")
    assert f"{field}={value!r}" in message and "not support" in message
    sample, eps = _inputs(0)
    with pytest.raises(ValueError, match=field):  # the step itself refuses too, never silently differs
        step_mean_std(scheduler, eps, int(scheduler.timesteps[0]), sample, 1.0)
    check_scheduler_config(make_scheduler().config, "/models/sd")  # SD v1.4's config passes


@pytest.fixture
def thresholding_dir(tiny_dir, tmp_path):
    """A copy of the tiny pipeline whose scheduler config asks for dynamic thresholding."""
    folder = tmp_path / "tiny-thresholding"
    shutil.copytree(tiny_dir, folder)
    path = folder / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "thresholding": True}))
    return str(folder)


def test_load_pipeline_refuses_thresholding(thresholding_dir):
    from b2diffurl.models import load_pipeline

    with pytest.raises(ConfigError) as err:
        load_pipeline(thresholding_dir)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"pretrained.model={thresholding_dir!r}")
    assert "thresholding=True" in message


def test_run_sample_refuses_thresholding_in_one_line(thresholding_dir, tmp_path):
    out = tmp_path / "out"
    proc = run_stage(
        "run_sample.py",
        "--config",
        "config/stage_process.py:tiny",
        "--config.pretrained.model",
        thresholding_dir,
        "--config.pretrained.build_tiny=False",
        "--config.save_path",
        str(out),
        check=False,
    )
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("error: pretrained.model="), proc.stderr[-3000:]
    assert "thresholding=True" in lines[0] and "Traceback" not in proc.stderr
    assert not os.path.exists(out), "no round folder (nothing at all) is written"
