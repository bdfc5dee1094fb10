"""Stage 2 + 3 in process: on-policy ratios, optimizer continuity, LoRA round trip, batching invariance."""

import copy
import os

import conftest
import pytest
import torch

from b2diffurl import records
from b2diffurl.layout import marker_path, round_dir
from b2diffurl.models import load_pipeline, load_policy, lora_state_dict
from b2diffurl.optimizer_state import (
    OPTIMIZER_NAME,
    load_optimizer,
    make_optimizer,
    save_optimizer,
    trainable_parameters,
)
from b2diffurl.rewards import build_reward
from b2diffurl.sampler import sample_round
from b2diffurl.selection import select_round
from b2diffurl.train_batches import epoch_share, interval_pairs


@pytest.fixture(scope="module")
def accelerator():
    from accelerate import Accelerator

    return Accelerator(cpu=True)


def run_round(config, accelerator, r, resume_from=""):
    """One full round in process; returns (round folder, select summary, train metrics)."""
    return conftest.run_round(config, accelerator, r, resume_from)[:3]


def test_two_rounds_on_policy_and_continuous(tiny_config, accelerator):
    out0, sel0, m0 = run_round(tiny_config, accelerator, 0)
    assert sel0.selected > 0 and m0.optimizer_steps > 0
    # The trainer recomputes exactly the log-probs the sampler recorded: every ratio is 1 at step 1.
    assert m0.first_step_max_ratio_deviation < 1e-5
    lora0 = os.path.join(out0, "lora")
    assert os.path.isfile(os.path.join(lora0, "pytorch_lora_weights.safetensors"))
    assert os.path.isfile(os.path.join(lora0, OPTIMIZER_NAME))
    metrics_file = records.read_json(os.path.join(out0, "metrics.json"))
    assert metrics_file["optimizer_steps"] == m0.optimizer_steps
    for key in ("loss", "approx_kl", "clipfrac", "grad_norm", "trajectories_selected", "seconds"):
        assert key in metrics_file

    # Round 1 samples with round 0's LoRA, and still recomputes its own log-probs exactly.
    out1, _, m1 = run_round(tiny_config, accelerator, 1, resume_from=lora0)
    assert m1.first_step_max_ratio_deviation < 1e-5
    # The AdamW state continued: its step count is the sum of both rounds' steps.
    from safetensors.torch import load_file

    steps = {
        k: v.item() for k, v in load_file(os.path.join(out1, "lora", OPTIMIZER_NAME)).items() if k.endswith(".step")
    }
    assert steps and set(steps.values()) == {m0.optimizer_steps + m1.optimizer_steps}


def test_lora_loads_into_a_stock_pipeline(tiny_config, tiny_dir, accelerator):
    from diffusers import StableDiffusionPipeline

    out, _, _ = run_round(tiny_config, accelerator, 0)
    trained = load_policy(tiny_config, "cpu")
    from b2diffurl.models import load_lora

    load_lora(trained.unet, os.path.join(out, "lora"))
    assert any(v.abs().sum() > 0 for k, v in lora_state_dict(trained.unet).items() if "lora_B" in k or "lora.up" in k)

    stock = StableDiffusionPipeline.from_pretrained(tiny_dir, safety_checker=None)
    stock.load_lora_weights(os.path.join(out, "lora"))
    g = torch.Generator().manual_seed(0)
    x, emb = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 64, 32, generator=g)
    with torch.no_grad():
        ours = trained.unet(x, torch.tensor([501, 1]), encoder_hidden_states=emb).sample
        theirs = stock.unet(x, torch.tensor([501, 1]), encoder_hidden_states=emb).sample
        base = load_pipeline(tiny_dir).unet(x, torch.tensor([501, 1]), encoder_hidden_states=emb).sample
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)
    assert (ours - base).abs().max() > 1e-4, "the trained LoRA changes the UNet"


