"""What a config field may choose: the one list of each choice, without torch.

The checks (:mod:`b2diffurl.checks`) refuse a value outside these lists before any model loads, and
the implementations build their registries from them with :func:`registry`: a name listed here
without its implementation, or implemented without being listed, stops the import with one line
naming both.
"""

MIXED_PRECISION = ("no", "fp16", "bf16")  # mixed_precision (b2diffurl.models.DTYPES)
ALGORITHMS = ("ppo", "pg", "dpok", "dpo")  # train.algorithm (b2diffurl.objectives.OBJECTIVES)
DPO_REFERENCES = ("base", "sampling")  # train.dpo_reference (b2diffurl.objectives.make_objective)
PARTIAL_STEPS = ("scale", "drop")  # train.partial_step
PARTIAL_BATCHES = ("weight", "drop")  # train.partial_batch
# reward.name's components and evaluate.metrics (b2diffurl.rewards.REWARDS)
REWARD_NAMES = ("clipscore", "colour", "bertscore", "toycaption")
# reward.precision (b2diffurl.rewards.PRECISIONS); reward.caption_precision also takes "auto"
REWARD_PRECISIONS = ("fp32", "fp16", "bf16")
LATENT_DTYPES = ("fp16", "fp32")  # sample.latent_dtype (b2diffurl.models.STORAGE_DTYPES; bf16 is refused)
ATTENTIONS = ("sdpa", "math")  # runtime.attention (b2diffurl.models.ATTENTION_PROCESSORS)
# evaluate.prompt_sets: the training list (Figs. 5/7/8, Tables 1-2) and the held-out list (Table 3)
PROMPT_SETS = ("train", "test")
# evaluate.alignment: "" (none) or an independent alignment metric added to the evaluation JSON.
ALIGNMENT_METRICS = ("", "toyworld")
TRACKERS = ("tensorboard", "wandb")  # log_with, comma-separated (b2diffurl.tracking)
# tracker -> the modules it can write with (any one will do) and the package to install
TRACKER_MODULES = {"tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"), "wandb": (("wandb",), "wandb")}


def registry(implementations, choice, where):
    """``implementations`` ({name: implementation}) in the order of this module's list ``choice``
    (its name, e.g. "ALGORITHMS"); ImportError when their names differ. ``where``: the registry's name."""
    names = globals()[choice]
    if sorted(implementations) != sorted(names):
        raise ImportError(
            f"{where} implements {sorted(implementations)}, but b2diffurl.choices.{choice} lists {sorted(names)}: "
            "a choice and its implementation are added and removed together"
        )
    return {name: implementations[name] for name in names}


def tracker_names(log_with):
    """["tensorboard", "wandb"] of a ``log_with`` string such as "tensorboard,wandb" ("" -> [])."""
    return [name.strip() for name in log_with.split(",") if name.strip()]


def eval_metrics(config):
    """``evaluate.metrics`` as a list of names, in order, without repeats ("bertscore, clipscore" ->
    ["bertscore", "clipscore"]); checked against :data:`REWARD_NAMES` by the checks."""
    names = [n.strip() for n in str(config.evaluate.get("metrics", "")).split(",") if n.strip()]
    return list(dict.fromkeys(names))
