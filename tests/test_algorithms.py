"""DPOK, DPO and the partial-step choice inside the trainer, on the tiny pipeline: one-step directions,
the KL to the base model, pair formation, optimizer step counts."""

import copy
import os
import shutil

import pytest
import torch

from b2diffurl import records
from b2diffurl.backbones import encode_prompts
from b2diffurl.layout import round_dir
from b2diffurl.models import load_lora, load_policy
from b2diffurl.objectives import contrastive_pairs, make_objective
from b2diffurl.optimizer_state import make_optimizer, trainable_parameters
from b2diffurl.policy import Policy, backward_batch
from b2diffurl.rewards import build_reward
from b2diffurl.sampler import sample_round
from b2diffurl.selection import select_round
from b2diffurl.train_batches import interval_pairs
from b2diffurl.trainer import train_round


@pytest.fixture(scope="module")
def accelerator():
    from accelerate import Accelerator

    return Accelerator(cpu=True)


@pytest.fixture(scope="module")
def sampled_round(tiny_dir, tmp_path_factory, accelerator):
    """(config, round folder) of one sampled and selected tiny round (3 branches, thresholds +-0.5)."""
    from b2diffurl.tiny import tiny_clip_paths
    from config.stage_process import REPO_ROOT, get_config

    config = get_config("tiny")
    config.pretrained.model, config.pretrained.build_tiny = tiny_dir, False
    config.reward.clip_model, config.reward.clip_pretrained = tiny_clip_paths(tiny_dir)
    config.save_path = str(tmp_path_factory.mktemp("algorithms"))
    config.prompt_file = os.path.join(REPO_ROOT, config.prompt_file)
    out = round_dir(config)
    sample_round(config, accelerator, load_policy(config, "cpu"))
    select_round(config, build_reward(config.reward, "cpu"), out, os.path.dirname(out))
    return config, out


def fresh_copy(config, out, name):
    """A copy of the sampled round under another experiment name, so each test trains its own."""
    config = copy.deepcopy(config)
    config.exp_name = name
    target = round_dir(config)
    shutil.copytree(out, target)
    return config, target


def policy_for(config, pipeline):
    pipeline.scheduler.set_timesteps(config.sample.num_steps)
    return Policy(
        pipeline.unet,
        pipeline.scheduler,
        encode_prompts(pipeline, [""]),
        config.sample.guidance_scale,
        config.sample.eta,
    )


def selected_of(out):
    tensors, _ = records.read_verified_tensors(out, "select", "selected.safetensors")
    return records.trajectories_from_tensors(tensors)


def test_dpo_step_raises_the_winners_log_prob_margin(sampled_round):
    config, out = sampled_round
    selected, extra = selected_of(out)
    w, lose = contrastive_pairs(selected.group_ids, extra["normalised"])
    assert len(w) >= 2, "the round has contrastive pairs"
    rows = torch.stack([w[:2], lose[:2]], dim=1).flatten()  # [w0, l0, w1, l1]
    batch = selected.select(rows)
    pipeline = load_policy(config, "cpu")
    policy = policy_for(config, pipeline)
    manifest = records.read_json(os.path.join(out, "samples", "manifest.json"))
    embeds = encode_prompts(pipeline, manifest["prompt_list"])[batch.prompt_ids]
    pairs = interval_pairs(batch, torch.Generator().manual_seed(0), tie=2)

    def margin():
        with torch.no_grad():
            lp = policy.step(pairs[0], pairs[1], pairs[2], embeds[pairs[4]])[0]
        return (lp[0::2] - lp[1::2]).sum().item()

    train = copy.deepcopy(config.train)
    train.algorithm, train.learning_rate = "dpo", 1e-3
    params = [p for _, p in trainable_parameters(pipeline.unet)]
    optimizer = make_optimizer(params, train)
    before = margin()
    stats = backward_batch(
        policy, pairs, embeds, torch.zeros(4), make_objective(train), train.eps, 8, 1.0, lambda loss: loss.backward()
    )
    assert stats["loss"] / stats["pairs"] == pytest.approx(0.6931, abs=1e-3), (
        "at the sampling policy the DPO loss is log 2"
    )
    optimizer.step()
    assert margin() > before + 1e-4, "one DPO step raises log p(w) - log p(l)"


