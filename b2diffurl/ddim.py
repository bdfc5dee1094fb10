"""The DDIM step as a Gaussian policy: x_{t-1} ~ N(mu_theta(x_t, t, c), sigma_t^2 I), with its log-prob.

Same update as diffusers' ``DDIMScheduler.step`` (``prediction_type`` epsilon (SD v1.x), v_prediction
(SD 2.x at 768 px) or sample; the scheduler config's ``clip_sample``/``clip_sample_range``,
``set_alpha_to_one``, ``timestep_spacing`` leading or trailing (through ``set_timesteps``: the step
goes from t to t - num_train_timesteps // num_inference_steps, as diffusers' does for every spacing) and
``rescale_betas_zero_snr`` (through ``alphas_cumprod``) followed as diffusers does; dynamic
``thresholding``, set_alpha_to_one=True, linspace spacing (its last step is deterministic) and
zero-SNR betas with epsilon prediction refused at load by
:func:`check_scheduler_config`), changed in three ways so RL can use it:
- ``timestep`` may be a tensor with one timestep per row (a batch of mixed timesteps);
- it returns log p(x_{t-1} | x_t, c), the mean over latent elements of the Gaussian log-density;
- given ``prev_sample`` it returns that sample's log-prob instead of drawing one (for training).
The math runs in fp32 whatever the UNet's dtype.
"""

import math

import torch

# what the UNet predicts (the scheduler config's prediction_type), each turned into (x_0, eps) by
# :func:`x0_and_eps`
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def x0_and_eps(prediction_type, model_output, sample, alpha_prod_t):
    """(x_0, eps) from what the UNet predicted, as diffusers' DDIMScheduler.step computes them.

    model_output, sample (x_t): [B, C, H, W] fp32; alpha_prod_t: [B, 1, 1, 1] (alpha-bar at t).
    epsilon: eps = out, x_0 = (x_t - sqrt(1 - a) eps) / sqrt(a);
    v_prediction (v = sqrt(a) eps - sqrt(1 - a) x_0): x_0 = sqrt(a) x_t - sqrt(1 - a) v,
        eps = sqrt(a) v + sqrt(1 - a) x_t;
    sample: x_0 = out, eps = (x_t - sqrt(a) x_0) / sqrt(1 - a).
    """
    a, b = alpha_prod_t.sqrt(), (1 - alpha_prod_t).sqrt()
    if prediction_type == "epsilon":
        return (sample - b * model_output) / a, model_output
    if prediction_type == "v_prediction":
        return a * sample - b * model_output, a * model_output + b * sample
    if prediction_type == "sample":
        return model_output, (sample - a * model_output) / b
    raise ValueError(f"prediction_type={prediction_type!r} is not one of {', '.join(PREDICTION_TYPES)}")


def scheduler_problem(scheduler_config):
    """Why the DDIM policy step cannot follow this scheduler config (text for an error), or None.

    scheduler_config: a diffusers scheduler config (``scheduler.config``, a dict-like FrozenDict).
    """
    prediction_type = scheduler_config.get("prediction_type", "epsilon")
    if prediction_type not in PREDICTION_TYPES:
        return (
            f"has prediction_type={prediction_type!r} in its scheduler config, which the DDIM policy step does not "
            "support: "
            f"use a checkpoint that predicts one of {', '.join(PREDICTION_TYPES)}"
        )
    if scheduler_config.get("rescale_betas_zero_snr", False) and prediction_type == "epsilon":
        return (
            "has rescale_betas_zero_snr=True with prediction_type='epsilon' in its scheduler config: at zero SNR the "
            "first "
            "step's x_0 = (x_T - sqrt(1 - alpha) eps) / sqrt(alpha) divides by zero, which the DDIM policy step does "
            "not "
            "support: zero-SNR checkpoints predict v (prediction_type 'v_prediction')"
        )
    if scheduler_config.get("timestep_spacing", "leading") == "linspace":
        return (
            "has timestep_spacing='linspace' in its scheduler config: its last step starts at t = 0 and ends at "
            "alpha-bar(0) "
            "itself, a deterministic step (sigma_t = 0) with no log-prob for the policy, which the DDIM policy step "
            "does not "
            "support: use 'leading' (SD v1.x, SD 2.x) or 'trailing'"
        )
    if scheduler_config.get("thresholding", False):
        return (
            "has thresholding=True (dynamic thresholding) in its scheduler config, which the DDIM policy step does not "
            "support: "
            "use a checkpoint without dynamic thresholding (thresholding false in scheduler/scheduler_config.json)"
        )
    return None


def check_scheduler_config(scheduler_config, model):
    """Refuse, before sampling or training, a scheduler config the DDIM policy step cannot follow.

    scheduler_config: the pipeline's (DDIM) scheduler config. model: ``config.pretrained.model``, named
    in the error. Raises a one-line ConfigError (``pretrained.model='...' has thresholding=True ...``).
    Besides :func:`scheduler_problem`, ``set_alpha_to_one=True`` is refused: the last step then goes to
    alpha = 1, its sigma_t is 0 and x_0 has no density (its log-prob is NaN).
    """
    problem = scheduler_problem(scheduler_config)
    if problem is None and scheduler_config.get("set_alpha_to_one", False):
        problem = (
            "has set_alpha_to_one=True in its scheduler config: the last DDIM step is then deterministic (sigma_t = 0) "
            "and has no log-prob for the policy: use set_alpha_to_one false in scheduler/scheduler_config.json (as SD "
            "v1.4)"
        )
    if problem is not None:
        from b2diffurl.errors import ConfigError

        raise ConfigError("pretrained.model", model, problem)


