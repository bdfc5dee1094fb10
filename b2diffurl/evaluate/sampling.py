"""The evaluation's images: ``evaluate.num_images`` spread over a prompt set's prompts, sampled with full
DDIM in fixed batches whose noise depends only on (``evaluate.seed``, batch index), sharded over processes."""

import os


def images_per_prompt(n_prompts, num_images):
    """LongTensor [P]: images of each prompt, num_images spread over n_prompts (the first num_images % P
    get one more)."""
    import torch

    counts = torch.full((n_prompts,), num_images // n_prompts, dtype=torch.long)
    counts[: num_images % n_prompts] += 1
    return counts


def item_prompt_ids(n_prompts, num_images):
    """LongTensor [N]: the prompt of every evaluation image, prompt-major (the order images come in)."""
    import torch

    return torch.arange(n_prompts).repeat_interleave(images_per_prompt(n_prompts, num_images))


def item_prompts(prompts, num_images):
    """The prompt (string) of every evaluation image of ``prompts``, in image order."""
    return [prompts[i] for i in item_prompt_ids(len(prompts), num_images).tolist()]


def eval_batches(n_prompts, num_images, batch_size):
    """Prompt indices of every evaluation batch: the (prompt, image) list, prompt-major, cut into
    batches. -> [LongTensor]."""
    return list(item_prompt_ids(n_prompts, num_images).split(batch_size))


def sample_batches(pipeline, prompts, config, batch_indices):
    """[(b, uint8 images [B, H, W, 3])] of the evaluation batches ``batch_indices`` (see :func:`eval_batches`)
    with the pipeline's current policy; batch b draws its noise from (evaluate.seed, b)."""
    from tqdm.auto import tqdm

    from b2diffurl.backbones import decode_images, encode_prompts, negative_conditioning
    from b2diffurl.sampler import batch_generator, sample_branches

    evaluate, sample = config.evaluate, config.sample
    batches = eval_batches(len(prompts), evaluate.num_images, evaluate.batch_size)
    negative_embeds = negative_conditioning(pipeline)
    done = []
    for b in tqdm(
        batch_indices, desc="evaluating", disable=os.environ.get("RANK", "0") != "0", dynamic_ncols=True, leave=False
    ):
        embeds = encode_prompts(pipeline, [prompts[i] for i in batches[b]])
        result = sample_branches(
            pipeline,
            embeds,
            negative_embeds,
            batch_generator(evaluate.seed, b),
            sample.num_steps,
            sample.num_steps,
            1,
            sample.guidance_scale,
            sample.eta,
        )
        done.append((b, decode_images(pipeline, result["final_latents"], evaluate.batch_size).numpy()))
    return done


def sample_images(pipeline, prompts, config, accelerator=None):
    """uint8 images [N, H, W, 3] (N = evaluate.num_images) in (prompt, image) order, on the main process
    (None elsewhere). Each process samples batches rank, rank + world, ...; the seeds depend only on the
    batch index."""
    import torch
    from accelerate.utils import gather_object

    evaluate = config.evaluate
    n_batches = len(eval_batches(len(prompts), evaluate.num_images, evaluate.batch_size))
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    done = sample_batches(pipeline, prompts, config, range(rank, n_batches, world))
    if world > 1:
        done = gather_object(done)
    if rank != 0:
        return None
    return torch.cat([torch.from_numpy(images) for _, images in sorted(done, key=lambda item: item[0])])