def test_forward_chunking_gives_the_same_gradient(tiny_config, accelerator):
    from b2diffurl.backbones import encode_prompts
    from b2diffurl.objectives import make_objective
    from b2diffurl.policy import Policy, backward_batch

    out, _, _ = run_round(tiny_config, accelerator, 0)
    pipeline = load_policy(tiny_config, "cpu")
    from b2diffurl.models import load_lora

    load_lora(pipeline.unet, os.path.join(out, "lora"))  # a non-trivial policy: ratios != 1
    manifest, trajectories = records.load_samples(out)
    batch = trajectories.select(torch.arange(4))
    pipeline.scheduler.set_timesteps(tiny_config.sample.num_steps)
    policy = Policy(
        pipeline.unet,
        pipeline.scheduler,
        encode_prompts(pipeline, [""]),
        tiny_config.sample.guidance_scale,
        tiny_config.sample.eta,
    )
    embeds = encode_prompts(pipeline, manifest["prompt_list"])[batch.prompt_ids]
    advantages = torch.tensor([1.0, -0.5, 2.0, -1.5])
    params = [p for _, p in trainable_parameters(pipeline.unet)]
    for algorithm in ("ppo", "dpok", "dpo"):
        tiny_config.train.algorithm = algorithm
        objective = make_objective(tiny_config.train)
        tie = 2 if objective.paired else 1
        pairs = interval_pairs(batch, torch.Generator().manual_seed(0), tie)
        grads = []
        for chunk in (1, 3, 1000):  # a paired objective rounds 1 and 3 down to whole [w, l] rows
            for p in params:
                p.grad = None
            stats = backward_batch(
                policy, pairs, embeds, advantages, objective, 0.1, chunk, 0.5, lambda loss: loss.backward()
            )
            grads.append(torch.cat([p.grad.flatten() for p in params]))
            assert stats["pairs"] == 4 * tiny_config.split_step
        assert grads[0].abs().max() > 0, algorithm
        for other in grads[1:]:
            # fp32 sums in another order: differences of a few 1e-8 on gradients of ~1e-2
            torch.testing.assert_close(other, grads[0], atol=1e-5 * grads[0].abs().max().item(), rtol=1e-4)


def test_no_selected_trajectory_keeps_the_policy(tiny_config, accelerator):
    tiny_config.eval.pos_threshold, tiny_config.eval.neg_threshold = 100.0, -100.0
    out, sel, metrics = run_round(tiny_config, accelerator, 0)
    assert sel.selected == 0 and metrics.optimizer_steps == 0
    from safetensors.torch import load_file

    weights = load_file(os.path.join(out, "lora", "pytorch_lora_weights.safetensors"))
    assert all(v.abs().sum() == 0 for k, v in weights.items() if "lora_B" in k or "lora.up" in k)
    # The next round resumes from it (an empty optimizer state means a fresh AdamW) and trains.
    tiny_config.eval.pos_threshold, tiny_config.eval.neg_threshold = 0.5, -0.5
    _, _, next_metrics = run_round(tiny_config, accelerator, 1, resume_from=os.path.join(out, "lora"))
    assert next_metrics.optimizer_steps > 0 and next_metrics.first_step_max_ratio_deviation < 1e-5


def test_selection_history_is_read_from_disk_and_never_doubled(tiny_config, accelerator):
    out0, _, _ = run_round(tiny_config, accelerator, 0)
    config = copy.deepcopy(tiny_config)
    config.run_name, config.seed = "round_001", config.seed + 1
    out1 = round_dir(config)
    sample_round(config, accelerator, load_policy(config, "cpu"))
    reward = build_reward(config.reward, "cpu")
    first = select_round(config, reward, out1, os.path.dirname(out1))
    scores1 = records.read_json(os.path.join(out1, "scores.json"))
    assert first.history_rounds == 1 and scores1["history_rounds"] == ["round_000"]
    # Rerun the selection of round 1 from scratch: same result, round 1 is not in its own history.
    os.remove(marker_path(out1, "select"))
    select_round(config, reward, out1, os.path.dirname(out1))
    assert records.read_json(os.path.join(out1, "scores.json")) == scores1
    selected, extra = records.trajectories_from_tensors(
        records.read_verified_tensors(out1, "select", "selected.safetensors")[0]
    )
    assert extra["indices"].tolist() == scores1["selected"]
    assert torch.allclose(extra["normalised"], torch.tensor(scores1["normalised"])[extra["indices"]])
    manifest, all_trajectories = records.load_samples(out1)
    assert torch.equal(selected.latents, all_trajectories.latents[extra["indices"]])


def stepped_optimizer(pipeline, config):
    """(names, params, AdamW after one step on random gradients) of a fresh LoRA on a copy of the UNet."""
    from b2diffurl.models import attach_lora

    unet = copy.deepcopy(pipeline.unet)
    attach_lora(unet, 4, config.lora.target_modules)
    named = trainable_parameters(unet)
    names, params = [n for n, _ in named], [p for _, p in named]
    opt = make_optimizer(params, config.train)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    return names, params, opt