def step_coefficients(scheduler, timestep, batch_size, ndim, device):
    """alpha_prod_t, alpha_prod_t_prev, sigma_t (before eta) of a DDIM step, each [B, 1, 1, 1].

    timestep: int or Tensor[B] of training timesteps (951, 901, ... for 20 steps of SD v1.4).
    """
    timestep = torch.as_tensor(timestep, device=device, dtype=torch.long).reshape(-1).expand(batch_size)
    step_size = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    prev_timestep = timestep - step_size
    alphas_cumprod = scheduler.alphas_cumprod.to(device=device, dtype=torch.float64)
    final = torch.as_tensor(scheduler.final_alpha_cumprod, dtype=torch.float64, device=device)
    alpha_prod_t = alphas_cumprod.gather(0, timestep).reshape(batch_size, *([1] * (ndim - 1)))
    alpha_prod_prev = torch.where(
        prev_timestep >= 0, alphas_cumprod.gather(0, prev_timestep.clamp(min=0)), final
    ).reshape(alpha_prod_t.shape)
    variance = (1 - alpha_prod_prev) / (1 - alpha_prod_t) * (1 - alpha_prod_t / alpha_prod_prev)
    return alpha_prod_t.float(), alpha_prod_prev.float(), variance.sqrt().float()


def gaussian_log_prob(x, mean, std):
    """Mean over all but the first dim of log N(x; mean, std^2). x, mean: [B, ...]; std: [B, 1, ...] -> [B]."""
    log_density = -((x - mean) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return log_density.mean(dim=tuple(range(1, x.ndim)))


def ddim_step_with_logprob(
    scheduler, model_output, timestep, sample, eta, prev_sample=None, generator=None, round_to=None
):
    """One DDIM step x_t -> x_{t-1} with the log-prob of x_{t-1}.

    scheduler: a DDIMScheduler after ``set_timesteps`` (no dynamic thresholding).
    model_output: the UNet's prediction after CFG (eps, v or x_0: the config's prediction_type), [B, C, H, W].
    sample: x_t, [B, C, H, W].
    timestep: int, or LongTensor[B] (one timestep per row).
    eta: > 0 (the step must be stochastic to have a density).
    prev_sample: x_{t-1} [B, C, H, W] to score; drawn with ``generator`` (CPU generator: noise is
        drawn on the CPU, so a seed gives the same sample on any device) when None.
    round_to: a torch dtype (fp16, bf16) the drawn x_{t-1} is rounded to (and returned in fp32) before
        its log-prob is taken, so a latent stored in that dtype has exactly the recorded log-prob.
    Returns (prev_sample [B, C, H, W] fp32, log_prob [B] fp32, pred_original_sample [B, C, H, W] fp32).
    """
    if eta <= 0:
        raise ValueError(f"eta={eta} gives a deterministic step with no log-prob; use eta > 0")
    mean, std, pred_original_sample = step_mean_std(scheduler, model_output, timestep, sample, eta)
    if prev_sample is None:
        device = "cpu" if generator is None else generator.device
        noise = torch.randn(sample.shape, generator=generator, dtype=torch.float32, device=device)
        prev_sample = mean + std * noise.to(sample.device)
        if round_to is not None:
            prev_sample = prev_sample.to(round_to).float()
    else:
        prev_sample = prev_sample.float()
    log_prob = gaussian_log_prob(prev_sample.detach(), mean, std)
    return prev_sample, log_prob, pred_original_sample


def step_mean_std(scheduler, model_output, timestep, sample, eta):
    """Mean and std of the DDIM step's Gaussian, and the predicted x_0.

    x0_hat and eps come from the prediction (:func:`x0_and_eps`); x0_hat is clamped to
    [-clip_sample_range, clip_sample_range] when the scheduler config has ``clip_sample`` (as diffusers
    does); the direction term keeps the predicted eps (diffusers' ``use_clipped_model_output=False``).
    Returns (mu [B, C, H, W], sigma_t * eta [B, 1, 1, 1], x0_hat [B, C, H, W]), all fp32.
    """
    if (problem := scheduler_problem(scheduler.config)) is not None:
        raise ValueError(f"the scheduler {problem}")
    alpha_prod_t, alpha_prod_prev, sigma = step_coefficients(
        scheduler, timestep, sample.shape[0], sample.ndim, sample.device
    )
    std = eta * sigma
    pred_original_sample, eps = x0_and_eps(
        scheduler.config.get("prediction_type", "epsilon"), model_output.float(), sample.float(), alpha_prod_t
    )
    if scheduler.config.get("clip_sample", False):
        limit = scheduler.config.clip_sample_range
        pred_original_sample = pred_original_sample.clamp(-limit, limit)
    # at zero SNR (alpha_prod_t = 0, eta = 1) the direction's weight is 0 up to rounding: never below it
    mean = alpha_prod_prev.sqrt() * pred_original_sample + (1 - alpha_prod_prev - std**2).clamp(min=0).sqrt() * eps
    return mean, std, pred_original_sample
