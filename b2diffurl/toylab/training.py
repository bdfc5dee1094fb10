"""Pretraining the toy world's models on rendered (image, caption) pairs, from fixed seeds.

- :func:`render_dataset`: captions drawn uniformly over the three templates (then over the
  template's captions, held-out ones included: the base model knows the whole world, as SD does),
  each with a random scene.
- :func:`train_vae`: AutoencoderKL, L1 + L2 reconstruction + a small KL term; then its
  ``scaling_factor`` is set to 1 / std of the latents (SD v1.4's 0.18215 plays this role).
- :func:`train_diffusion`: UNet + text encoder together, SD's epsilon-prediction loss on SD v1.4's
  noise schedule, 10% of captions dropped to "" (for classifier-free guidance), an EMA of the weights.
- :func:`train_clip`: the reward's open_clip model, contrastive, each image against every caption of
  its template (so every hard negative: another colour, shape, count, the swapped relation), captions
  of the same meaning counted as right, template 3 oversampled; on rendered images and their VAE
  reconstructions (so it has seen decoded, slightly blurred images like the generated ones).
"""

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from b2diffurl.toyworld.world import (
    COLOURS,
    COUNTS,
    SHAPES,
    all_captions,
    caption_template1,
    caption_template2,
    caption_template3,
    meaning,
    parse,
    render,
    sample_scene,
)

CAPTION_DROPOUT = 0.1
# share of each template (1, 2, 3) in the CLIP reward's training batches
CLIP_TEMPLATE_SHARE = (0.25, 0.35, 0.4)
EMA_DECAY = 0.999


def world_captions():
    """Every caption of the three templates, in a fixed order."""
    return [c for template in (1, 2, 3) for c in all_captions(template)]


def render_dataset(n, seed, size=32):
    """(uint8 images [n, size, size, 3], caption indices [n] into :func:`world_captions`)."""
    rng = np.random.default_rng(seed)
    captions = world_captions()
    by_template = [[captions.index(c) for c in all_captions(t)] for t in (1, 2, 3)]
    index = np.array([by_template[t][rng.integers(len(by_template[t]))] for t in rng.integers(3, size=n)])
    images = np.stack([render(sample_scene(captions[i], rng), size) for i in tqdm(index, desc="render", leave=False)])
    return torch.from_numpy(images), torch.from_numpy(index)


def to_pixels(images):
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [-1, 1] (what the VAE takes)."""
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1


def to_uint8(pixels):
    """float [N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3] (as the pipeline decodes)."""
    return ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


def _cosine_lr(optimizer, base_lr, step, total, warmup=100):
    lr = base_lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / total))
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_vae(vae, images, steps, batch_size=64, lr=2e-3, kl_weight=1e-6, seed=0):
    """Train ``vae`` in place on uint8 images [N, H, W, 3]; returns the last 100 steps' mean L2 loss."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    vae.train()
    losses = []
    for step in (bar := tqdm(range(steps), desc="VAE")):
        _cosine_lr(optimizer, lr, step, steps)
        x = to_pixels(images[torch.randint(len(images), (batch_size,), generator=generator)])
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
        recon = vae.decode(z).sample
        l2 = F.mse_loss(recon, x)
        loss = l2 + F.l1_loss(recon, x) + kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        losses.append(l2.item())
        if step % 20 == 0:
            bar.set_postfix(mse=f"{np.mean(losses[-20:]):.4f}")
    vae.eval()
    return float(np.mean(losses[-100:]))


@torch.no_grad()
def encode_latents(vae, images, batch_size=256):
    """Posterior (mean, std) [N, 4, h, w] of uint8 images, unscaled."""
    means, stds = [], []
    for chunk in images.split(batch_size):
        posterior = vae.encode(to_pixels(chunk)).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def decode_latents(vae, latents, batch_size=256):
    """uint8 images [N, H, W, 3] of unscaled latents [N, 4, h, w]."""
    return torch.cat([to_uint8(vae.decode(chunk).sample) for chunk in latents.split(batch_size)])


def set_scaling_factor(vae, latent_means):
    """SD's latent scaling: 1 / std of the latents, so the UNet sees unit-variance latents."""
    factor = float(1.0 / latent_means.std())
    vae.register_to_config(scaling_factor=factor)
    return factor


