"""The toy world's captioning reward: BERTScore's part on the CPU (``reward.name = "toycaption"``).

The paper's second reward captions each image with LLaVA and scores the caption against the prompt
by BERTScore recall (:mod:`.bertscore`). Here:

- **Caption**: what the toy world's object detector (:mod:`b2diffurl.toyworld.detect`) reads off
  the image, in the captions' own words (:func:`describe`): the objects grouped by colour and shape
  and counted ("two red circles and a blue square", groups left to right, counts above three read
  "three"), two single objects as a relation ("a red circle left of a blue square"), "nothing" for an
  empty image.
- **Recall**: BERTScore's recall (:func:`.bertscore.greedy_recall`) of the prompt (the reference)
  against the caption (the candidate), each token embedded by the reward's own toy CLIP text tower
  (its last layer after ``ln_final``: contextual, as BERTScore's DeBERTa layer). The start and end
  tokens weigh 0 in the reference and take part in the candidate; padding is masked.

Like a VLM caption scored by BERTScore, it can disagree with the truth: recall ignores what the
caption adds (every token of "two red circles" is recalled by "two red circles and a blue square"),
words close in the embedding earn part of the credit ("two" for "three"), and the detector misses
what a blurry sample draws badly. The held-out metric stays the detector's exact rule
(:func:`b2diffurl.toyworld.world.shows`), which this soft score only approximates.
"""

from b2diffurl.rewards.base import check_inputs
from b2diffurl.rewards.clipscore import ClipScore

# open_clip's BPE tokenizer: start and end of text, padding
START, END, PAD = 49406, 49407, 0


def describe(scene):
    """A caption of a detected :class:`~b2diffurl.toyworld.world.Scene`, in the toy captions' words."""
    from b2diffurl.toyworld.world import COUNTS, caption_template3, plural

    groups = {}  # (colour, shape) -> x of every object of it
    for obj in scene.objects:
        groups.setdefault((obj.colour, obj.shape), []).append(obj.x)
    if not groups:
        return "nothing"
    ordered = sorted(groups.items(), key=lambda item: min(item[1]))  # left to right
    if len(ordered) == 2 and all(len(xs) == 1 for _, xs in ordered):
        (c1, s1), (c2, s2) = (key for key, _ in ordered)
        return caption_template3(c1, s1, "left of", c2, s2)
    words = {n: w for w, n in COUNTS.items()}
    phrases = []
    for (colour, shape), xs in ordered:
        count = min(len(xs), max(words))
        phrases.append(f"a {colour} {shape}" if count == 1 else f"{words[count]} {colour} {plural(shape)}")
    return " and ".join(phrases)


class ToyCaption:
    """``scorer(images, prompts)`` -> recall [N] (float32, CPU) of each image's detected caption against
    its prompt, with the toy CLIP of ``reward.clip_model`` / ``reward.clip_pretrained`` embedding the
    tokens; ``last_captions`` holds the captions of the last call, for the record."""

    def __init__(self, reward_config, device="cpu"):
        cfg = reward_config
        self.clip = ClipScore(cfg.clip_model, cfg.clip_pretrained, cfg.batch_size, device, "fp32")
        self.last_captions = []

    def token_embeddings(self, texts):
        """(embeddings [B, L, W], tokens [B, L]) of texts: the text tower's last layer, per token."""
        import torch

        model = self.clip.model
        tokens = self.clip.tokenizer(texts).to(self.clip.device)  # [B, L]
        with torch.no_grad():
            x = model.token_embedding(tokens) + model.positional_embedding  # [B, L, W]
            x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))
        return x.float(), tokens

    def recall(self, captions, references):
        """BERTScore recall [N] of each caption (candidate) against its reference, batch_size pairs at a time."""
        import torch

        from b2diffurl.rewards.bertscore import greedy_recall

        out = []
        for i in range(0, len(captions), self.clip.batch_size):
            cand, cand_tokens = self.token_embeddings(captions[i : i + self.clip.batch_size])
            ref, ref_tokens = self.token_embeddings(references[i : i + self.clip.batch_size])
            weight = (ref_tokens != PAD) & (ref_tokens != START) & (ref_tokens != END)  # [B, R]
            out.append(greedy_recall(ref, weight, cand, cand_tokens != PAD).cpu())
        return torch.cat(out)

    def __call__(self, images, prompts):
        import torch

        from b2diffurl.toyworld.detect import detect

        check_inputs(images, prompts)
        if len(prompts) == 0:
            return torch.zeros(0)
        self.last_captions = [describe(detect(image)) for image in images.cpu().numpy()]
        return self.recall(self.last_captions, list(prompts))

    def record(self):
        """scores.json's extra fields: the captions of the last call, one per image."""
        return {"captions": list(self.last_captions)}
