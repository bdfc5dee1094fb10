"""Branch-based sampling (paper Sec. 3.3) of DDIM trajectories, stage 1 of a round.

For each prompt batch the first T - k DDIM steps are shared; at step T - k (the start of the
training interval) every latent is copied into ``split_time`` branches that continue with
independent noise. All branches of a batch go through the UNet together, one batched call per step
with classifier-free guidance batched in it. What training needs over the interval is recorded
(``b2diffurl.records.Trajectories``), plus the final image of every trajectory.

Randomness is drawn from a generator seeded by (seed, batch index), and the driver passes
seed + r for round r, so the batches are the same whichever process samples them.
"""

import json
import os
import shutil
import time

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from tqdm.auto import tqdm

from b2diffurl import records
from b2diffurl.models import predict_noise
from b2diffurl.ddim import ddim_step_with_logprob
from b2diffurl.schedule import branch_step

STAGE = "sample"


def batch_generator(seed, batch_idx):
    """CPU generator for one prompt batch, seeded from (seed, batch_idx) with numpy's SeedSequence."""
    state = np.random.SeedSequence([seed, batch_idx]).generate_state(2, dtype=np.uint32)
    return torch.Generator("cpu").manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)


def batch_prompt_ids(batch_idx, batch_size, n_prompts, random_choose, generator):
    """Prompt indices [B] of one batch: drawn uniformly with ``generator``, or the list in order."""
    if random_choose:
        return torch.randint(n_prompts, (batch_size,), generator=generator)
    return (batch_idx * batch_size + torch.arange(batch_size)) % n_prompts