def token_ids(tokenizer, texts):
    """[len(texts), model_max_length] ids, padded as the pipeline pads prompts."""
    return tokenizer(
        texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


class EMA:
    """Exponential moving average of a module's parameters (the weights that are saved)."""

    def __init__(self, module, decay=EMA_DECAY):
        self.decay = decay
        self.shadow = copy.deepcopy(module).requires_grad_(False)

    @torch.no_grad()
    def update(self, module, step):
        decay = min(self.decay, (1 + step) / (10 + step))
        for ema, p in zip(self.shadow.parameters(), module.parameters()):
            ema.lerp_(p, 1 - decay)


def train_diffusion(
    unet,
    text_encoder,
    tokenizer,
    alphas_cumprod,
    latent_means,
    latent_stds,
    caption_index,
    captions,
    steps,
    scaling_factor,
    batch_size=64,
    lr=1e-3,
    seed=0,
):
    """Train UNet + text encoder together (epsilon prediction, caption dropout); returns the EMA copies
    (unet, text_encoder) and the last 100 steps' mean loss."""
    generator = torch.Generator().manual_seed(seed)
    ids = token_ids(tokenizer, captions + [""])  # [C + 1, L]; the last row is the dropped caption
    empty = len(captions)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    ema_unet, ema_text = EMA(unet), EMA(text_encoder)
    unet.train()
    text_encoder.train()
    alphas_cumprod = alphas_cumprod.float()
    losses = []
    for step in (bar := tqdm(range(steps), desc="UNet + text encoder")):
        _cosine_lr(optimizer, lr, step, steps, warmup=200)
        batch = torch.randint(len(latent_means), (batch_size,), generator=generator)
        latents = (
            latent_means[batch] + latent_stds[batch] * torch.randn(latent_means[batch].shape, generator=generator)
        ) * scaling_factor
        rows = caption_index[batch].clone()
        rows[torch.rand(batch_size, generator=generator) < CAPTION_DROPOUT] = empty
        t = torch.randint(len(alphas_cumprod), (batch_size,), generator=generator)
        noise = torch.randn(latents.shape, generator=generator)
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise  # q(x_t | x_0), as DDPMScheduler.add_noise
        embeds = text_encoder(ids[rows])[0]  # [B, L, D]: what the pipeline feeds the UNet
        loss = F.mse_loss(unet(noisy, t, encoder_hidden_states=embeds).sample, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        ema_unet.update(unet, step)
        ema_text.update(text_encoder, step)
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    return ema_unet.shadow.eval(), ema_text.shadow.eval(), float(np.mean(losses[-100:]))


def hard_negative(caption, rng):
    """A caption of the same template that differs in one named attribute: a colour, a shape, a count
    (template 2) or the relation (template 3, also by swapping the two objects)."""
    groups, relation = parse(caption)
    colours, shapes, counts = list(COLOURS), list(SHAPES), list(COUNTS)

    def other(options, value):
        rest = [o for o in options if o != value]
        return rest[rng.integers(len(rest))]

    if relation is None and groups[0][0] == 1 and caption.startswith("a "):
        _, colour, shape = groups[0]
        if rng.random() < 0.5:
            return caption_template1(other(colours, colour), shape)
        return caption_template1(colour, other(shapes, shape))
    if relation is None:
        count, colour, shape = groups[0]
        word = counts[count - 1]
        kind = rng.integers(3)
        if kind == 0:
            return caption_template2(other(counts, word), colour, shape)
        if kind == 1:
            return caption_template2(word, other(colours, colour), shape)
        return caption_template2(word, colour, other(shapes, shape))
    (_, c1, s1), (_, c2, s2) = groups
    flipped = "right of" if relation == "left of" else "left of"
    kind = rng.integers(4)
    if kind == 0:
        return caption_template3(c1, s1, flipped, c2, s2)
    if kind == 1:
        return caption_template3(c2, s2, relation, c1, s1)
    if kind == 2:
        colour = other(colours, c1)
        return (
            caption_template3(colour, s1, relation, c2, s2)
            if (colour, s1) != (c2, s2)
            else caption_template3(c1, s1, flipped, c2, s2)
        )
    shape = other(shapes, s2)
    return (
        caption_template3(c1, s1, relation, c2, shape)
        if (c1, s1) != (c2, shape)
        else caption_template3(c1, s1, flipped, c2, s2)
    )


def clip_pixels(model, images):
    """uint8 [N, H, W, 3] -> open_clip's normalised pixels [N, 3, H, W] (its eval transform at the
    model's own size: resize and crop are the identity)."""
    mean = torch.tensor(model.visual.preprocess_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.visual.preprocess_cfg["std"]).view(1, 3, 1, 1)
    return (images.permute(0, 3, 1, 2).float() / 255 - mean) / std


def mirror(caption):
    """What a template-3 caption's image shows once mirrored left to right: the other relation."""
    ((_, c1, s1), (_, c2, s2)), relation = parse(caption)
    return caption_template3(c1, s1, "right of" if relation == "left of" else "left of", c2, s2)


def template_of(caption):
    """1, 2 or 3: the template a world caption follows."""
    if parse(caption)[1] is not None:
        return 3
    return 1 if caption.startswith("a ") else 2


def train_clip(
    model,
    tokenize,
    images,
    caption_index,
    captions,
    steps,
    batch_size=128,
    lr=1e-3,
    seed=0,
    template_share=CLIP_TEMPLATE_SHARE,
):
    """Contrastive training of an open_clip model in place; returns the last 100 steps' mean loss.

    Batches draw images by template (``template_share``: template 3's relations are the hardest to
    learn, so they get more of the batch), and each template-3 image comes twice: as drawn and
    mirrored left to right with the other relation (CLIP-style models otherwise read a caption as a
    bag of words and ignore which object is where). Image -> text: cross-entropy over every caption of the
    image's own template (all its hard negatives at once: other colours, shapes, counts, the swapped
    relation), with every caption of the same :func:`meaning` a positive (``a red circle left of a
    blue square`` is as true as ``a blue square right of a red circle``). Text -> image: each caption
    of the batch against the batch's images, every image it is true of a positive.
    """
    generator = torch.Generator().manual_seed(seed)
    tokens = tokenize(captions)  # [C, L]
    template = torch.tensor([template_of(c) for c in captions])  # [C]
    meanings = {m: k for k, m in enumerate(dict.fromkeys(meaning(c) for c in captions))}
    meaning_id = torch.tensor([meanings[meaning(c)] for c in captions])  # [C]
    same_template = template.view(-1, 1) == template.view(1, -1)  # [C, C]
    same_meaning = meaning_id.view(-1, 1) == meaning_id.view(1, -1)  # [C, C]
    row_of = {c: k for k, c in enumerate(captions)}
    mirrored = torch.tensor([row_of[mirror(c)] if template_of(c) == 3 else -1 for c in captions])  # [C]
    image_template = template[caption_index]  # [N]
    share = torch.tensor(template_share, dtype=torch.float64)
    counts = torch.bincount(image_template, minlength=4)[1:].double()
    weights = (share / counts.clamp(min=1))[image_template - 1]  # [N]: each template's share of a batch
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    model.train()
    losses = []
    for step in (bar := tqdm(range(steps), desc="CLIP reward")):
        _cosine_lr(optimizer, lr, step, steps)
        batch = torch.multinomial(weights, batch_size, replacement=True, generator=generator)
        own = caption_index[batch]  # [B] caption rows
        pixels = clip_pixels(model, images[batch])  # [B, 3, H, W]
        # each relation image also mirrored, with the other relation: the same objects, the order
        # swapped, the hardest negative of both (the shapes are left-right symmetric)
        relational = mirrored[own] >= 0  # [B]
        pixels = torch.cat([pixels, pixels[relational].flip(-1)])  # [B', 3, H, W]
        own = torch.cat([own, mirrored[own[relational]]])  # [B']
        image_features = F.normalize(model.encode_image(pixels), dim=-1)  # [B', D]
        text_features = F.normalize(model.encode_text(tokens), dim=-1)  # [C, D]: every world caption
        logits = model.logit_scale.exp() * image_features @ text_features.T  # [B', C]
        # image -> text, over the image's template's captions; the captions it is true of are positives
        candidates, positives = same_template[own], same_meaning[own]  # [B', C]
        image_loss = (
            logits.masked_fill(~candidates, -torch.inf).logsumexp(1)
            - logits.masked_fill(~positives, -torch.inf).logsumexp(1)
        ).mean()
        # text -> image, for the batch's own captions: over the batch's images, those it is true of positive
        present = own.unique()  # [P]
        text_logits = logits[:, present].T  # [P, B']
        true_of = same_meaning[present][:, own]  # [P, B']
        text_loss = (text_logits.logsumexp(1) - text_logits.masked_fill(~true_of, -torch.inf).logsumexp(1)).mean()
        loss = (image_loss + text_loss) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    model.eval()
    return float(np.mean(losses[-100:]))