def test_dpo_against_the_base_model_has_zero_margin_at_a_zero_lora(sampled_round):
    """dpo_reference=base (D3PO): p_ref is the frozen base UNet, so a zero LoRA (B = 0) is the reference
    itself and every margin is exactly 0, whatever the latents; a non-zero LoRA moves it."""
    from b2diffurl.objectives import dpo_margin

    config, out = sampled_round
    selected, extra = selected_of(out)
    w, lose = contrastive_pairs(selected.group_ids, extra["normalised"])
    batch = selected.select(torch.stack([w[:2], lose[:2]], dim=1).flatten())
    pipeline = load_policy(config, "cpu")
    policy = policy_for(config, pipeline)
    manifest = records.read_json(os.path.join(out, "samples", "manifest.json"))
    embeds = encode_prompts(pipeline, manifest["prompt_list"])[batch.prompt_ids]
    x, x_next, t, _, rows = interval_pairs(batch, torch.Generator().manual_seed(0), tie=2)

    def margins():
        with torch.no_grad():
            log_probs, mean, std = policy.step(x, x_next, t, embeds[rows])
            reference = policy.reference(x, x_next, t, embeds[rows], mean, std)
        return dpo_margin(log_probs[0::2], reference.log_probs[0::2], log_probs[1::2], reference.log_probs[1::2])

    assert len(w) >= 2 and margins().abs().max().item() == 0.0, "a zero LoRA is the base model: margin 0"
    lora_b = [p for n, p in trainable_parameters(pipeline.unet) if "lora_B" in n]
    with torch.no_grad():
        for i, p in enumerate(lora_b):
            p.copy_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(i)))
    assert margins().abs().max().item() > 1e-4, "a non-zero LoRA moves the margin away from 0"


def test_dpok_kl_is_zero_without_lora_and_grows_with_it(sampled_round):
    config, out = sampled_round
    selected, _ = selected_of(out)
    batch = selected.select(torch.arange(3))
    pipeline = load_policy(config, "cpu")
    policy = policy_for(config, pipeline)
    manifest = records.read_json(os.path.join(out, "samples", "manifest.json"))
    embeds = encode_prompts(pipeline, manifest["prompt_list"])[batch.prompt_ids]
    x, x_next, t, _, rows = interval_pairs(batch, torch.Generator().manual_seed(0))
    from b2diffurl.objectives import gaussian_kl

    def kl():
        with torch.no_grad():
            _, mean, std = policy.step(x, x_next, t, embeds[rows])
            return gaussian_kl(mean, policy.reference_mean(x, t, embeds[rows]), std).mean().item()

    assert kl() == 0.0, "a zero LoRA (B = 0) is the base model"
    lora_b = [p for n, p in trainable_parameters(pipeline.unet) if "lora_B" in n]
    direction = [torch.randn(p.shape, generator=torch.Generator().manual_seed(i)) for i, p in enumerate(lora_b)]
    values = []
    for scale in (0.01, 0.1, 1.0):
        with torch.no_grad():
            for p, d in zip(lora_b, direction):
                p.copy_(scale * d)
        values.append(kl())
    assert 0 < values[0] < values[1] < values[2], values
    assert values[1] / values[0] == pytest.approx(100, rel=0.2), "KL grows as the square of a small LoRA"


def test_dpo_round_trains_on_pairs_and_reports_the_unpaired(sampled_round, accelerator):
    config, out = fresh_copy(*sampled_round, "dpo_round")
    config.train.algorithm = "dpo"
    selected, extra = selected_of(out)
    w, _ = contrastive_pairs(selected.group_ids, extra["normalised"])
    metrics = train_round(config, accelerator, load_policy(config, "cpu"), out)
    assert metrics.extra["dpo_pairs"] == len(w) > 0
    assert metrics.extra["dpo_unpaired"] == len(selected) - 2 * len(w)
    assert metrics.trajectories_used == 2 * len(w) * config.train.num_epochs
    assert metrics.optimizer_steps > 0 and metrics.first_step_max_ratio_deviation < 1e-5


