"""CLIPScore, the paper's reward: cosine similarity of open_clip image and prompt embeddings."""

import os

from b2diffurl.choices import registry
from b2diffurl.rewards.base import check_inputs

# reward.precision (b2diffurl.choices.REWARD_PRECISIONS) -> torch dtype name of ClipScore's pixels (and of
# open_clip's matmul weights).
PRECISIONS = registry(
    {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}, "REWARD_PRECISIONS", "b2diffurl.rewards.PRECISIONS"
)


def load_open_clip(name, pretrained, precision, device):
    """(model, eval transform) of open_clip model ``name`` with the weights of ``pretrained`` (a tag, a
    local checkpoint file, or "" for random weights), built without random initialisation and filled
    one tensor at a time (:mod:`b2diffurl.weights`): the load's peak is the model plus its largest
    tensor, where open_clip's own load holds a random model and the whole checkpoint at once. A
    checkpoint that needs open_clip's conversions (another layout, resized position embeddings) is
    loaded by open_clip instead."""
    import open_clip

    from b2diffurl.weights import no_random_init, stream_into

    if not pretrained:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=None, precision=precision, device=device
        )
        return model, preprocess
    # the checkpoint file: a local one, or the tag's (downloaded into open_clip's cache, or found there offline)
    path = pretrained if os.path.isfile(pretrained) else None
    with no_random_init():  # the model's memory is allocated, not filled: every tensor comes from the checkpoint
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, load_weights=False, precision=precision, device=device
        )
    if path is None:
        tag = open_clip.get_pretrained_cfg(name, pretrained)
        path = open_clip.download_pretrained(tag) if tag else None
    problem = (
        stream_into(model, path, ignore=("text.transformer.embeddings.position_ids",)) if path else "no checkpoint file"
    )
    if problem:
        del model
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, precision=precision, device=device
        )
    return model, preprocess


class ClipScore:
    """CLIPScore: cos(image embedding, prompt embedding) of an open_clip model, in [-1, 1].

    ``clip_model`` is an open_clip architecture name (``ViT-H-14``) or the path of an open_clip model
    config ``NAME.json`` (registered with open_clip under NAME). ``clip_pretrained`` is an open_clip
    pretrained tag (``laion2b_s32b_b79k``, downloaded by open_clip) or a local checkpoint file
    (``.safetensors``, ``.bin``, ``.pt``). Images get open_clip's own evaluation transform; the score is
    not multiplied by 100 and not clamped.

    Scoring runs without TF32 (:func:`b2diffurl.tf32.full_precision`), whatever the stage allows for its UNet.

    ``precision`` is open_clip's: "fp32" (the default, as the official code scores: branch images differ
    by < 0.01 CLIPScore, so fp16 rounding could flip which branch is best or worst), or "fp16" / "bf16"
    (matmul weights and pixels in half precision, layer norms in fp32: faster on a GPU).
    """

    def __init__(self, clip_model, clip_pretrained, batch_size=32, device="cpu", precision="fp32"):
        import open_clip
        import torch

        if batch_size < 1:
            raise ValueError(f"reward.batch_size={batch_size} must be >= 1")
        if precision not in PRECISIONS:
            raise ValueError(f"reward.precision={precision!r} is not known; choose from {list(PRECISIONS)}")
        name = clip_model
        if clip_model.endswith(".json"):
            if not os.path.isfile(clip_model):
                raise FileNotFoundError(
                    f"reward.clip_model={clip_model!r} does not exist: pass an open_clip config JSON or a model name"
                )
            open_clip.add_model_config(clip_model)
            name = os.path.splitext(os.path.basename(clip_model))[0]
        self.device = torch.device(device)
        self.dtype = getattr(torch, PRECISIONS[precision])  # of the pixels fed to the image tower
        try:
            model, self.preprocess = load_open_clip(name, clip_pretrained, precision, self.device)
        except (OSError, RuntimeError, ValueError) as err:  # unknown name or tag, not cached offline, corrupt file
            from b2diffurl.errors import ConfigError, first_line

            raise ConfigError(
                "reward.clip_pretrained",
                clip_pretrained,
                f"could not be loaded for reward.clip_model={clip_model!r} "
                f"({first_line(err)}): use a cached or reachable open_clip tag, or a local checkpoint file",
            ) from None
        # open_clip returns the model in training mode.
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(name)
        self.batch_size = batch_size

    def _image_features(self, images):
        import torch
        import torch.nn.functional as F
        from PIL import Image

        from b2diffurl.tf32 import full_precision

        # images: uint8 [B, H, W, 3] -> pixels [B, 3, S, S] with open_clip's eval transform (it takes PIL images)
        pixels = torch.stack([self.preprocess(Image.fromarray(image)) for image in images.cpu().numpy()])
        with full_precision():  # no TF32: close branch scores stay apart
            features = self.model.encode_image(pixels.to(self.device, self.dtype))  # [B, D]
        return F.normalize(features.float(), dim=-1)

    def _text_features(self, prompts):
        import torch.nn.functional as F

        from b2diffurl.tf32 import full_precision

        tokens = self.tokenizer(prompts).to(self.device)  # [P, context_length]
        with full_precision():
            return F.normalize(self.model.encode_text(tokens).float(), dim=-1)  # [P, D]

    def __call__(self, images, prompts):
        import torch

        check_inputs(images, prompts)
        if len(prompts) == 0:
            return torch.zeros(0)
        with torch.no_grad():
            return self._scores(images, prompts)

    @property
    def logit_scale(self):
        """CLIP's learned softmax temperature (exp of its ``logit_scale``), for zero-shot classification."""
        return self.model.logit_scale.exp().float().item()

    def embed_texts(self, texts):
        """L2-normalised text embeddings [P, D] (fp32, on the model's device), ``batch_size`` texts at a time."""
        import torch

        with torch.no_grad():
            return torch.cat(
                [self._text_features(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
            )

    def embed_images(self, images):
        """L2-normalised image embeddings [N, D] (fp32) of uint8 images [N, H, W, 3], ``batch_size`` at a time."""
        import torch

        with torch.no_grad():
            return torch.cat([self._image_features(chunk) for chunk in images.split(self.batch_size)])

    def scores_from_features(self, image_features, prompts):
        """CLIPScore [N] (fp32, CPU) of image embeddings [N, D] against their N prompts (each distinct prompt
        encoded once)."""
        import torch

        row = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
        text = self.embed_texts(list(row))  # [P, D]
        index = torch.tensor([row[p] for p in prompts], device=text.device)  # [N] -> row of text
        return (image_features.to(text.device) * text[index]).sum(dim=-1).cpu()  # [N] float32

    def _scores(self, images, prompts):
        return self.scores_from_features(self.embed_images(images), prompts)
