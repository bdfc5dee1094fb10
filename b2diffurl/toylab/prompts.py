"""The toy world's prompt lists in the repository: ``prompts/toy{1,2,3}_{train,test}.json``, written by
``python -m b2diffurl.toyworld prompts`` from :func:`b2diffurl.toyworld.world.prompt_lists`."""

import json

from b2diffurl import configs
from b2diffurl.toyworld.world import prompt_lists


def prompt_file(template, split):
    """prompts/toy<template>_<split>.json of the repository."""
    return configs.repo_path("prompts", f"toy{template}_{split}.json")


def write_prompts():
    for template in (1, 2, 3):
        for split, captions in zip(("train", "test"), prompt_lists(template)):
            with open(prompt_file(template, split), "w") as f:
                json.dump(captions, f, indent=1)
                f.write("\n")
            print(f"wrote {prompt_file(template, split)} ({len(captions)} captions)")
