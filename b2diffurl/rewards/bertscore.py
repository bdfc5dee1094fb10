"""BERTScore recall, the text half of the paper's second reward (Sec. 4.1: a LLaVA caption of the
image compared with the prompt by BERTScore with DeBERTa-xlarge-MNLI; the release it follows scores
the caption as BERTScore's *candidate* against "The image contains <prompt>" as its *reference*, and
rewards the recall).

BERTScore (Zhang et al., 2020) embeds both texts with a layer of a pretrained encoder (layer 40 of
``microsoft/deberta-xlarge-mnli``), and the recall is the mean, over the reference's tokens, of each
token's best cosine similarity with any candidate token. As the ``bert-score`` package defines it:

- reference tokens are weighted by idf, or without idf (the release's setting) by 1, except the
  tokenizer's [CLS] and [SEP], which weigh 0;
- the candidate's [CLS] and [SEP] still take part in the maximum;
- padding takes part too, at similarity 0 (the package multiplies the similarity matrix by the
  padding mask before the maximum), which matters only when every real similarity of a token is
  negative.
"""

import os

from b2diffurl.choices import registry
from b2diffurl.rewards.base import check_inputs

# BERTScore's layer for microsoft/deberta-xlarge-mnli (the bert-score package's table; 48 layers in all)
DEBERTA_XLARGE_MNLI_LAYER = 40


def greedy_recall(reference, reference_weight, candidate, candidate_mask):
    """BERTScore recall of each reference against its candidate, from token embeddings.

    reference [B, R, D] and candidate [B, C, D] token embeddings (any scale: they are normalised here);
    reference_weight [B, R]: each reference token's weight (idf, or 1), 0 for [CLS], [SEP] and padding;
    candidate_mask [B, C]: 1 for the candidate's tokens ([CLS] and [SEP] included), 0 for padding.
    Returns recall [B] (float32) = sum_r w_r * max_c cos(ref_r, cand_c) / sum_r w_r, with padded
    candidate positions at similarity 0 (see the module's notes).
    """
    import torch.nn.functional as F

    ref = F.normalize(reference.float(), dim=-1)  # [B, R, D]
    cand = F.normalize(candidate.float(), dim=-1)  # [B, C, D]
    sim = ref @ cand.transpose(1, 2)  # [B, R, C]
    sim = sim * candidate_mask.float()[:, None, :]  # padding -> 0, as the package's mask product
    best = sim.max(dim=2).values  # [B, R]
    weight = reference_weight.float()
    return (best * weight).sum(dim=1) / weight.sum(dim=1)  # [B]


class RecallScorer:
    """BERTScore recall with one layer of a transformers encoder (DeBERTa-xlarge-MNLI in the paper).

    ``model`` is a local folder or a hub name (loaded with AutoTokenizer / AutoModel, from the cache
    when offline); ``layer`` the encoder layer whose output embeds the tokens (1-based, as BERTScore
    counts: the layers above it are dropped, never run). ``recall(candidates, references)`` returns
    recall [N] (float32, CPU), ``batch_size`` pairs at a time, without idf weighting (the release's).
    """

    def __init__(self, model, layer=DEBERTA_XLARGE_MNLI_LAYER, batch_size=64, device="cpu", dtype="float32"):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model)
        encoder = AutoModel.from_pretrained(model, dtype=getattr(torch, dtype))
        layers = encoder.encoder.layer  # [num_hidden_layers] blocks, run in order
        if not 1 <= layer <= len(layers):
            raise ValueError(
                f"reward.bertscore_layer={layer} is not a layer of {model} (1..{len(layers)}): use its BERTScore layer"
            )
        encoder.encoder.layer = layers[:layer]
        self.model = encoder.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.special = [i for i in (self.tokenizer.cls_token_id, self.tokenizer.sep_token_id) if i is not None]

    def embed(self, texts):
        """Token embeddings [B, L, D] (fp32), token ids [B, L] and padding mask [B, L] of ``texts``."""
        import torch

        batch = self.tokenizer([t.strip() for t in texts], padding=True, truncation=True, return_tensors="pt").to(
            self.device
        )
        with torch.no_grad():
            hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return hidden.float(), batch["input_ids"], batch["attention_mask"]

    def recall(self, candidates, references):
        import torch

        if len(candidates) != len(references):
            raise ValueError(
                f"got {len(candidates)} candidates but {len(references)} references: pass one reference each"
            )
        out = []
        for i in range(0, len(candidates), self.batch_size):
            ref, ref_ids, ref_mask = self.embed(references[i : i + self.batch_size])
            cand, _, cand_mask = self.embed(candidates[i : i + self.batch_size])
            weight = ref_mask.bool() & ~torch.isin(ref_ids, torch.tensor(self.special, device=ref_ids.device))  # [B, R]
            out.append(greedy_recall(ref, weight, cand, cand_mask).cpu())
        return torch.cat(out) if out else torch.zeros(0)


