"""Reward of a policy on fixed evaluation seeds: the number a reward-vs-rounds curve plots.

Samples whole trajectories (no branching) for ``n_batches`` prompt batches seeded by
(eval_seed, batch index), so two policies are compared on the same prompts and initial noise.
"""

import torch

from b2diffurl.sampler import batch_generator, batch_prompt_ids, decode_images, encode_prompts, sample_branches


@torch.no_grad()
def evaluate_policy(pipeline, reward, prompt_list, sample_config, n_batches, eval_seed=10_000):
    """Rewards [n_batches * sample.batch_size] of the pipeline's current policy (LoRA as loaded)."""
    negative_embeds = encode_prompts(pipeline, [""])
    scores = []
    for batch_idx in range(n_batches):
        generator = batch_generator(eval_seed, batch_idx)
        prompt_ids = batch_prompt_ids(batch_idx, sample_config.batch_size, len(prompt_list), 0, generator)
        prompts = [prompt_list[i] for i in prompt_ids]
        result = sample_branches(
            pipeline, encode_prompts(pipeline, prompts), negative_embeds, generator, sample_config.num_steps,
            sample_config.num_steps, 1, sample_config.guidance_scale, sample_config.eta,
        )
        scores.append(reward(decode_images(pipeline, result["final_latents"], sample_config.batch_size), prompts))
    return torch.cat(scores)
