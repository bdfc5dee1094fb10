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
from tqdm.auto import tqdm

from b2diffurl import layout, records
from b2diffurl.backbones import decode_images, encode_prompts, latent_shape, negative_conditioning, predict_noise
from b2diffurl.ddim import ddim_step_with_logprob
from b2diffurl.errors import NonFiniteError
from b2diffurl.grids import png_bytes
from b2diffurl.models import storage_dtype
from b2diffurl.perf import stage_memory
from b2diffurl.schedule import branch_step
from b2diffurl.summaries import SampleSummary, read_summary

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
def sample_branches(
    pipeline,
    prompt_embeds,
    negative_embeds,
    generator,
    num_steps,
    split_step,
    split_time,
    guidance_scale,
    eta,
    latent_dtype=torch.float32,
):
    """Sample one prompt batch with branching at step T - k.

    prompt_embeds: Conditioning of B rows (b2diffurl.backbones); negative_embeds: of one row (the unconditional prompt).
    latent_dtype: dtype the interval latents are stored in. From the branch point on, the chain is
    rounded to it after every step and each log-prob is that of the rounded latent, so the stored
    latents reproduce the recorded log-probs exactly.
    Returns a dict with
      latents [N, k+1, C, H, W] (latent_dtype), log_probs [N, k] fp32, timesteps [N, k],
      final_latents [N, C, H, W] fp32,
    where N = B * split_time and row b * split_time + j is branch j of prompt b.
    """
    unet, scheduler = pipeline.unet, pipeline.scheduler
    scheduler.set_timesteps(num_steps, device=unet.device)
    start = branch_step(num_steps, split_step)
    batch_size = len(prompt_embeds)
    latents = torch.randn((batch_size, *latent_shape(pipeline)), generator=generator).to(unet.device)
    latents = latents * scheduler.init_noise_sigma
    interval_latents, log_probs = [], []
    for i, t in enumerate(scheduler.timesteps):
        in_interval = i >= start
        if i == start:
            latents = latents.to(latent_dtype).float().repeat_interleave(split_time, dim=0)
            prompt_embeds = prompt_embeds.repeat_interleave(split_time, dim=0)
            interval_latents.append(latents)
        noise_pred = predict_noise(unet, latents, t, prompt_embeds, negative_embeds, guidance_scale)
        latents, log_prob, _ = ddim_step_with_logprob(
            scheduler,
            noise_pred,
            t,
            latents,
            eta,
            generator=generator,
            round_to=latent_dtype if in_interval else None,
        )
        if in_interval:
            interval_latents.append(latents)
            log_probs.append(log_prob)
    n = latents.shape[0]
    return {
        "latents": torch.stack(interval_latents, dim=1).to(latent_dtype),  # lossless: every entry is already rounded
        "log_probs": torch.stack(log_probs, dim=1),
        "timesteps": scheduler.timesteps[start:].to(torch.long).repeat(n, 1),
        "final_latents": latents,
    }


def load_prompt_list(config):
    """The prompts a round draws from: ``[config.prompt]`` or the JSON list in ``config.prompt_file``."""
    from b2diffurl.checks import check_prompts

    return check_prompts(config)


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


def _batch_file(batch_idx):
    """A batch's trajectories, relative to the round folder."""
    return f"samples/batch_{batch_idx:05d}.safetensors"


def _batch_record(tmp, batch_idx):
    """Where a batch's record lives while the round is sampled: its files' sha256, its rank, its
    prompt ids. Written after the batch's files, so it marks the batch complete; not moved into
    the round folder (the manifest and the marker take its content)."""
    return os.path.join(tmp, ".batches", f"batch_{batch_idx:05d}.json")


def _verified_batch(tmp, batch_idx):
    """The record of a batch complete in the temporary folder whose files all match it, else None."""
    path = _batch_record(tmp, batch_idx)
    if not os.path.isfile(path):
        return None
    try:
        record = records.read_json(path)
        for relpath, digest in record["files"].items():
            if records.file_sha256(os.path.join(tmp, relpath)) != digest:
                raise ValueError(relpath)
    except (records.RecordError, OSError, ValueError, KeyError, TypeError) as err:
        print(
            f"sampling: batch {batch_idx} of the interrupted run does not verify ({type(err).__name__}: {err}); "
            "sampling it again"
        )
        os.remove(path)
        return None
    return record


