"""The policy's checkpoint (``pretrained.model``): a diffusers folder of a supported backbone, or a hub id.

Also where any model named by a field must live (:func:`check_model_location`): a local folder
holding its marker file, or a hub id whose cache :mod:`b2diffurl.checks.hub` looks up.
"""

import os
import re

from b2diffurl import backbones
from b2diffurl.errors import first_line

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")


def check_model(c):
    config = c.config
    model = config.pretrained.model
    if not c.require(
        isinstance(model, str) and bool(model),
        "pretrained.model",
        model,
        "is empty: set it to a local diffusers folder or a hub id such as CompVis/stable-diffusion-v1-4",
    ):
        return
    if config.pretrained.build_tiny:
        return
    check_model_location(
        c, "pretrained.model", model, "model_index.json", "a diffusers pipeline folder (save_pretrained's output)"
    )
    if os.path.isfile(os.path.join(model, "model_index.json")):
        check_backbone(c, model, lambda: backbones.read_model_index(model))


def check_backbone(c, model, read_index):
    """The checkpoint's model_index.json (``read_index()``) names a supported backbone with all its parts."""
    try:
        index = read_index()
    except (OSError, ValueError) as err:
        c.require(
            False,
            "pretrained.model",
            model,
            f"has an unreadable model_index.json ({first_line(err)}): fix or re-download the checkpoint",
        )
        return
    problem = backbones.index_problem(index)
    c.require(problem is None, "pretrained.model", model, problem)


def check_model_location(c, field, path, marker, folder_kind, hub_kind=""):
    """``path`` is a local folder holding ``marker`` (a saved model of ``folder_kind``) or looks like a
    hub id (owner/name; whether it is cached is environment_problems' check)."""
    if os.path.isdir(path):
        c.require(
            os.path.isfile(os.path.join(path, marker)),
            field,
            path,
            f"is a folder without {marker}: point it at {folder_kind}",
        )
        return
    looks_like_path = path.startswith((".", "/", "~")) or os.sep + os.sep in path or path.count("/") != 1
    c.require(
        not looks_like_path and HUB_ID.match(path) is not None,
        field,
        path,
        f"is neither an existing folder nor a hub id (owner/name){hub_kind}: fix the path",
    )
