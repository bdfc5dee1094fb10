"""A toy text-to-image world small enough to learn in on a CPU (issue 8, in progress).

``world``: the deterministic renderer of captioned scenes, the caption templates and their
train / held-out prompt lists. The models trained on it (VAE, text encoder, UNet, CLIP reward,
attribute metric) are not built yet.
"""