def _prepare_tmp(tmp, fingerprint, accelerator):
    """Create (or keep, when it matches) the stage's temporary folder."""
    path = os.path.join(tmp, ".fingerprint.json")
    if accelerator.is_main_process:
        if os.path.isdir(tmp):
            try:
                same = records.read_json(path) == fingerprint
            except records.RecordError:
                same = False
            if not same:
                shutil.rmtree(tmp)
        for folder in ("samples", "images", ".batches"):
            os.makedirs(os.path.join(tmp, folder), exist_ok=True)
        records.write_json(path, fingerprint)
    accelerator.wait_for_everyone()


def finished_summary(config, accelerator):
    """The summary of this round's sampling if it already finished (completing an interrupted
    finish first), else None. Cheap: call it before loading any model."""
    out = layout.round_dir(config)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        records.finished(out, STAGE)
    accelerator.wait_for_everyone()
    return read_summary(records.read_marker(out, STAGE), STAGE) if records.is_done(out, STAGE) else None


def _check_finite(result, config, batch_idx):
    """Nothing non-finite is written: a NaN/inf latent or log-prob stops the round at its batch."""
    for name in ("latents", "log_probs"):
        if not torch.isfinite(result[name]).all():
            bad = (~torch.isfinite(result[name])).sum().item()
            policy = f"the LoRA in {config.resume_from}" if config.resume_from else "the base model"
            raise NonFiniteError(
                f"sample {config.run_name} batch {batch_idx}: {bad} {name} values are NaN/inf with {policy} "
                f"(mixed_precision={config.mixed_precision!r}); nothing of the batch was saved: try mixed_precision "
                "'no' or 'bf16', or resume from an earlier round's LoRA",
                same_on_every_rank=False,
            )


def sample_round(config, accelerator, pipeline, load_seconds=0.0):
    """Stage 1: sample this process's share of the round's batches into the round folder.

    Batches are sharded round-robin over processes; batches already complete in the temporary
    folder of an interrupted run with the same settings are kept once their files verify against
    their record (randomness is per batch, so the result is the same); the others are sampled
    again. Call :func:`finished_summary` first. ``load_seconds`` (the model load the caller timed) goes
    into the summary. Returns the stage's marker (dict).
    """
    out = layout.round_dir(config)
    started = time.time()
    prompt_list = load_prompt_list(config)
    tmp = layout.stage_tmp_dir(out, STAGE)
    _prepare_tmp(tmp, json.loads(json.dumps(_fingerprint(config, prompt_list))), accelerator)

    sample = config.sample
    per_batch = sample.batch_size * config.split_time
    negative_embeds = negative_conditioning(pipeline)
    my_batches = range(accelerator.process_index, sample.num_batches_per_epoch, accelerator.num_processes)
    todo = [b for b in my_batches if _verified_batch(tmp, b) is None]
    with tqdm(
        todo, desc=f"sampling {config.run_name}", disable=not accelerator.is_main_process, dynamic_ncols=True
    ) as bar:
        for batch_idx in bar:
            generator = batch_generator(config.seed, batch_idx)
            prompt_ids = batch_prompt_ids(
                batch_idx, sample.batch_size, len(prompt_list), config.prompt_random_choose, generator
            )
            prompt_embeds = encode_prompts(pipeline, [prompt_list[i] for i in prompt_ids])
            result = sample_branches(
                pipeline,
                prompt_embeds,
                negative_embeds,
                generator,
                sample.num_steps,
                config.split_step,
                config.split_time,
                sample.guidance_scale,
                sample.eta,
                storage_dtype(sample.latent_dtype),
            )
            _check_finite(result, config, batch_idx)
            images = decode_images(pipeline, result["final_latents"], sample.decode_batch_size)
            first = batch_idx * per_batch
            files = {}
            for row, image in enumerate(images.numpy()):
                name = records.image_name(first + row)
                files[name] = records.write_bytes(os.path.join(tmp, name), png_bytes(image))
            trajectories = records.Trajectories(
                latents=result["latents"],
                log_probs=result["log_probs"],
                timesteps=result["timesteps"],
                prompt_ids=prompt_ids.repeat_interleave(config.split_time),
                group_ids=batch_idx * sample.batch_size
                + torch.arange(sample.batch_size).repeat_interleave(config.split_time),
            )
            name = _batch_file(batch_idx)
            files[name] = records.save_trajectories(
                os.path.join(tmp, name), trajectories, {"batch_idx": batch_idx, "rank": accelerator.process_index}
            )
            records.fault_point(f"{config.run_name}/sample.files")
            # The batch's record is written last: it marks the batch (and its images) complete.
            records.write_json(
                _batch_record(tmp, batch_idx),
                {
                    "rank": accelerator.process_index,
                    "prompt_ids": trajectories.prompt_ids.tolist(),
                    "interval_timesteps": result["timesteps"][0].tolist(),
                    "latent_shape": list(result["latents"].shape[1:]),
                    "files": files,
                },
            )
            records.fault_point(f"{config.run_name}/sample.batch")
    accelerator.wait_for_everyone()

    if accelerator.is_main_process:
        batch_records = [records.read_json(_batch_record(tmp, b)) for b in range(sample.num_batches_per_epoch)]
        files = {name: digest for record in batch_records for name, digest in record["files"].items()}
        files.update(_write_manifest(config, tmp, prompt_list, accelerator.num_processes, batch_records))
        summary = SampleSummary(
            trajectories=sample.num_batches_per_epoch * per_batch,
            split_step=config.split_step,
            split_time=config.split_time,
            images=sum(name.startswith("images/") for name in files),
            bytes_written=records.files_nbytes(tmp, files),
            seconds=round(time.time() - started, 2),
            load_seconds=round(load_seconds, 2),
            num_processes=accelerator.num_processes,
            extra=stage_memory(),
        )
        records.finish_stage(out, STAGE, summary.record(), files, config)
    accelerator.wait_for_everyone()
    return read_summary(records.read_marker(out, STAGE), STAGE)


