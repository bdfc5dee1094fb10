"""What the stages hand each other on disk: safetensors for tensors, JSON for metadata, no pickle.

A round folder ``<save_path>/<exp_name>/<run_name>/`` holds::

    samples/batch_00000.safetensors ...   one file per prompt batch (Trajectories, see below)
    samples/manifest.json                 format version, shapes, interval timesteps, prompt list
    images/00000.png ...                  final image of trajectory i
    prompts.json                          prompt of trajectory i (list of strings)
    sample.done                           marker, written last: the stage's summary and the
                                          sha256 of every file it wrote

Every file is written under a temporary name (``*.tmp-PID``) and renamed when complete. A stage
builds its outputs in ``.<stage>.tmp/`` and, when all are complete, moves them into the round folder
(never a stray temporary file) and writes its marker last, so a stage is finished iff its marker
exists. The marker lists the sha256 of every file of the stage; a later stage reads those files
only through :func:`read_verified`, which checks them against it, so a corrupt, truncated or
missing file is named with its recovery instead of being trained on.

The pieces live in their own modules, re-exported here: atomic writes and fault points
(:mod:`b2diffurl.atomic`), safetensors files (:mod:`b2diffurl.tensorfiles`), the trajectory tensors
(:mod:`b2diffurl.trajectories`), the folder names (:mod:`b2diffurl.layout`). This module holds the
markers and the verified reads.
"""

import io
import json
import math
import os
import shutil

# besides what this module uses, the names that callers read as records.NAME (``x as x``: re-exported)
from b2diffurl.atomic import FAULT_VARIABLE as FAULT_VARIABLE
from b2diffurl.atomic import TMP_SUFFIX as TMP_SUFFIX
from b2diffurl.atomic import fault_point, purge_temporary_files, read_json, sha256, write_json
from b2diffurl.atomic import file_sha256 as file_sha256
from b2diffurl.atomic import files_nbytes as files_nbytes
from b2diffurl.atomic import write_bytes as write_bytes
from b2diffurl.errors import RecordError
from b2diffurl.layout import marker_path, stage_tmp_dir
from b2diffurl.tensorfiles import FORMAT_VERSION, tensors_from_bytes
from b2diffurl.tensorfiles import safetensors_payload as safetensors_payload
from b2diffurl.tensorfiles import save_tensors as save_tensors
from b2diffurl.trajectories import Trajectories, trajectories_from_tensors
from b2diffurl.trajectories import save_trajectories as save_trajectories
from b2diffurl.trajectories import trajectory_nbytes as trajectory_nbytes

LORA_WEIGHTS_NAME = "pytorch_lora_weights.safetensors"  # diffusers' name: load_lora_weights(dir) finds it
OPTIMIZER_NAME = "optimizer.safetensors"  # AdamW state, next to the LoRA of a round
STAGES = ("sample", "select", "train")


def is_done(round_dir, stage):
    return os.path.isfile(marker_path(round_dir, stage))


def _complete_path(round_dir, stage):
    return os.path.join(stage_tmp_dir(round_dir, stage), ".complete")


def redo_hint(round_dir, stage):
    """The recovery for a bad file of ``stage`` in ``round_dir``: delete its marker and rerun."""
    name = os.path.basename(os.path.normpath(round_dir))
    return (
        f"delete {marker_path(round_dir, stage)} and rerun: {name} is redone from its {stage} stage "
        "(deterministic, same seeds)"
    )


def read_marker(round_dir, stage):
    """The marker of a finished stage (summary + ``files``: {relative path: sha256})."""
    path = marker_path(round_dir, stage)
    try:
        with open(path, "rb") as f:
            marker = json.loads(f.read())
        if not isinstance(marker, dict) or not isinstance(marker.get("files"), dict):
            raise ValueError("no file list")
    except FileNotFoundError:
        raise RecordError(f"{path} is missing: stage {stage!r} of {round_dir} has not finished; run it first") from None
    except (OSError, ValueError) as err:
        raise RecordError(f"{path} is unreadable ({err}): {redo_hint(round_dir, stage)}") from None
    return marker


def read_verified(round_dir, stage, relpath, marker=None):
    """Bytes of ``round_dir/relpath``, checked against the sha256 in ``stage``'s marker."""
    marker = marker or read_marker(round_dir, stage)
    path = os.path.join(round_dir, relpath)
    expected = marker["files"].get(relpath)
    if expected is None:
        raise RecordError(f"{marker_path(round_dir, stage)} lists no {relpath}: {redo_hint(round_dir, stage)}")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise RecordError(f"{path} is missing: {redo_hint(round_dir, stage)}") from None
    if sha256(data) != expected:
        raise RecordError(
            f"{path} does not match its checksum in {stage}.done (corrupt or changed): {redo_hint(round_dir, stage)}"
        )
    return data


def read_verified_json(round_dir, stage, relpath, marker=None):
    data = read_verified(round_dir, stage, relpath, marker)
    return json.loads(data)


