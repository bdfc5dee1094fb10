"""What the BERTScore reward costs, in arithmetic: the FLOPs of LLaVA v1.5 7B's captioning of one image
against SD v1.4's sampling of it, counted by torch's FlopCounterMode on models built on the meta device
at their real shapes (no weights, no memory, seconds on a CPU).

    python -m b2diffurl.flops [--steps 20] [--resolution 512] [--new-tokens 64] [--prompt-tokens 22]

- Sampling: ``steps`` UNet calls on the classifier-free-guidance pair (batch 2) at ``resolution / 8``
  latents (SD v1.4's unet/config.json, as b2diffurl.bench builds it).
- Captioning (``reward.name = "bertscore"``): LLaVA v1.5 7B as llava-hf/llava-1.5-7b-hf configures it
  (CLIP ViT-L/14 at 336 px, 576 image tokens from its second-to-last layer, a 2-layer projector,
  Vicuna-7B), the vision tower on the image, the prefill of the 576 image tokens and the question's
  ``prompt_tokens`` (about 22 for "USER: <image>\\nAnswer concisely: what is going on in this
  image? ASSISTANT:"), then ``new_tokens`` greedy steps with the KV cache (``reward.caption_max_tokens``,
  each step one token through every layer, attending to all earlier ones, and the LM head). DeBERTa's
  recall on about 30 tokens is left out: under 0.1 TFLOP.

FLOPs count a multiply-add as 2. The decode steps are memory-bound on a GPU: each reads the 13.5 GB of
fp16 weights once per batch, so the captioner's time is not its FLOPs over the GPU's peak; the
numbers are the work, not a time.
"""

import argparse
import sys

# llava-hf/llava-1.5-7b-hf's config.json
LLAVA_VISION = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    image_size=336,
    patch_size=14,
    projection_dim=768,
)
LLAVA_TEXT = dict(
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    vocab_size=32064,
    max_position_embeddings=4096,
)
IMAGE_TOKENS = (336 // 14) ** 2  # 576


def unet_step_flops(resolution=512):
    """FLOPs of one SD v1.4 UNet call on a CFG pair (batch 2, 77 text tokens) at resolution / 8 latents."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from b2diffurl.bench.shapes import SD14_UNET

    latent = resolution // 8
    with torch.device("meta"):
        unet = UNet2DConditionModel(sample_size=latent, **SD14_UNET)
        latents, text, timesteps = torch.zeros(2, 4, latent, latent), torch.zeros(2, 77, 768), torch.tensor([500, 500])
    with FlopCounterMode(display=False) as counter:
        unet(latents, timesteps, text)
    return counter.get_total_flops()


def llava_caption_flops(prompt_tokens=22, new_tokens=64):
    """{"vision", "prefill", "decode", "total", "params"}: FLOPs of captioning one image with LLaVA v1.5 7B.

    The language model is counted layer by layer (its mask helper reads tensor values, which meta
    tensors do not have): the prefill through one decoder layer times 32, each decode step as the
    token's projections and MLP plus its attention over every earlier token (2 x 2 x keys x hidden).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**LLAVA_VISION),
        text_config=LlamaConfig(**LLAVA_TEXT),
        image_token_index=32000,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    with torch.device("meta"):
        llava = LlavaForConditionalGeneration(config)
    hidden, layers, vocab = LLAVA_TEXT["hidden_size"], LLAVA_TEXT["num_hidden_layers"], LLAVA_TEXT["vocab_size"]
    model = llava.model
    with FlopCounterMode(display=False) as counter:
        features = model.vision_tower(torch.zeros(1, 3, 336, 336, device="meta"), output_hidden_states=True)
        model.multi_modal_projector(features.hidden_states[-2][:, 1:])  # [1, 576, 1024] -> [1, 576, 4096]
    vision = counter.get_total_flops()
    language, layer = model.language_model, model.language_model.layers[0]
    head = 2 * hidden * vocab  # the LM head on one position
    tokens = IMAGE_TOKENS + prompt_tokens
    h = torch.zeros(1, tokens, hidden, device="meta")
    with FlopCounterMode(display=False) as counter:
        layer(
            h,
            position_embeddings=language.rotary_emb(h, torch.arange(tokens, device="meta")[None]),
            attention_mask=None,
        )
    prefill = layers * counter.get_total_flops() + head  # generate computes the logits of the last position only
    one = torch.zeros(1, 1, hidden, device="meta")
    attention = layer.self_attn
    with FlopCounterMode(display=False) as counter:
        layer.mlp(one)
        for projection in (attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj):
            projection(one)
    per_token = counter.get_total_flops()
    decode = sum(layers * (per_token + 2 * 2 * (tokens + i + 1) * hidden) + head for i in range(new_tokens))
    params = sum(p.numel() for p in llava.parameters())
    return {
        "vision": vision,
        "prefill": prefill,
        "decode": decode,
        "total": vision + prefill + decode,
        "params": params,
    }


def caption_vs_sampling(steps=20, resolution=512, prompt_tokens=22, new_tokens=64):
    """The two per image and their ratio: {"unet_step", "sampling", "caption": {...}, "ratio"}."""
    step = unet_step_flops(resolution)
    caption = llava_caption_flops(prompt_tokens, new_tokens)
    return {"unet_step": step, "sampling": steps * step, "caption": caption, "ratio": caption["total"] / (steps * step)}


def summary(result, steps, resolution, new_tokens):
    c = result["caption"]
    return (
        f"per image: SD v1.4 sampling {result['sampling'] / 1e12:.1f} TFLOP ({steps} steps x "
        f"{result['unet_step'] / 1e12:.2f} on the CFG pair at {resolution} px); LLaVA v1.5 7B captioning "
        f"({c['params'] / 1e9:.2f}B parameters) {c['total'] / 1e12:.2f} TFLOP (vision {c['vision'] / 1e12:.2f}, "
        f"prefill of {IMAGE_TOKENS} image + question tokens {c['prefill'] / 1e12:.2f}, {new_tokens} decode steps "
        f"{c['decode'] / 1e12:.2f}) = {result['ratio']:.0%} of the sampling's; "
        f"its decode steps each read the {2 * c['params'] / 1e9:.1f} GB of fp16 weights once per batch"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m b2diffurl.flops", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps of the sampling (sample.num_steps)")
    parser.add_argument("--resolution", type=int, default=512, help="image pixels (latents are resolution / 8)")
    parser.add_argument(
        "--prompt-tokens", type=int, default=22, help="tokens of the captioner's question around the image"
    )
    parser.add_argument(
        "--new-tokens", type=int, default=64, help="caption tokens generated (reward.caption_max_tokens)"
    )
    args = parser.parse_args(argv)
    for name in ("steps", "resolution", "prompt_tokens", "new_tokens"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')}={getattr(args, name)} must be at least 1", file=sys.stderr)
            return 2
    result = caption_vs_sampling(args.steps, args.resolution, args.prompt_tokens, args.new_tokens)
    print(summary(result, args.steps, args.resolution, args.new_tokens))
    return 0


if __name__ == "__main__":
    sys.exit(main())
