"""Backward progressive training (BPT): which final denoising steps a round trains on (paper App. D.1)."""


def interval_length(round_idx, n_rounds, k_start, k_end):
    """k_r, the training interval length of round r: k_start + floor(r * (k_end - k_start + 1) / n_rounds).

    Grows linearly from k_start (round 0) to k_end (last rounds), as the official driver does:
    14 .. 20 over 100 rounds. The interval is the last k_r of the T denoising steps.
    """
    if not 0 <= round_idx < n_rounds:
        raise ValueError(f"round_idx={round_idx} is outside 0..{n_rounds - 1} (n_rounds={n_rounds})")
    if not 1 <= k_start <= k_end:
        raise ValueError(f"k_start={k_start}, k_end={k_end}: need 1 <= k_start <= k_end")
    return k_start + (round_idx * (k_end - k_start + 1)) // n_rounds


def branch_step(num_steps, k):
    """Index (0-based, in sampling order) of the step where latents branch: the first interval step."""
    if not 1 <= k <= num_steps:
        raise ValueError(f"split_step={k} is outside 1..{num_steps} (sample.num_steps); pick a value in that range")
    return num_steps - k
