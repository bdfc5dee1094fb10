"""The prompt sets an evaluation reads (``evaluate.prompt_sets``) and the prompt file of each.

``train`` is the training list (``prompt_file``, or the one ``prompt``); ``test`` is the held-out
list, ``evaluate.test_prompt_file`` or the training file's ``_test`` twin. Pure config arithmetic:
whether the files exist and hold prompts is :mod:`b2diffurl.checks`' question.
"""

import os


def eval_prompt_sets(config):
    """The prompt sets ``evaluate.prompt_sets`` names, in order, without repeats (["train", "test"])."""
    sets = config.evaluate.prompt_sets
    return list(dict.fromkeys(s.strip() for s in sets.split(",") if s.strip())) if isinstance(sets, str) else []


def held_out_prompt_file(config):
    """The held-out prompt file: ``evaluate.test_prompt_file``, or ``prompt_file`` with its ``_train``
    replaced by ``_test`` (prompts/template1_train.json -> prompts/template1_test.json); "" when
    neither gives one."""
    if config.evaluate.test_prompt_file:
        return config.evaluate.test_prompt_file
    stem, ext = os.path.splitext(config.prompt_file)
    return stem[: -len("_train")] + "_test" + ext if stem.endswith("_train") and not config.prompt else ""


def eval_prompt_file(config, prompt_set):
    """The prompt file an evaluation of ``prompt_set`` reads ("" for a train set given as ``prompt``)."""
    if prompt_set == "train":
        return "" if config.prompt else config.prompt_file
    return held_out_prompt_file(config)