def read_verified_tensors(round_dir, stage, relpath, marker=None):
    """(tensors, metadata) of a verified safetensors file of the round."""
    return tensors_from_bytes(read_verified(round_dir, stage, relpath, marker), os.path.join(round_dir, relpath))


def stage_pending(round_dir, stage):
    """True if the stage's outputs are complete in its temporary folder but not yet moved into place."""
    return os.path.isfile(_complete_path(round_dir, stage))


def json_safe(obj):
    """``obj`` with every non-finite float written as the string "inf", "-inf" or "nan" (JSON has no
    such numbers; configs use them, e.g. thresholds of -inf/inf that keep every pair)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def config_record(config):
    """The config a stage ran with, as its marker records it: every field, the folder the run lives in
    left out (``save_path``) and ``resume_from`` relative to the run folder when it lies inside it, so
    a moved run folder records the same."""
    record = config.to_dict()
    exp_dir = os.path.join(record.pop("save_path", ""), record.get("exp_name", ""))
    resume = record.get("resume_from") or ""
    if resume and os.path.abspath(resume).startswith(os.path.abspath(exp_dir) + os.sep):
        record["resume_from"] = os.path.relpath(os.path.abspath(resume), os.path.abspath(exp_dir))
    return json_safe(record)


def finish_stage(round_dir, stage, summary=None, files=None, config=None):
    """Move the stage's outputs from its temporary folder into the round folder, then write the marker.

    ``files`` ({path relative to the round folder: sha256}) are the stage's outputs; ``summary``
    (JSON-able) its report; ``config`` the settings it ran with (recorded as ``config``, see
    :func:`config_record`). Both are first saved beside the outputs, so a call that stopped half way
    is completed later by ``finish_stage(round_dir, stage)``. The later stages' markers of the round
    are removed first: their outputs were derived from this stage's old ones. Returns the marker.
    """
    tmp = stage_tmp_dir(round_dir, stage)
    if summary is not None:
        if config is not None:
            summary = {**summary, "config": config_record(config)}
        write_json(_complete_path(round_dir, stage), {"summary": summary, "files": files or {}})
    complete = read_json(_complete_path(round_dir, stage))
    for later in STAGES[STAGES.index(stage) + 1 :]:
        if is_done(round_dir, later):
            os.remove(marker_path(round_dir, later))
    purge_temporary_files(tmp)
    for name in sorted(os.listdir(tmp)):
        if name.startswith("."):
            continue
        dest = os.path.join(round_dir, name)
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        os.replace(os.path.join(tmp, name), dest)
        fault_point(f"{os.path.basename(round_dir)}/{stage}.move")
    marker = {"format_version": FORMAT_VERSION, **complete["summary"], "files": complete["files"]}
    write_json(marker_path(round_dir, stage), marker)
    fault_point(f"{os.path.basename(round_dir)}/{stage}.marker")
    shutil.rmtree(tmp)
    fault_point(f"{os.path.basename(round_dir)}/{stage}.done")
    return marker


def finished(round_dir, stage):
    """The marker of a finished stage (completing an interrupted finish first), or None.

    Call it from one process only (the main one) before any model is loaded.
    """
    if not is_done(round_dir, stage) and stage_pending(round_dir, stage):
        finish_stage(round_dir, stage)
    return read_marker(round_dir, stage) if is_done(round_dir, stage) else None


def read_lora_file(lora_dir, name):
    """Bytes of ``lora_dir/name`` (the LoRA or the AdamW state a round resumes from).

    When ``lora_dir`` is the ``lora/`` folder of a finished round, the file is verified against that
    round's ``train.done``; a LoRA folder from elsewhere is read as it is.
    """
    lora_dir = os.path.normpath(lora_dir)
    parent, sub = os.path.split(lora_dir)
    if is_done(parent, "train"):
        return read_verified(parent, "train", f"{sub}/{name}")
    path = os.path.join(lora_dir, name)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        raise RecordError(f"{path} is missing or unreadable") from None


def load_samples(round_dir, marker=None):
    """(manifest dict, Trajectories of the whole round in trajectory order) of a finished sampling
    stage, every file verified against ``sample.done`` (``marker``, read if not given)."""
    marker = marker or read_marker(round_dir, "sample")
    manifest = read_verified_json(round_dir, "sample", "samples/manifest.json", marker)
    parts = []
    for batch in manifest["batches"]:
        tensors, _ = read_verified_tensors(round_dir, "sample", f"samples/{batch['file']}", marker)
        parts.append(trajectories_from_tensors(tensors)[0])
    return manifest, Trajectories.cat(parts)


def load_images(round_dir, n, marker=None):
    """The round's final images as uint8 [n, H, W, 3] (images/00000.png ...), verified against ``sample.done``."""
    import numpy as np
    from PIL import Image

    marker = marker or read_marker(round_dir, "sample")
    import torch

    arrays = []
    for i in range(n):
        data = read_verified(round_dir, "sample", image_name(i), marker)
        arrays.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    return torch.from_numpy(np.stack(arrays))


def image_name(index):
    """Path of trajectory ``index``'s final image, relative to the round folder."""
    return f"images/{index:05d}.png"
