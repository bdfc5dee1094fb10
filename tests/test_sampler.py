"""Branch-based sampling: structure of the records, log-prob recomputation, LoRA resume, outputs."""

import glob
import os

import numpy as np
import pytest
import torch
from PIL import Image

from b2diffurl import layout, records
from b2diffurl.backbones import encode_prompts, predict_noise
from b2diffurl.ddim import ddim_step_with_logprob
from b2diffurl.layout import round_dir
from b2diffurl.models import attach_lora, load_lora, load_policy, lora_state_dict, save_lora
from b2diffurl.sampler import finished_summary, sample_round


@pytest.fixture(scope="module")
def accelerator():
    from accelerate import Accelerator

    return Accelerator(cpu=True)


def sample(config, accelerator):
    assert finished_summary(config, accelerator) is None
    pipeline = load_policy(config, accelerator.device)
    summary = sample_round(config, accelerator, pipeline)
    return round_dir(config), summary, pipeline


def load_round(out):
    return records.load_samples(out)


def test_branch_structure_and_counts(tiny_config, accelerator):
    tiny_config.split_step, tiny_config.split_time = 2, 3
    out, summary, _ = sample(tiny_config, accelerator)
    manifest, traj = load_round(out)
    b, nb, n, k = tiny_config.sample.batch_size, tiny_config.sample.num_batches_per_epoch, 3, 2
    assert len(traj) == summary.trajectories == b * nb * n == manifest["num_trajectories"]
    assert traj.latents.shape == (b * nb * n, k + 1, 4, 16, 16)
    assert traj.log_probs.shape == traj.timesteps.shape == (b * nb * n, k)
    assert (
        traj.timesteps[0].tolist() == manifest["interval_timesteps"] == [251, 1]
    )  # last 2 of the 4 steps 751, 501, 251, 1
    for group in traj.group_ids.unique():
        rows = (traj.group_ids == group).nonzero().flatten()
        assert len(rows) == n
        assert len(set(traj.prompt_ids[rows].tolist())) == 1
        first = traj.latents[rows, 0]
        assert torch.equal(first, first[:1].expand_as(first)), "branches share the latent at the branch point"
        after = traj.latents[rows, 1]
        assert all(not torch.equal(after[i], after[j]) for i in range(n) for j in range(i + 1, n)), (
            "branches differ after it"
        )
    assert len(traj.group_ids.unique()) == b * nb
    assert torch.isfinite(traj.log_probs).all()
    # prompts.json and images line up with the trajectories.
    prompts = records.read_json(os.path.join(out, "prompts.json"))
    assert prompts == [manifest["prompt_list"][i] for i in traj.prompt_ids.tolist()]
    assert len(glob.glob(os.path.join(out, "images", "*.png"))) == b * nb * n
    assert not glob.glob(os.path.join(out, "**", "*.pkl"), recursive=True)
    assert not os.path.exists(layout.stage_tmp_dir(out, "sample"))


def test_recorded_log_probs_are_recomputed_exactly(tiny_config, accelerator):
    tiny_config.split_step = 3
    out, _, pipeline = sample(tiny_config, accelerator)
    manifest, traj = load_round(out)
    scheduler = pipeline.scheduler
    scheduler.set_timesteps(tiny_config.sample.num_steps)
    n, k = traj.log_probs.shape
    embeds = encode_prompts(pipeline, manifest["prompt_list"])[traj.prompt_ids]  # [N, L, D]
    negative = encode_prompts(pipeline, [""])
    # All (trajectory, step) pairs in one batch of mixed timesteps, as a trainer may batch them.
    latents = traj.latents[:, :-1].reshape(n * k, 4, 16, 16)
    timesteps = traj.timesteps.reshape(-1)
    with torch.no_grad():
        eps = predict_noise(
            pipeline.unet,
            latents,
            timesteps,
            embeds.repeat_interleave(k, 0),
            negative,
            tiny_config.sample.guidance_scale,
        )
        _, log_prob, _ = ddim_step_with_logprob(
            scheduler,
            eps,
            timesteps,
            latents,
            tiny_config.sample.eta,
            prev_sample=traj.next_latents.reshape(n * k, 4, 16, 16),
        )
    torch.testing.assert_close(log_prob.reshape(n, k), traj.log_probs, atol=1e-5, rtol=0)


def _images(out):
    return np.stack([np.asarray(Image.open(p)) for p in sorted(glob.glob(os.path.join(out, "images", "*.png")))])


def test_round_r_samples_with_round_r_minus_1_lora(tiny_config, tiny_dir, accelerator, tmp_path):
    base_out, _, _ = sample(tiny_config, accelerator)
    # A "trained" LoRA: non-zero B matrices, saved in diffusers format as a round's lora/ folder.
    from b2diffurl.models import load_pipeline

    unet = load_pipeline(tiny_dir).unet
    params = attach_lora(unet, tiny_config.lora.rank, tiny_config.lora.target_modules)
    torch.manual_seed(0)
    for p in params:
        p.data.normal_(0, 0.3)
    lora_dir = str(tmp_path / "round_000" / "lora")
    save_lora(unet, lora_dir)
    assert os.path.isfile(os.path.join(lora_dir, "pytorch_lora_weights.safetensors"))

    tiny_config.run_name, tiny_config.resume_from = "round_001", lora_dir
    lora_out, _, pipeline = sample(tiny_config, accelerator)
    loaded = lora_state_dict(pipeline.unet)
    for name, value in lora_state_dict(unet).items():
        torch.testing.assert_close(loaded[name], value)
    assert not np.array_equal(_images(base_out), _images(lora_out)), "a non-zero LoRA must change the samples"

    # The same settings without the LoRA reproduce the base round exactly.
    tiny_config.run_name, tiny_config.resume_from = "round_002", ""
    again, _, _ = sample(tiny_config, accelerator)
    assert np.array_equal(_images(base_out), _images(again))


def test_load_lora_rejects_a_folder_without_weights(pipeline, tmp_path):
    with pytest.raises(FileNotFoundError, match="pytorch_lora_weights.safetensors"):
        load_lora(pipeline.unet, str(tmp_path))


def test_interrupted_round_resumes_with_identical_results(tiny_config, accelerator, monkeypatch):
    import b2diffurl.sampler as sampler

    out, _, pipeline = sample(tiny_config, accelerator)
    reference = _images(out)
    tiny_config.run_name = "round_001"
    calls = []
    real = sampler.sample_branches

    def stop_at_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sampler, "sample_branches", stop_at_second_batch)
    with pytest.raises(KeyboardInterrupt):
        sample_round(tiny_config, accelerator, pipeline)
    resumed = round_dir(tiny_config)
    assert not records.is_done(resumed, "sample")
    kept = os.path.join(layout.stage_tmp_dir(resumed, "sample"), "samples", "batch_00000.safetensors")
    assert os.path.isfile(kept)
    assert finished_summary(tiny_config, accelerator) is None

    calls.clear()
    summary = sample_round(tiny_config, accelerator, pipeline)
    assert len(calls) == 1, "only the missing batch is sampled again"
    assert summary.trajectories == len(reference)
    assert np.array_equal(_images(resumed), reference)
    assert finished_summary(tiny_config, accelerator) == summary
