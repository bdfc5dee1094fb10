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
"""

import hashlib
import io
import json
import os
import re
import shutil
import signal
import struct
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from b2diffurl.errors import RecordError

if TYPE_CHECKING:  # torch is imported where tensors are made: the driver reads markers without it
    import torch

FORMAT_VERSION = 2
LORA_WEIGHTS_NAME = "pytorch_lora_weights.safetensors"  # diffusers' name: load_lora_weights(dir) finds it
OPTIMIZER_NAME = "optimizer.safetensors"  # AdamW state, next to the LoRA of a round
STAGES = ("sample", "select", "train")
TMP_SUFFIX = re.compile(r"\.tmp-\d+$")


@dataclass
class Trajectories:
    """N trajectories over the training interval of k steps (the last k DDIM steps).

    latents:    [N, k+1, C, H, W] in ``sample.latent_dtype`` (fp16 by default); latents[:, j] is x before
                interval step j, latents[:, j+1] after it (the sampling chain itself ran on these values)
    log_probs:  [N, k] fp32; log p_old(latents[:, j+1] | latents[:, j]) recorded at sampling
    timesteps:  [N, k] int64; training timestep of interval step j (e.g. 301, 251, ..., 1)
    prompt_ids: [N] int64; index into the manifest's prompt_list
    group_ids:  [N] int64; equal for the branches of one latent (unique within a round)
    """

    latents: "torch.Tensor"
    log_probs: "torch.Tensor"
    timesteps: "torch.Tensor"
    prompt_ids: "torch.Tensor"
    group_ids: "torch.Tensor"

    @property
    def next_latents(self):
        """[N, k, C, H, W]: the latent after each interval step (latents shifted by one)."""
        return self.latents[:, 1:]

    def __len__(self):
        return self.latents.shape[0]

    def tensors(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def select(self, index):
        """The trajectories at ``index`` (LongTensor[M])."""
        return Trajectories(**{name: t[index] for name, t in self.tensors().items()})

    @staticmethod
    def cat(parts):
        import torch

        return Trajectories(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Trajectories)})


# bytes per trajectory of each tensor besides the latents: log_probs fp32 [k], timesteps int64 [k],
# prompt_ids and group_ids int64; selected.safetensors adds indices int64, scores and normalised fp32
TRAJECTORY_FIELD_BYTES = {"log_probs": 4, "timesteps": 8}
TRAJECTORY_ID_BYTES = 8 + 8
SELECTED_EXTRA_BYTES = 8 + 4 + 4


def trajectory_nbytes(k, latent_shape, latent_itemsize, selected=False):
    """Tensor bytes of one trajectory in a samples/ batch file (or in selected.safetensors, ``selected``):
    k+1 latents of ``latent_shape`` [C, H, W] at ``latent_itemsize`` bytes, plus its k log-probs and
    timesteps and its ids. File headers (a few hundred bytes per file) are not counted."""
    latent = latent_itemsize
    for size in latent_shape:
        latent *= size
    per_step = sum(TRAJECTORY_FIELD_BYTES.values())
    return (k + 1) * latent + k * per_step + TRAJECTORY_ID_BYTES + (SELECTED_EXTRA_BYTES if selected else 0)


def safetensors_payload(path):
    """Tensor bytes of a safetensors file: its size less the 8-byte header length and the JSON header."""
    with open(path, "rb") as f:
        (header,) = struct.unpack("<Q", f.read(8))
    return os.path.getsize(path) - 8 - header


def files_nbytes(folder, files):
    """Total size of ``files`` (paths relative to ``folder``): a stage summary's ``bytes_written``."""
    return sum(os.path.getsize(os.path.join(folder, name)) for name in files)


# ---------------------------------------------------------------- fault injection (tests)

FAULT_VARIABLE = "B2DIFFURL_FAULT"


def fault_point(label):
    """Stop this process's whole group when ``$B2DIFFURL_FAULT`` is ``KILL:<label>`` (SIGKILL, as a
    power cut or ``kill -9``) or ``INT:<label>`` (SIGINT, as Ctrl-C in a terminal).

    The crash-safety tests name the points (``round_000/train.done``, ``write batch_00001.safetensors``,
    ...) where a stop would hurt most; unset (always, outside the tests) it costs a dictionary lookup.
    """
    fault = os.environ.get(FAULT_VARIABLE)
    if fault and fault.partition(":")[2] == label:
        os.killpg(os.getpgrp(), signal.SIGINT if fault.startswith("INT:") else signal.SIGKILL)


