"""TF32 matmuls: on for the UNet where ``config.allow_tf32`` asks for it, off while a reward scores.

TF32 (Ampere and later GPUs) runs fp32 matmuls and convolutions with a 10-bit mantissa: faster, and
harmless for the UNet's sampling and training (the official code enables it there). The reward is
another matter: the branches of one latent differ by less than 0.01 CLIPScore (paper App. F.1), so
selection and evaluation score at full fp32 precision, whatever the stage set for its UNet.

Only torch's legacy switches (``torch.backends.cuda.matmul.allow_tf32``, ``torch.backends.cudnn.allow_tf32``)
are used, as accelerate and diffusers do: torch refuses to read them once the newer ``fp32_precision``
API has been mixed in. On a CPU they are plain flags with no effect.
"""

from contextlib import contextmanager

import torch


def set_tf32(enabled):
    """Allow (or forbid) TF32 in fp32 matmuls and cuDNN convolutions for what follows."""
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)


def tf32_flags():
    """(matmul, cuDNN) TF32 switches as they are now."""
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@contextmanager
def full_precision():
    """TF32 off inside (reward scoring), the previous switches restored after."""
    matmul, cudnn = tf32_flags()
    set_tf32(False)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn
