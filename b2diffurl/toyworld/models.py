"""The toy world's model architectures: Stable Diffusion's parts, shrunk to 32 x 32 images.

The same classes as SD v1.4 (AutoencoderKL, UNet2DConditionModel with cross-attention, CLIPTextModel +
CLIPTokenizer, SD v1.4's noise schedule) and an open_clip CLIP for the reward, so the stage scripts load
the toy model through ``StableDiffusionPipeline.from_pretrained`` and ``open_clip`` exactly as they load
SD v1.4 and ViT-H-14. The VAE maps 32 x 32 x 3 pixels to 8 x 8 x 4 latents (SD's factor 8 would leave
4 x 4; here it is 4). Weights are built by :mod:`b2diffurl.toyworld.build` and committed under
:data:`MODEL_DIR`.
"""

import os

from b2diffurl.toyworld.world import COLOURS, COUNTS, RELATIONS, SHAPES, plural

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# The committed, built toy model: a diffusers folder, with the reward's open_clip model in clip/.
MODEL_DIR = os.path.join(PACKAGE_DIR, "model")
CLIP_NAME = "b2diffurl-toy-clip"
CLIP_WEIGHTS = "open_clip_model.safetensors"
IMAGE_SIZE = 32
LATENT_SIZE = 8
MAX_TOKENS = 16  # start + at most 10 words + end, padded

CLIP_CONFIG = {
    "embed_dim": 64,
    # 8 x 8 patches (a 4 x 4 grid): enough to tell colour, shape and which object is left, and 3.6x
    # faster to train than 4 x 4 patches
    "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 4, "width": 128, "head_width": 32, "patch_size": 8},
    # open_clip's own BPE tokenizer (49408 ids); captions are at most 12 tokens
    "text_cfg": {"context_length": MAX_TOKENS, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 3},
}


def clip_paths(model_dir=MODEL_DIR):
    """(open_clip config JSON, safetensors weights) of the toy reward, for ``reward.clip_model`` /
    ``reward.clip_pretrained``."""
    clip_dir = os.path.join(model_dir, "clip")
    return os.path.join(clip_dir, f"{CLIP_NAME}.json"), os.path.join(clip_dir, CLIP_WEIGHTS)


def world_words():
    """Every word a toy caption uses."""
    words = ["a", "of", *COLOURS, *SHAPES, *(plural(s) for s in SHAPES), *COUNTS]
    words += [w for relation in RELATIONS for w in relation.split()]
    return list(dict.fromkeys(words))


def tokenizer_vocab_and_merges():
    """A CLIP BPE vocabulary in which every world word is one token (any other text falls back to
    characters, as in :mod:`b2diffurl.tiny`): merges are added, lowest rank first, until each word
    of :func:`world_words` merges into itself."""
    from b2diffurl.tiny import tiny_tokenizer_vocab

    vocab = tiny_tokenizer_vocab()
    merges = []

    def segment(word):
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        rank = {m: i for i, m in enumerate(merges)}
        while len(symbols) > 1:
            best, i = min((rank.get((symbols[i], symbols[i + 1]), len(merges)), i) for i in range(len(symbols) - 1))
            if best == len(merges):
                break
            symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2 :]
        return symbols

    changed = True
    while changed:
        changed = False
        for word in world_words():
            symbols = segment(word)
            if len(symbols) > 1:
                merges.append((symbols[0], symbols[1]))
                vocab.setdefault(symbols[0] + symbols[1], len(vocab))
                changed = True
    return vocab, merges


def make_tokenizer():
    from transformers import CLIPTokenizer

    vocab, merges = tokenizer_vocab_and_merges()
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_TOKENS)


def make_text_encoder(vocab_size):
    """The toy model's text encoder (random), its special tokens' ids those of the tiny vocabulary."""
    from b2diffurl.textenc import random_text_encoder
    from b2diffurl.tiny import tiny_tokenizer_vocab

    shape = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=64,
    )
    return random_text_encoder(shape, tiny_tokenizer_vocab())


def make_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=IMAGE_SIZE,
    )


def make_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(64, 128),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=4,
        norm_num_groups=16,
    )


def make_scheduler():
    """SD v1.4's noise schedule (PNDM in its file, as SD v1.4 ships; the stages switch to DDIM)."""
    from b2diffurl.tiny import sd14_scheduler

    return sd14_scheduler()


def make_clip():
    """The reward's open_clip model (random), its config registered with open_clip under CLIP_NAME."""
    import json
    import tempfile

    import open_clip

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{CLIP_NAME}.json")
        with open(path, "w") as f:
            json.dump(CLIP_CONFIG, f)
        open_clip.add_model_config(path)
    return open_clip.create_model(CLIP_NAME, pretrained=None)
