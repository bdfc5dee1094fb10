"""A CLIP text encoder with random weights, of any shape: the one builder of the tiny pipeline's
encoders (:mod:`b2diffurl.tiny`), the toy world's (:mod:`b2diffurl.toyworld.models`) and the
paper-scale benchmark's (:mod:`b2diffurl.bench.models`).

The weights come from torch's global generator, which the caller seeds; the special tokens' ids are
those of the vocabulary the encoder is paired with (the end token also pads, as in CLIP).
"""

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"


def random_text_encoder(shape, vocab, projection=False):
    """A random ``CLIPTextModel`` (``projection``: ``CLIPTextModelWithProjection``, whose pooled output
    is projected) of ``shape`` (CLIPTextConfig's fields), its special tokens' ids looked up in ``vocab``."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        **shape,
        bos_token_id=vocab[START_TOKEN],
        eos_token_id=vocab[END_TOKEN],
        pad_token_id=vocab[END_TOKEN],
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)
