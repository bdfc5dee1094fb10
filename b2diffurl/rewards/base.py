"""What every reward shares: the scorer's input contract (uint8 images [N, H, W, 3], one prompt each)."""


def check_inputs(images, prompts):
    import torch

    if not (
        isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.ndim == 4 and images.shape[-1] == 3
    ):
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a uint8 tensor [N, H, W, 3] (RGB); got {got}")
    if len(prompts) != images.shape[0]:
        raise ValueError(f"got {images.shape[0]} images but {len(prompts)} prompts: pass one prompt per image")
