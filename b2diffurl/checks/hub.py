"""The models a run names must be found: on disk, in the Hugging Face cache, or (online) on the hub.

Probes only: a file is looked up in the cache (``try_to_load_from_cache``) and, online, asked for
(``file_exists``); nothing is downloaded.
"""

import os

from b2diffurl import backbones
from b2diffurl.checks.checker import Checker
from b2diffurl.checks.model import check_backbone
from b2diffurl.checks.rewards import CHECKPOINT_SUFFIXES, reward_components
from b2diffurl.choices import eval_metrics
from b2diffurl.errors import ConfigError

# open_clip's own names of a hub repo's weights, tried after the file its pretrained config names
OPEN_CLIP_FILES = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]


def model_problems(config):
    """The SD model and the reward's models must be on disk, in the hub cache, or (online) on the hub."""
    names = reward_components(config.reward.name)
    problems = _policy_problems(config)
    if ("bertscore" in names or "bertscore" in eval_metrics(config)) and not config.reward.build_tiny_text:
        problems += _bertscore_problems(config.reward)
    if ("clipscore" in names or "toycaption" in names) and not config.reward.clip_pretrained.endswith(
        CHECKPOINT_SUFFIXES
    ):
        problems += _clip_problems(config.reward)
    return problems


def _policy_problems(config):
    model = config.pretrained.model
    if config.pretrained.build_tiny or os.path.isdir(model):
        return []
    if reason := hub_problem(model, "model_index.json", config.pretrained.revision):
        return [
            ConfigError("pretrained.model", model, reason + ", or point pretrained.model at a local diffusers folder")
        ]
    c = Checker(config)
    check_backbone(c, model, lambda: backbones.read_model_index(model, config.pretrained.revision))
    return c.problems


def _bertscore_problems(reward):
    problems = []
    for field in ("captioner", "bertscore_model"):
        if not os.path.isdir(reward[field]):
            if reason := hub_problem(reward[field], "config.json", "main"):
                problems.append(
                    ConfigError(f"reward.{field}", reward[field], reason + ", or point it at a local folder")
                )
    return problems


def _clip_problems(reward):
    """The open_clip model is known, its pretrained tag is one of the model's, and the tag's weights are cached."""
    import open_clip
    from open_clip import pretrained

    json_config = reward.clip_model.endswith(".json")
    name = os.path.splitext(os.path.basename(reward.clip_model))[0] if json_config else reward.clip_model
    if not json_config and name not in open_clip.list_models():
        return [ConfigError("reward.clip_model", name, "is not an open_clip model: see open_clip.list_models()")]
    if not reward.clip_pretrained:
        return []
    cfg = pretrained.get_pretrained_cfg(name, reward.clip_pretrained)
    if not cfg:
        tags = pretrained.list_pretrained_tags_by_model(name)
        return [
            ConfigError(
                "reward.clip_pretrained",
                reward.clip_pretrained,
                f"is not a pretrained tag of {name}: choose from {tags}",
            )
        ]
    if not cfg.get("hf_hub"):
        return []
    repo, filenames = _clip_weight_files(cfg["hf_hub"])
    if reason := hub_problem(repo, filenames, "main"):
        return [
            ConfigError(
                "reward.clip_pretrained", reward.clip_pretrained, reason + ", or point it at a local checkpoint file"
            )
        ]
    return []


def _clip_weight_files(hf_hub):
    """(repo, the files any of which holds the weights) of an open_clip ``hf_hub`` entry ("org/repo/" or
    "org/repo/file")."""
    repo, filename = hf_hub.rstrip("/"), None
    if hf_hub.count("/") > 1 and not hf_hub.endswith("/"):
        repo, filename = os.path.split(hf_hub)
    # open_clip takes a .safetensors twin of the file when the repo has one
    names = [filename, os.path.splitext(filename)[0] + ".safetensors"] if filename else []
    return repo, names + OPEN_CLIP_FILES


def hub_problem(repo_id, filenames, revision):
    """None when one of ``filenames`` of the hub repo is cached (or, online, reachable); else why not."""
    from huggingface_hub import constants, file_exists, try_to_load_from_cache

    filenames = [filenames] if isinstance(filenames, str) else filenames
    if any(isinstance(try_to_load_from_cache(repo_id, f, revision=revision), str) for f in filenames):
        return None
    if constants.HF_HUB_OFFLINE:
        return (
            "is not in the local Hugging Face cache and HF_HUB_OFFLINE=1: "
            "download it once online (unset HF_HUB_OFFLINE)"
        )
    try:
        if any(file_exists(repo_id, f, revision=revision) for f in filenames):
            return None
        return f"has no {filenames[0]} on the Hugging Face hub"
    except Exception as err:  # noqa: BLE001 - no network, no such repo, gated repo: all say the same to the user
        return f"is not cached and the Hugging Face hub cannot be reached ({type(err).__name__})"