# ---------------------------------------------------------------- writing


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_bytes(path, data):
    """Write ``data`` atomically (temporary name, then rename); returns its sha256."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    fault_point(f"write {os.path.basename(path)}")
    os.replace(tmp, path)
    return sha256(data)


def write_json(path, obj):
    """Write JSON atomically; returns its sha256. NaN/inf are refused (they are not JSON)."""
    return write_bytes(path, (json.dumps(obj, indent=1, allow_nan=False) + "\n").encode())


def read_json(path):
    """A JSON file the user may have edited or broken: a problem is a one-line RecordError."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        raise RecordError(f"{path} is missing") from None
    except (OSError, ValueError) as err:
        raise RecordError(f"{path} is not valid JSON ({err})") from None


def save_tensors(path, tensors, metadata=None):
    """Dict of tensors -> one safetensors file (atomically), ``format_version`` in its metadata; returns its sha256."""
    from safetensors.torch import save as save_safetensors_bytes

    meta = {"format_version": str(FORMAT_VERSION), **{k: str(v) for k, v in (metadata or {}).items()}}
    data = save_safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=meta)
    return write_bytes(path, _canonical_header(data))


def _canonical_header(data):
    """The same safetensors file with its JSON header's keys sorted.

    safetensors writes the metadata in hash-map order, which changes from process to process, so
    identical tensors would give different bytes (and checksums) in a rerun. Data offsets are
    relative to the end of the header, so only the header is rewritten (space-padded to 8 bytes).
    """
    (size,) = struct.unpack("<Q", data[:8])
    header = json.dumps(json.loads(data[8 : 8 + size]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data[8 + size :]


def tensors_from_bytes(data, name):
    """(tensors, metadata) of a safetensors file's bytes written by :func:`save_tensors`."""
    from safetensors.torch import load as load_safetensors_bytes

    try:
        (header_size,) = struct.unpack("<Q", data[:8])
        metadata = json.loads(data[8 : 8 + header_size]).get("__metadata__") or {}
        tensors = load_safetensors_bytes(data)
    except Exception as err:  # noqa: BLE001 - any parse failure of a corrupt file
        raise RecordError(f"{name} is not a readable safetensors file ({type(err).__name__})") from None
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise RecordError(
            f"{name} has format_version={metadata.get('format_version')}, this code reads {FORMAT_VERSION}: "
            "redo the stage that wrote it with this version"
        )
    return tensors, metadata


def save_trajectories(path, trajectories, metadata=None, extra=None):
    """Trajectories (and ``extra`` per-trajectory tensors, e.g. scores) -> one safetensors file; returns its sha256."""
    return save_tensors(path, {**trajectories.tensors(), **(extra or {})}, metadata)


def trajectories_from_tensors(tensors):
    """(Trajectories, dict of the other tensors) from a dict read from a :func:`save_trajectories` file."""
    names = [f.name for f in fields(Trajectories)]
    return Trajectories(**{n: tensors.pop(n) for n in names}), tensors


def purge_temporary_files(folder, recursive=True):
    """Delete ``*.tmp-PID`` files (writes that a stop interrupted before their rename) under ``folder``."""
    walk = os.walk(folder) if recursive else [(folder, [], os.listdir(folder))]
    for dirpath, _, names in walk:
        for name in names:
            if TMP_SUFFIX.search(name):
                os.remove(os.path.join(dirpath, name))


# ---------------------------------------------------------------- round folders and markers


def round_dir(config):
    """<save_path>/<exp_name>/<run_name>: the folder of the round a stage works on."""
    return os.path.join(config.save_path, config.exp_name, config.run_name)


def marker_path(round_dir, stage):
    return os.path.join(round_dir, f"{stage}.done")


def is_done(round_dir, stage):
    return os.path.isfile(marker_path(round_dir, stage))


def stage_tmp_dir(round_dir, stage):
    return os.path.join(round_dir, f".{stage}.tmp")


def _complete_path(round_dir, stage):
    return os.path.join(stage_tmp_dir(round_dir, stage), ".complete")


def redo_hint(round_dir, stage):
    """The recovery for a bad file of ``stage`` in ``round_dir``: delete its marker and rerun."""
    name = os.path.basename(os.path.normpath(round_dir))
    return f"delete {marker_path(round_dir, stage)} and rerun: {name} is redone from its {stage} stage (deterministic, same seeds)"


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
    import math

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