def test_optimizer_state_round_trip(pipeline, tiny_config, tmp_path):
    names, params, opt = stepped_optimizer(pipeline, tiny_config)
    save_optimizer(opt, names, str(tmp_path / "opt.safetensors"))
    fresh = make_optimizer(params, tiny_config.train)
    load_optimizer(fresh, names, records.tensors_from_bytes((tmp_path / "opt.safetensors").read_bytes(), "opt")[0])
    for p in params:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(torch.as_tensor(opt.state[p][key]), torch.as_tensor(fresh.state[p][key]))


def test_grad_scaler_state_round_trip(pipeline, tiny_config, tmp_path):
    """The fp16 loss scale travels with the AdamW state (no restart at 65536 every round)."""
    from b2diffurl.optimizer_state import load_scaler

    names, params, optimizer = stepped_optimizer(pipeline, tiny_config)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    state = scaler.state_dict()
    state.update(scale=1024.0, _growth_tracker=37)
    scaler.load_state_dict(state)
    save_optimizer(optimizer, names, str(tmp_path / "opt.safetensors"), scaler)
    tensors = records.tensors_from_bytes((tmp_path / "opt.safetensors").read_bytes(), "opt")[0]

    fresh_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    assert load_scaler(fresh_scaler, tensors)
    assert fresh_scaler.state_dict()["scale"] == 1024.0 and fresh_scaler.state_dict()["_growth_tracker"] == 37
    fresh = make_optimizer(params, tiny_config.train)
    load_optimizer(fresh, names, tensors)  # the scaler entries are not taken for LoRA parameters
    assert all(torch.equal(optimizer.state[p]["exp_avg"], fresh.state[p]["exp_avg"]) for p in params)
    assert not load_scaler(torch.amp.GradScaler("cpu"), {k: v for k, v in tensors.items() if not k.startswith("_grad")})


def test_epoch_share_is_an_equal_disjoint_split():
    shares = [epoch_share(11, 3, rank, seed=5, epoch=1) for rank in range(3)]
    assert [len(s) for s in shares] == [3, 3, 3]
    union = torch.cat(shares)
    assert len(set(union.tolist())) == 9 and union.max() < 11
    assert not torch.equal(epoch_share(11, 1, 0, 5, 0), epoch_share(11, 1, 0, 5, 1)), "reshuffled each epoch"
    assert sorted(epoch_share(7, 1, 0, 5, 0).tolist()) == list(range(7)), "one process drops nothing"


def test_interval_pairs_keep_steps_aligned():
    n, k = 3, 4
    latents = torch.arange(n * (k + 1), dtype=torch.float32).reshape(n, k + 1, 1, 1, 1).expand(n, k + 1, 1, 2, 2)
    traj = records.Trajectories(
        latents=latents.clone(),
        log_probs=torch.arange(n * k, dtype=torch.float32).reshape(n, k),
        timesteps=torch.tensor([[751, 501, 251, 1]] * n),
        prompt_ids=torch.zeros(n, dtype=torch.long),
        group_ids=torch.arange(n),
    )
    x, x_next, t, logp, rows = interval_pairs(traj, torch.Generator().manual_seed(0))
    assert x.shape == (n * k, 1, 2, 2) and torch.equal(x_next, x + 1)
    step = (x[:, 0, 0, 0] - rows * (k + 1)).long()
    assert torch.equal(t, traj.timesteps[0][step]) and torch.equal(logp, rows * k + step)
    assert sorted(zip(rows.tolist(), step.tolist())) == [(r, j) for r in range(n) for j in range(k)]


def test_ddpo_preset_trains_every_trajectory_on_the_whole_trajectory(tiny_config, accelerator):
    from config.stage_process import ddpo

    config = ddpo(tiny_config)
    out, selected, metrics = run_round(config, accelerator, 0)
    manifest, trajectories = records.load_samples(out)
    n = config.sample.batch_size * config.sample.num_batches_per_epoch
    assert len(trajectories) == selected.selected == metrics.trajectories_selected == n
    assert trajectories.latents.shape[1] == config.sample.num_steps + 1, "k = T: the whole trajectory"
    assert len(trajectories.group_ids.unique()) == n, "no branching: groups of one"
    assert metrics.first_step_max_ratio_deviation < 1e-5
