"""A toy text-to-image world small enough to learn in on a CPU (docs/TOYWORLD.md).

- ``world``: the deterministic renderer of captioned scenes, the three caption templates and their
  train / held-out prompt lists.
- ``detect``: the colour-blob object detector (no learned model) behind the alignment metric.
- ``score``: held-out alignment and diversity (background / size entropy) of generated images.
- ``models``: the Stable-Diffusion-shaped architectures (VAE, UNet, CLIP text encoder + tokenizer)
  and the reward's open_clip config; the built weights are committed in ``model/``.

Its tools (training, build, the benchmark and its report, the command line of
``python -m b2diffurl.toyworld``) are in :mod:`b2diffurl.toylab`.
"""