# the release's question (DDPO's LLaVA-BERTScore reward, which the paper's follows)
DEFAULT_QUESTION = "Answer concisely: what is going on in this image?"


class Captioner:
    """Captions of images from a LLaVA model (LLaVA v1.5 7B in the paper), greedy, so a rerun gives the
    same words: ``captioner(images uint8 [N, H, W, 3]) -> [N] strings``, ``batch_size`` images a
    generation, with the KV cache. The question goes through the processor's chat template."""

    def __init__(
        self, model, question=DEFAULT_QUESTION, max_new_tokens=64, batch_size=16, device="cpu", dtype="float32"
    ):
        import torch
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        self.processor = AutoProcessor.from_pretrained(model)
        self.processor.tokenizer.padding_side = "left"  # generation appends on the right
        self.dtype = getattr(torch, dtype)
        self.model = (
            LlavaForConditionalGeneration.from_pretrained(model, dtype=self.dtype)
            .eval()
            .requires_grad_(False)
            .to(device)
        )
        self.device = torch.device(device)
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        self.prompt = self.processor.apply_chat_template(conversation, add_generation_prompt=True)
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    def __call__(self, images):
        import torch
        from PIL import Image

        captions = []
        for chunk in images.split(self.batch_size):
            pil = [Image.fromarray(image) for image in chunk.cpu().numpy()]
            inputs = self.processor(images=pil, text=[self.prompt] * len(pil), return_tensors="pt", padding=True).to(
                self.device
            )
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
            with torch.no_grad():
                out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, use_cache=True)
            new = out[:, inputs["input_ids"].shape[1] :]  # [B, <= max_new_tokens]: the answer only
            captions += [c.strip() for c in self.processor.batch_decode(new, skip_special_tokens=True)]
        return captions


# reward.caption_precision besides "auto" (b2diffurl.choices.REWARD_PRECISIONS) -> torch dtype name
CAPTION_PRECISIONS = registry(
    {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"},
    "REWARD_PRECISIONS",
    "b2diffurl.rewards.bertscore.CAPTION_PRECISIONS",
)


def caption_dtype(precision, device):
    """reward.caption_precision -> torch dtype name: "auto" is fp16 on a GPU (the paper's), fp32 elsewhere."""
    if precision == "auto":
        return "float16" if str(device).startswith("cuda") else "float32"
    return CAPTION_PRECISIONS[precision]


class BertScore:
    """The paper's BERTScore reward: ``scorer(images, prompts)`` -> recall [N] of each image's LLaVA
    caption (the candidate) against ``reference.format(prompt=...)`` (the reference), in [-1, 1]
    (about 0.5 to 0.9 for DeBERTa-xlarge-MNLI's layer 40). ``last_captions`` holds the captions of
    the last call, for the record."""

    def __init__(self, reward_config, device="cpu"):
        cfg = reward_config
        if cfg.batch_size < 1:
            raise ValueError(f"reward.batch_size={cfg.batch_size} must be >= 1")
        if cfg.build_tiny_text:
            from b2diffurl.tiny_text import build_tiny_text_models

            for path in (cfg.captioner, cfg.bertscore_model):
                if not os.path.isdir(path):
                    build_tiny_text_models(os.path.dirname(os.path.abspath(path)))
        self.captioner = Captioner(
            cfg.captioner,
            cfg.caption_question,
            cfg.caption_max_tokens,
            cfg.batch_size,
            device,
            caption_dtype(cfg.caption_precision, device),
        )
        self.scorer = RecallScorer(cfg.bertscore_model, cfg.bertscore_layer, max(cfg.batch_size, 64), device)
        self.reference = cfg.caption_reference
        self.last_captions = []

    def __call__(self, images, prompts):
        import torch

        check_inputs(images, prompts)
        if len(prompts) == 0:
            return torch.zeros(0)
        self.last_captions = self.captioner(images)
        return self.scorer.recall(self.last_captions, [self.reference.format(prompt=p) for p in prompts])

    def record(self):
        """scores.json's extra fields: the captions of the last call, one per image."""
        return {"captions": list(self.last_captions)}
