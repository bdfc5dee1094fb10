"""The DDIM step with log-prob against diffusers' DDIMScheduler.step and the Gaussian density."""

import pytest
import torch
from diffusers import DDIMScheduler

from b2diffurl.ddim import ddim_step_with_logprob, step_mean_std
from b2diffurl.tiny import SD14_SCHEDULER


@pytest.fixture
def scheduler():
    s = DDIMScheduler(**{k: v for k, v in SD14_SCHEDULER.items() if k != "skip_prk_steps"})
    s.set_timesteps(20)
    return s


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


def test_log_prob_is_the_gaussian_density(scheduler):
    t = int(scheduler.timesteps[10])
    sample, eps = _inputs(1)
    prev, log_prob, _ = ddim_step_with_logprob(scheduler, eps, t, sample, 1.0, generator=torch.Generator().manual_seed(3))
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
        _, single, x0 = ddim_step_with_logprob(scheduler, eps[row:row + 1], t, sample[row:row + 1], 1.0, prev_sample=prev[row:row + 1])
        torch.testing.assert_close(batched[row:row + 1], single, atol=1e-6, rtol=0)
        torch.testing.assert_close(x0_batched[row:row + 1], x0, atol=1e-6, rtol=0)


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