@torch.no_grad()
def encode_prompts(pipeline, prompts):
    """Text-encoder hidden states [len(prompts), L, D] (L = tokenizer.model_max_length)."""
    tokens = pipeline.tokenizer(
        list(prompts),
        padding="max_length",
        max_length=pipeline.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(pipeline.text_encoder.device)
    return pipeline.text_encoder(tokens)[0]


@torch.no_grad()
def sample_branches(pipeline, prompt_embeds, negative_embeds, generator, num_steps, split_step, split_time, guidance_scale, eta):
    """Sample one prompt batch with branching at step T - k.

    prompt_embeds: [B, L, D]; negative_embeds: [1, L, D] (the empty prompt).
    Returns a dict with
      latents [N, k+1, C, H, W], log_probs [N, k], timesteps [N, k], final_latents [N, C, H, W],
    where N = B * split_time and row b * split_time + j is branch j of prompt b.
    """
    unet, scheduler = pipeline.unet, pipeline.scheduler
    scheduler.set_timesteps(num_steps, device=unet.device)
    start = branch_step(num_steps, split_step)
    batch_size = prompt_embeds.shape[0]
    size = unet.config.sample_size
    latents = torch.randn((batch_size, unet.config.in_channels, size, size), generator=generator).to(unet.device)
    latents = latents * scheduler.init_noise_sigma
    interval_latents, log_probs = [], []
    for i, t in enumerate(scheduler.timesteps):
        if i == start:
            latents = latents.repeat_interleave(split_time, dim=0)
            prompt_embeds = prompt_embeds.repeat_interleave(split_time, dim=0)
            interval_latents.append(latents)
        noise_pred = predict_noise(unet, latents, t, prompt_embeds, negative_embeds, guidance_scale)
        latents, log_prob, _ = ddim_step_with_logprob(scheduler, noise_pred, t, latents, eta, generator=generator)
        if i >= start:
            interval_latents.append(latents)
            log_probs.append(log_prob)
    n = latents.shape[0]
    return {
        "latents": torch.stack(interval_latents, dim=1),
        "log_probs": torch.stack(log_probs, dim=1),
        "timesteps": scheduler.timesteps[start:].to(torch.long).repeat(n, 1),
        "final_latents": latents,
    }


@torch.no_grad()
def decode_images(pipeline, latents, chunk_size=8):
    """Final latents [N, C, h, w] -> uint8 RGB images [N, H, W, 3], decoded ``chunk_size`` at a time."""
    vae = pipeline.vae
    images = []
    for part in latents.split(chunk_size):
        decoded = vae.decode(part.to(vae.dtype) / vae.config.scaling_factor).sample
        images.append(((decoded.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).cpu())
    return torch.cat(images).permute(0, 2, 3, 1)


def load_prompt_list(config):
    """The prompts a round draws from: ``[config.prompt]`` or the JSON list in ``config.prompt_file``."""
    if config.prompt:
        return [config.prompt]
    return records.read_json(config.prompt_file)


def _fingerprint(config, prompt_list):
    """What a round's samples depend on: a partial round is resumed only if all of it matches."""
    return {
        "format_version": records.FORMAT_VERSION,
        "seed": config.seed,
        "model": config.pretrained.model,
        "revision": config.pretrained.revision,
        "resume_from": os.path.abspath(config.resume_from) if config.resume_from else "",
        "mixed_precision": config.mixed_precision,
        "lora": config.lora.to_dict(),
        "split_step": config.split_step,
        "split_time": config.split_time,
        "sample": config.sample.to_dict(),
        "prompt_random_choose": config.prompt_random_choose,
        "prompt_list": prompt_list,
    }


def _batch_path(out_dir, batch_idx):
    return os.path.join(out_dir, "samples", f"batch_{batch_idx:05d}.safetensors")


def _prepare_tmp(tmp, fingerprint, accelerator):
    """Create (or keep, when it matches) the stage's temporary folder; returns nothing."""
    path = os.path.join(tmp, ".fingerprint.json")
    if accelerator.is_main_process:
        if os.path.isdir(tmp) and (not os.path.isfile(path) or records.read_json(path) != fingerprint):
            shutil.rmtree(tmp)
        os.makedirs(os.path.join(tmp, "samples"), exist_ok=True)
        os.makedirs(os.path.join(tmp, "images"), exist_ok=True)
        records.write_json(path, fingerprint)
    accelerator.wait_for_everyone()


def finished_summary(config, accelerator):
    """The summary of this round's sampling if it already finished (completing an interrupted
    finish first), else None. Cheap: call it before loading any model."""
    out = records.round_dir(config)
    if not records.is_done(out, STAGE) and records.stage_pending(out, STAGE):
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            records.finish_stage(out, STAGE)
        accelerator.wait_for_everyone()
    if records.is_done(out, STAGE):
        return records.read_json(records.marker_path(out, STAGE))
    return None


def sample_round(config, accelerator, pipeline):
    """Stage 1: sample this process's share of the round's batches into the round folder.

    Batches are sharded round-robin over processes; batches already complete in the temporary
    folder of an interrupted run with the same settings are kept (randomness is per batch, so the
    result is the same). Call :func:`finished_summary` first. Returns the stage summary (dict).
    """
    out = records.round_dir(config)
    started = time.time()
    prompt_list = load_prompt_list(config)
    tmp = records.stage_tmp_dir(out, STAGE)
    _prepare_tmp(tmp, json.loads(json.dumps(_fingerprint(config, prompt_list))), accelerator)

    sample = config.sample
    per_batch = sample.batch_size * config.split_time
    negative_embeds = encode_prompts(pipeline, [""])
    my_batches = range(accelerator.process_index, sample.num_batches_per_epoch, accelerator.num_processes)
    todo = [b for b in my_batches if not os.path.isfile(_batch_path(tmp, b))]
    for batch_idx in tqdm(todo, desc=f"sampling {config.run_name}", disable=not accelerator.is_main_process, dynamic_ncols=True):
        generator = batch_generator(config.seed, batch_idx)
        prompt_ids = batch_prompt_ids(batch_idx, sample.batch_size, len(prompt_list), config.prompt_random_choose, generator)
        prompt_embeds = encode_prompts(pipeline, [prompt_list[i] for i in prompt_ids])
        result = sample_branches(
            pipeline, prompt_embeds, negative_embeds, generator, sample.num_steps, config.split_step,
            config.split_time, sample.guidance_scale, sample.eta,
        )
        images = decode_images(pipeline, result["final_latents"], sample.batch_size)
        first = batch_idx * per_batch
        for row, image in enumerate(images.numpy()):
            Image.fromarray(image).save(os.path.join(tmp, "images", f"{first + row:05d}.png"))
        trajectories = records.Trajectories(
            latents=result["latents"],
            log_probs=result["log_probs"],
            timesteps=result["timesteps"],
            prompt_ids=prompt_ids.repeat_interleave(config.split_time),
            group_ids=batch_idx * sample.batch_size + torch.arange(sample.batch_size).repeat_interleave(config.split_time),
        )
        # The batch file is written last: it marks the batch (and its images) complete.
        records.save_trajectories(_batch_path(tmp, batch_idx), trajectories, {"batch_idx": batch_idx, "rank": accelerator.process_index})
    accelerator.wait_for_everyone()

    if accelerator.is_main_process:
        _write_manifest(config, tmp, prompt_list, accelerator.num_processes)
        files = [os.path.join(dirpath, f) for dirpath, _, names in os.walk(tmp) for f in names]
        summary = {
            "trajectories": sample.num_batches_per_epoch * per_batch,
            "split_step": config.split_step,
            "split_time": config.split_time,
            "images": len(os.listdir(os.path.join(tmp, "images"))),
            "bytes_written": sum(os.path.getsize(f) for f in files),
            "seconds": round(time.time() - started, 2),
            "num_processes": accelerator.num_processes,
        }
        records.finish_stage(out, STAGE, summary)
    accelerator.wait_for_everyone()
    return records.read_json(records.marker_path(out, STAGE))


def _write_manifest(config, tmp, prompt_list, num_processes):
    """samples/manifest.json and prompts.json (prompt of every trajectory, in image order)."""
    sample = config.sample
    batches, trajectory_prompts = [], []
    for batch_idx in range(sample.num_batches_per_epoch):
        path = _batch_path(tmp, batch_idx)
        with safe_open(path, framework="pt") as f:
            rank = int(f.metadata()["rank"])
            prompt_ids = f.get_tensor("prompt_ids")
            timesteps = f.get_tensor("timesteps")[0].tolist()
            latent_shape = list(f.get_slice("latents").get_shape()[1:])
        batches.append({"file": os.path.basename(path), "rank": rank, "trajectories": len(prompt_ids)})
        trajectory_prompts.extend(prompt_list[i] for i in prompt_ids.tolist())
    records.write_json(
        os.path.join(tmp, "samples", "manifest.json"),
        {
            "format_version": records.FORMAT_VERSION,
            "num_trajectories": len(trajectory_prompts),
            "num_steps": sample.num_steps,
            "split_step": config.split_step,
            "split_time": config.split_time,
            "batch_size": sample.batch_size,
            "num_batches": sample.num_batches_per_epoch,
            "interval_timesteps": timesteps,
            "latent_shape": latent_shape,
            "guidance_scale": sample.guidance_scale,
            "eta": sample.eta,
            "seed": config.seed,
            "model": config.pretrained.model,
            "resume_from": config.resume_from,
            "num_processes": num_processes,
            "prompt_list": prompt_list,
            "batches": batches,
        },
    )
    records.write_json(os.path.join(tmp, "prompts.json"), trajectory_prompts)
