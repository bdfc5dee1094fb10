"""BERTScore's cost in arithmetic (b2diffurl.flops): the counted FLOPs of LLaVA's captioning against a
hand count of its matrix products, and of SD v1.4's UNet."""

import pytest

from b2diffurl import flops


def test_llava_caption_flops_match_a_hand_count():
    """Each token through Vicuna-7B's 32 layers costs 2 x its layer weights (4 attention projections of
    4096 x 4096, 3 MLP matrices of 4096 x 11008) plus attention, 2 x 2 x keys x 4096 per layer."""
    tokens, new = flops.IMAGE_TOKENS + 22, 64
    c = flops.llava_caption_flops(prompt_tokens=22, new_tokens=new)
    layer_weights = 4 * 4096 * 4096 + 3 * 4096 * 11008
    head = 2 * 4096 * 32064
    prefill = 32 * (2 * layer_weights * tokens + 2 * 2 * tokens * tokens * 4096) + head
    decode = sum(32 * (2 * layer_weights + 2 * 2 * (tokens + i + 1) * 4096) + head for i in range(new))
    assert c["prefill"] == pytest.approx(prefill, rel=0.01) and c["decode"] == pytest.approx(decode, rel=0.01)
    assert c["params"] == pytest.approx(7.06e9, rel=0.005), "LLaVA v1.5 7B"
    # the vision tower: 24 layers of ViT-L on 577 tokens, about 2 x 0.30B weights x 577
    assert c["vision"] == pytest.approx(2 * 0.30e9 * 577, rel=0.2)
    assert c["total"] == c["vision"] + c["prefill"] + c["decode"]


def test_the_unet_step_and_the_ratio():
    small, big = flops.unet_step_flops(256), flops.unet_step_flops(512)
    assert big == pytest.approx(1.607e12, rel=0.01), "SD v1.4 at 64 x 64 latents, CFG pair"
    assert 3.9 < big / small < 5.0, "4x the pixels, and attention grows faster"
    result = flops.caption_vs_sampling(steps=20, resolution=512)
    assert result["sampling"] == 20 * big and result["ratio"] == pytest.approx(result["caption"]["total"] / (20 * big))
    assert 0.25 < result["ratio"] < 0.33
    assert flops.main(["--steps", "0"]) == 2