def _portable(path, round_dir):
    """``path`` relative to the round folder when it lies in the same experiment (``../round_002/lora``), so a
    run folder reads the same wherever it is moved; other paths as given."""
    if not path:
        return path
    exp_dir = os.path.dirname(os.path.abspath(round_dir))
    absolute = os.path.abspath(path)
    return os.path.relpath(absolute, os.path.abspath(round_dir)) if absolute.startswith(exp_dir + os.sep) else path


def _write_manifest(config, tmp, prompt_list, num_processes, batch_records):
    """samples/manifest.json and prompts.json (prompt of every trajectory, in image order); returns their sha256s."""
    sample = config.sample
    batches, trajectory_prompts = [], []
    for batch_idx, record in enumerate(batch_records):
        batches.append(
            {
                "file": os.path.basename(_batch_file(batch_idx)),
                "rank": record["rank"],
                "trajectories": len(record["prompt_ids"]),
            }
        )
        trajectory_prompts.extend(prompt_list[i] for i in record["prompt_ids"])
    manifest = {
        "format_version": records.FORMAT_VERSION,
        "num_trajectories": len(trajectory_prompts),
        "num_steps": sample.num_steps,
        "split_step": config.split_step,
        "split_time": config.split_time,
        "batch_size": sample.batch_size,
        "num_batches": sample.num_batches_per_epoch,
        "interval_timesteps": batch_records[0]["interval_timesteps"],
        "latent_shape": batch_records[0]["latent_shape"],
        "guidance_scale": sample.guidance_scale,
        "eta": sample.eta,
        "seed": config.seed,
        "model": config.pretrained.model,
        "resume_from": _portable(config.resume_from, layout.round_dir(config)),
        "num_processes": num_processes,
        "prompt_list": prompt_list,
        "batches": batches,
    }
    return {
        "samples/manifest.json": records.write_json(os.path.join(tmp, "samples", "manifest.json"), manifest),
        "prompts.json": records.write_json(os.path.join(tmp, "prompts.json"), trajectory_prompts),
    }
