"""The garbage collector in a stage process: off while torch, diffusers and transformers import and the
models load, then told to leave all of that alone.

Those libraries leave millions of long-lived objects, and every full collection scans them again: on
the tiny preset, collections took 6.7 s of a 44-s round (14 full ones, about 0.45 s each). A stage
process calls :func:`hold` first (``cli.run`` does) and :func:`settle` once its models are loaded
(``models.load_policy``, ``rewards.build_reward``): everything alive then is frozen out of the
collector's generations (``gc.freeze``), so later collections scan only what the stage's own loop
makes. Memory is still freed by reference counting; a cycle among frozen objects waits for
``gc.unfreeze`` (``round.py`` does that between the stages of a round, before it collects).
"""

import gc

_held = False  # hold() was called: this is a stage process (a test or notebook that loads models keeps its gc as it is)


def hold():
    """No automatic collection from here until :func:`settle`."""
    global _held
    _held = True
    gc.disable()


def settle():
    """In a process that called :func:`hold`: freeze every object alive now out of the collector's view
    and collect automatically again. Elsewhere nothing (freezing would keep a caller's garbage cycles for good)."""
    if _held:
        gc.freeze()
        gc.enable()
