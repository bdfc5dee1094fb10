"""The AdamW over the LoRA, and its state file ``lora/optimizer.safetensors``: many rounds, one optimisation.

Each round saves the AdamW state (and, under fp16, the gradient scaler's) beside its LoRA, keyed by
parameter name; the next round continues from both unless ``train.fresh_optimizer`` is set.
"""

import os

import torch

from b2diffurl import records
from b2diffurl.tensorfiles import save_tensors, tensors_from_bytes

OPTIMIZER_NAME = records.OPTIMIZER_NAME
SCALER_PREFIX = "_grad_scaler."  # fp16 gradient-scaler entries in the optimizer file (no LoRA name starts with "_")


def trainable_parameters(unet):
    """[(name, param)] of the LoRA weights, in a fixed order."""
    return [(n, p) for n, p in unet.named_parameters() if p.requires_grad]


def make_optimizer(params, train):
    return torch.optim.AdamW(
        params,
        lr=train.learning_rate,
        betas=(train.adam_beta1, train.adam_beta2),
        weight_decay=train.adam_weight_decay,
        eps=train.adam_epsilon,
    )


def save_optimizer(optimizer, names, path, scaler=None):
    """AdamW state -> safetensors, keyed by parameter name (``<name>.step``, ``.exp_avg``, ``.exp_avg_sq``),
    plus the fp16 gradient scaler's state (``_grad_scaler.scale``, ``_grad_scaler.growth_tracker``) when
    ``scaler`` is given, so the next round does not restart the loss scale; returns the file's sha256."""
    tensors = {}
    for i, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"{names[i]}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    if scaler is not None:
        tensors.update(scaler_tensors(scaler))
    return save_tensors(path, tensors)


def scaler_tensors(scaler):
    """{name: Tensor} of a torch GradScaler's running state (its scale and growth tracker)."""
    state = scaler.state_dict()
    if not state:  # a disabled scaler has no state
        return {}
    return {
        f"{SCALER_PREFIX}scale": torch.tensor([float(state["scale"])], dtype=torch.float64),
        f"{SCALER_PREFIX}growth_tracker": torch.tensor([int(state["_growth_tracker"])], dtype=torch.int64),
    }


def load_scaler(scaler, tensors):
    """Continue ``scaler`` from the state :func:`scaler_tensors` wrote; returns whether there was one
    (a run that switched to fp16 starts the scaler fresh)."""
    if f"{SCALER_PREFIX}scale" not in tensors:
        return False
    state = scaler.state_dict()
    state["scale"] = float(tensors[f"{SCALER_PREFIX}scale"].item())
    state["_growth_tracker"] = int(tensors[f"{SCALER_PREFIX}growth_tracker"].item())
    scaler.load_state_dict(state)
    return True


def load_optimizer(optimizer, names, tensors):
    """Restore the state :func:`save_optimizer` wrote (``tensors``: its file's tensors); hyperparameters
    stay those of the current config. A file with no state (a round that made no optimizer step)
    leaves the optimizer fresh.
    """
    tensors = {k: v for k, v in tensors.items() if not k.startswith(SCALER_PREFIX)}
    if not tensors:
        return
    state = {}
    for i, name in enumerate(names):
        keys = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.rsplit(".", 1)[0] == name}
        if not keys:
            raise ValueError(f"the optimizer state has no entry for {name}: it was saved for another LoRA layout")
        state[i] = keys
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


def resume_optimizer_state(config):
    """Tensors of the AdamW state to continue from (resume_from's, verified), or None for a fresh
    AdamW: round 0, or ``train.fresh_optimizer``. A missing state is an error (checks.check_resume)."""
    if not config.resume_from or config.train.fresh_optimizer:
        return None
    path = os.path.join(config.resume_from, OPTIMIZER_NAME)
    return tensors_from_bytes(records.read_lora_file(config.resume_from, OPTIMIZER_NAME), path)[0]


def round_optimizer(config, accelerator, names, params):
    """(the prepared AdamW over ``params``, the state it resumed from or None, whether the fp16 gradient
    scaler resumed too) for one round: the state is loaded before ``accelerator.prepare`` wraps it."""
    optimizer = make_optimizer(params, config.train)
    state = resume_optimizer_state(config)
    if state is not None:
        load_optimizer(optimizer, names, state)
    optimizer = accelerator.prepare(optimizer)
    scaler_resumed = accelerator.scaler is not None and state is not None and load_scaler(accelerator.scaler, state)
    return optimizer, state, scaler_resumed


def save_round_optimizer(optimizer, names, path, scaler):
    """:func:`save_optimizer` of a round's prepared AdamW (unwrapped from accelerate's wrapper)."""
    return save_optimizer(optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer, names, path, scaler)