def test_dpok_round_reports_its_kl(sampled_round, accelerator):
    """kl_reference is the mean over every trained (trajectory, step) pair of ||mu_theta - mu_base||^2 /
    (2 sigma^2), at the LoRA of the moment. Crafted so that one optimizer step comes after all batches but
    the last (2 epochs, gradient_accumulation_steps = 2 B - 1) and the last, partial one is dropped: every
    pair before the step has the zero LoRA (KL 0), and the last batch's pairs have the round's final
    LoRA, so the reported value is recomputed from the saved LoRA on that batch's trajectories alone."""
    from b2diffurl.backbones import negative_conditioning
    from b2diffurl.objectives import gaussian_kl
    from b2diffurl.train_batches import batch_starts, epoch_share

    config, out = fresh_copy(*sampled_round, "dpok_round")
    selected, _ = selected_of(out)
    n, k = selected.log_probs.shape
    starts = batch_starts(n, config.train.batch_size, config.train.partial_batch)
    assert len(starts) >= 2, "the crafted round has several batches per epoch"
    config.train.algorithm, config.train.num_epochs, config.train.partial_step = "dpok", 2, "drop"
    config.train.gradient_accumulation_steps = 2 * len(starts) - 1
    metrics = train_round(config, accelerator, load_policy(config, "cpu"), out)
    assert metrics.optimizer_steps == 1 and metrics.dropped_batches == 1 and metrics.pairs == 2 * n * k

    pipeline = load_policy(config, "cpu")
    load_lora(pipeline.unet, os.path.join(out, "lora"))
    pipeline.scheduler.set_timesteps(config.sample.num_steps)
    policy = Policy(
        pipeline.unet,
        pipeline.scheduler,
        negative_conditioning(pipeline),
        config.sample.guidance_scale,
        config.sample.eta,
    )
    last = epoch_share(n, 1, 0, config.seed, 1)[starts[-1] : starts[-1] + config.train.batch_size]
    batch = selected.select(last)  # the round's last batch: trained on at the final LoRA
    manifest = records.read_json(os.path.join(out, "samples", "manifest.json"))
    embeds = encode_prompts(pipeline, manifest["prompt_list"])[batch.prompt_ids]
    x, x_next, t, _, rows = interval_pairs(batch, torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, mean, std = policy.step(x, x_next, t, embeds[rows])
        kl = gaussian_kl(mean, policy.reference_mean(x, t, embeds[rows]), std)
    expected = kl.double().sum().item() / metrics.pairs
    assert expected > 0, "the step moved the LoRA away from the base model"
    assert metrics.extra["kl_reference"] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("partial_step", ["scale", "drop"])
def test_partial_step_choice(sampled_round, accelerator, partial_step):
    config, out = fresh_copy(*sampled_round, f"partial_{partial_step}")
    config.train.partial_step = partial_step
    config.train.gradient_accumulation_steps = 3
    n = selected_of(out)[0].log_probs.shape[0]
    batches = -(-n // config.train.batch_size) * config.train.num_epochs
    full, remainder = divmod(batches, 3)
    assert remainder, "the crafted round ends in a partial accumulation"
    metrics = train_round(config, accelerator, load_policy(config, "cpu"), out)
    if partial_step == "scale":
        assert metrics.optimizer_steps == full + 1 and metrics.dropped_batches == 0
    else:
        assert metrics.optimizer_steps == full and metrics.dropped_batches == remainder


def test_drop_makes_no_update_when_a_round_has_less_than_one_step(sampled_round, accelerator):
    config, out = fresh_copy(*sampled_round, "partial_none")
    config.train.partial_step, config.train.gradient_accumulation_steps = "drop", 10_000
    metrics = train_round(config, accelerator, load_policy(config, "cpu"), out)
    assert metrics.optimizer_steps == 0
    pipeline = load_policy(config, "cpu")
    load_lora(pipeline.unet, os.path.join(out, "lora"))
    assert all(p.abs().sum() == 0 for n, p in trainable_parameters(pipeline.unet) if "lora_B" in n), "no update at all"


@pytest.mark.parametrize("partial_batch", ["weight", "drop"])
def test_a_short_last_batch_counts_for_its_size(sampled_round, accelerator, partial_batch):
    """One epoch, one optimizer step over batches of sizes (b, ..., b, r), r < b: the step's gradient is the
    mean over the pairs of every trajectory it used (a short batch weighs r / b of a full one, not 1), or,
    with "drop" (the official trainer), over the full batches only. Compared by its norm (metrics
    grad_norm: before clipping) with one backward over those trajectories at once."""
    from b2diffurl.train_batches import epoch_share

    config, out = fresh_copy(*sampled_round, f"short_{partial_batch}")
    selected, extra = selected_of(out)
    n = len(selected)
    config.train.batch_size = next(b for b in range(2, n) if n % b)
    assert n % config.train.batch_size, "the crafted round ends in a short batch"
    config.train.num_epochs, config.train.gradient_accumulation_steps = 1, 10_000
    config.train.partial_batch = partial_batch
    metrics = train_round(config, accelerator, load_policy(config, "cpu"), out)
    used = n if partial_batch == "weight" else n - n % config.train.batch_size
    assert metrics.optimizer_steps == 1 and metrics.trajectories_used == used

    rows = epoch_share(n, 1, 0, config.seed, 0)[:used]  # the trajectories the epoch trained on
    pipeline = load_policy(config, "cpu")
    policy = policy_for(config, pipeline)
    manifest = records.read_json(os.path.join(out, "samples", "manifest.json"))
    batch = selected.select(rows)
    embeds = encode_prompts(pipeline, manifest["prompt_list"])[batch.prompt_ids]
    from b2diffurl.objectives import advantages_from_scores

    advantages = advantages_from_scores(
        extra["normalised"].float(), config.train.adv_clip_max, config.train.beta1, config.train.beta2
    )[rows]
    params = [p for _, p in trainable_parameters(pipeline.unet)]
    pipeline.unet.train()
    backward_batch(
        policy,
        interval_pairs(batch, torch.Generator().manual_seed(0)),
        embeds,
        advantages,
        make_objective(config.train),
        config.train.eps,
        64,
        1.0,
        lambda loss: loss.backward(),
    )
    expected = torch.cat([p.grad.flatten() for p in params]).norm().item()
    assert metrics.grad_norm == pytest.approx(expected, rel=1e-4)
