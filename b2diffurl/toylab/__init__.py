"""The toy world's tools (docs/TOYWORLD.md), on top of the world itself (:mod:`b2diffurl.toyworld`).

- ``training``: pretraining loops (VAE, UNet + text encoder, CLIP reward).
- ``build``: ``python -m b2diffurl.toyworld build``; ``quality``: quality.json; ``checksums``: SHA256SUMS.
- ``protocol``: the benchmark's fixed protocol (methods, grid, seeds, claims, verdict rule).
- ``benchmark`` (plans and parts) and ``runner`` (runs them): B2-DiffuRL vs BPT-only vs DDPO at equal
  reward queries; ``ledger``: the committed record of finished runs; ``verdicts``: the numbers from run
  folders.
- ``results``: docs/RESULTS.md from the record, with ``claims``, ``sections``, ``restated``, ``finals``
  and ``formats``.
- ``compare``, ``prompts``, ``scene_grid``: the smaller commands; ``cli``: the command line
  (``python -m b2diffurl.toyworld``).
"""
