"""The training fields (``train.*``): the algorithm, the optimiser, partial batches and steps, and
the weights of DPOK and DPO."""

from b2diffurl.checks.checker import is_int
from b2diffurl.choices import ALGORITHMS, DPO_REFERENCES, PARTIAL_BATCHES, PARTIAL_STEPS


def check_training(c):
    """Every ``train`` field, in the order its lines are reported."""
    c.one_of("train.algorithm", ALGORITHMS, f"is not known: choose from {list(ALGORITHMS)}")
    _check_optimisation(c)
    _check_dpok(c)
    _check_dpo(c)


def _check_optimisation(c):
    for name in ("batch_size", "gradient_accumulation_steps", "num_epochs", "forward_chunk"):
        c.integer(f"train.{name}", 1)
    for name in ("learning_rate", "eps", "adv_clip_max", "max_grad_norm", "adam_epsilon"):
        c.number(f"train.{name}", 0.0, above=True)
    c.number("train.adam_beta1", 0.0, below=1.0)
    c.number("train.adam_beta2", 0.0, below=1.0)
    c.number("train.adam_weight_decay", 0.0)
    c.number("train.beta1", 0.0, hint=" (the advantage weight of positive samples)")
    c.number("train.beta2", 0.0, hint=" (the advantage weight of negative samples)")
    c.flag("train.fresh_optimizer")
    c.flag("train.gradient_checkpointing")
    c.one_of(
        "train.partial_step",
        PARTIAL_STEPS,
        f"must be one of {', '.join(PARTIAL_STEPS)} (scale applies the last partial accumulation, drop discards it)",
    )
    c.one_of(
        "train.partial_batch",
        PARTIAL_BATCHES,
        f"must be one of {', '.join(PARTIAL_BATCHES)} "
        "(weight trains a short last batch by its size, drop leaves it out)",
    )


def _check_dpok(c):
    c.number(
        "train.dpok_reward_weight",
        0.0,
        hint=" (DPOK's weight of the policy term; its release uses 1000 for prompt lists)",
    )
    c.number(
        "train.dpok_kl_weight",
        0.0,
        hint=" (DPOK's weight of the KL to the base model; its release uses 0.1 for prompt lists)",
    )
    c.number(
        "train.dpok_ratio_clip",
        0.0,
        below=1.0,
        hint=" (DPOK's hard clamp of the ratio, 1e-4 as released; 0 = clipped PPO with train.eps)",
    )


def _check_dpo(c):
    config = c.config
    c.number("train.dpo_beta", 0.0, above=True, hint=" (the DPO temperature; 0.1 as in D3PO)")
    c.number(
        "train.dpo_ratio_clip",
        0.0,
        below=1.0,
        hint=" (D3PO's clamp of each ratio to 1 +- c, 0.1 as released; 0 = none)",
    )
    c.one_of(
        "train.dpo_reference",
        DPO_REFERENCES,
        f"must be one of {', '.join(DPO_REFERENCES)} "
        "(base: the frozen pretrained UNet, as D3PO; sampling: the sampling-time policy)",
    )
    if config.train.algorithm == "dpo" and is_int(config.split_time):
        c.require(
            config.split_time >= 2,
            "split_time",
            config.split_time,
            "gives DPO no pairs: it compares branches of one latent; use 2 or more (vanilla DPO: presets ddpo,dpo "
            "sample 2 branches from x_T, as D3PO's pairs share their initial noise)",
        )
