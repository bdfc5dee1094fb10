"""Tiny random text models for the BERTScore reward, built in code (nothing is downloaded): a
DeBERTa encoder for the recall and a LLaVA captioner, with a word-level tokenizer over the words of
the prompt lists. Loaded through AutoTokenizer / AutoModel and AutoProcessor /
LlavaForConditionalGeneration exactly as DeBERTa-xlarge-MNLI and LLaVA v1.5 are. Their scores mean
nothing; they carry the code path on the CPU.
"""

import glob
import json
import os
import re

from b2diffurl.configs import REPO_ROOT

TINY_TEXT_VERSION = 1
DEFAULT_TINY_TEXT_DIR = os.path.join(REPO_ROOT, "model", f"tiny-text-v{TINY_TEXT_VERSION}")
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "<s>", "</s>", "<image>"]
EXTRA_WORDS = "the image contains a an of in on with and is this picture shows what going answer concisely".split()


def vocabulary():
    """Special tokens, then every lower-case word of prompts/*.json and a few of the captions' own words."""
    words = set(EXTRA_WORDS)
    for path in sorted(glob.glob(os.path.join(REPO_ROOT, "prompts", "*.json"))):
        with open(path) as f:
            for prompt in json.load(f):
                words.update(re.findall(r"[a-z]+", prompt.lower()))
    tokens = SPECIAL + sorted(words) + list(".,:;?!'-")
    return {token: i for i, token in enumerate(tokens)}


def tokenizer(cls="[CLS]", sep="[SEP]"):
    """A word-level fast tokenizer: lower-cased words and punctuation; ``cls ... sep`` around each text
    (``cls`` alone, ``sep=None``: a BOS before it, as Llama's)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = vocabulary()
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if sep is None:
        tok.post_processor = processors.TemplateProcessing(single=f"{cls} $A", special_tokens=[(cls, vocab[cls])])
    else:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])]
        )
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    if sep is None:  # a causal LM's tokenizer
        return PreTrainedTokenizerFast(
            tokenizer_object=tok,
            unk_token="[UNK]",
            pad_token="[PAD]",
            bos_token=cls,
            eos_token="</s>",
            model_max_length=256,
            extra_special_tokens={"image_token": "<image>"},
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token=cls, sep_token=sep, model_max_length=128
    )


def _build_deberta(out_dir, seed):
    import torch
    from transformers import DebertaConfig, DebertaModel

    tok = tokenizer()
    torch.manual_seed(seed)
    config = DebertaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tok.pad_token_id,
    )
    DebertaModel(config).save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


# LLaVA v1.5's conversation format ("USER: <image>\n<question> ASSISTANT:"), as its processor's chat template gives it
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: {% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n{% else %}{{ part['text'] }}{% endif %}{% endfor %} {% endif %}{% endfor "
    "%}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def _build_llava(out_dir, seed):
    """LLaVA v1.5's architecture, tiny: a CLIP vision tower (32 x 32 pixels, 8-pixel patches: 16 image
    tokens), a 2-layer projector and a 2-layer Llama, with a processor that expands ``<image>``."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tok = tokenizer(cls="<s>", sep=None)
    image_token = tok.convert_tokens_to_ids("<image>")
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    text = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token,
        image_seq_length=16,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out_dir)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    LlavaProcessor(
        image_processor=images,
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    ).save_pretrained(out_dir)


def build_tiny_text_models(out_dir=DEFAULT_TINY_TEXT_DIR, seed=0):
    """Write ``deberta/`` (the recall's encoder, 4 layers) and ``llava/`` (the captioner) under
    ``out_dir``; returns ``out_dir``."""

    def build(tmp):
        _build_deberta(os.path.join(tmp, "deberta"), seed)
        _build_llava(os.path.join(tmp, "llava"), seed)

    from b2diffurl.tiny import build_atomically

    return build_atomically(out_dir, build)
