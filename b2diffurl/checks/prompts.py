"""The prompt list a round draws from: ``[config.prompt]``, or the JSON list in ``config.prompt_file``."""

import json
import os

from b2diffurl.checks.checker import Checker


def check_prompts(config, checker=None):
    """The prompts a round draws from, checked: ``[config.prompt]`` or the list in ``config.prompt_file``.

    With a ``checker`` its problems are added to it (None is returned for a broken list); without
    one the first problem is raised."""
    c = checker or Checker(config)
    prompts = [config.prompt] if config.prompt else _prompt_file(c, config.prompt_file)
    if checker is None:
        c.raise_first()
    return prompts


def _prompt_file(c, path):
    """The list in the prompt file ``path``, or None (its problem added to ``c``)."""
    if not c.require(
        bool(path),
        "prompt_file",
        path,
        "is empty and prompt is empty: set it to a JSON list such as prompts/template1_train.json",
    ):
        return None
    missing = "does not exist" if not os.path.exists(path) else "is not a file"
    if not c.require(
        os.path.isfile(path), "prompt_file", path, f"{missing}: pass a JSON list such as prompts/template1_train.json"
    ):
        return None
    try:
        with open(path) as f:
            prompts = json.load(f)
    except (OSError, ValueError) as err:
        c.require(False, "prompt_file", path, f"is not valid JSON ({err}): it must hold a JSON list of strings")
        return None
    if prompts is None:  # a file holding null: no list and no line
        return None
    if not (isinstance(prompts, list) and all(isinstance(p, str) and p.strip() for p in prompts)):
        c.require(False, "prompt_file", path, "must hold a JSON list of non-empty strings")
        return None
    if not c.require(len(prompts) > 0, "prompt_file", path, "holds an empty list: add at least one prompt"):
        return None
    return prompts
