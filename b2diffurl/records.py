"""What the stages hand each other on disk: safetensors for tensors, JSON for metadata, no pickle.

A round folder ``<save_path>/<exp_name>/<run_name>/`` holds::

    samples/batch_00000.safetensors ...   one file per prompt batch (Trajectories, see below)
    samples/manifest.json                 format version, shapes, interval timesteps, prompt list
    images/00000.png ...                  final image of trajectory i
    prompts.json                          prompt of trajectory i (list of strings)
    sample.done                           marker, written last (JSON summary of the stage)

Every file is written under a temporary name and renamed when complete. A stage builds its outputs
in ``.<stage>.tmp/``, moves them into the round folder when all are complete and writes its marker
last, so a stage is finished iff its marker exists.
"""

import json
import os
import shutil
from dataclasses import dataclass, fields

import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMAT_VERSION = 1


@dataclass
class Trajectories:
    """N trajectories over the training interval of k steps (the last k DDIM steps).

    latents:    [N, k+1, C, H, W] fp32; latents[:, j] is x before interval step j, latents[:, j+1] after it
    log_probs:  [N, k] fp32; log p_old(latents[:, j+1] | latents[:, j]) recorded at sampling
    timesteps:  [N, k] int64; training timestep of interval step j (e.g. 301, 251, ..., 1)
    prompt_ids: [N] int64; index into the manifest's prompt_list
    group_ids:  [N] int64; equal for the branches of one latent (unique within a round)
    """

    latents: torch.Tensor
    log_probs: torch.Tensor
    timesteps: torch.Tensor
    prompt_ids: torch.Tensor
    group_ids: torch.Tensor

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
        return Trajectories(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Trajectories)})


def _tmp_name(path):
    return f"{path}.tmp-{os.getpid()}"


def write_json(path, obj):
    """Write JSON atomically (temporary name, then rename)."""
    tmp = _tmp_name(path)
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def save_tensors(path, tensors, metadata=None):
    """Dict of tensors -> one safetensors file (atomically), with ``format_version`` in its metadata."""
    meta = {"format_version": str(FORMAT_VERSION), **{k: str(v) for k, v in (metadata or {}).items()}}
    tmp = _tmp_name(path)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=meta)
    os.replace(tmp, path)


def load_tensors(path, keys=None):
    """Tensors of a file written by :func:`save_tensors` (all, or only ``keys``), checking its format version."""
    with safe_open(path, framework="pt") as f:
        version = (f.metadata() or {}).get("format_version")
        if version != str(FORMAT_VERSION):
            raise ValueError(f"{path} has format_version={version}, this code reads {FORMAT_VERSION}; rerun the stage that wrote it")
        return {k: f.get_tensor(k) for k in (keys if keys is not None else f.keys())}


def save_trajectories(path, trajectories, metadata=None, extra=None):
    """Trajectories (and ``extra`` per-trajectory tensors, e.g. scores) -> one safetensors file."""
    save_tensors(path, {**trajectories.tensors(), **(extra or {})}, metadata)


def load_trajectories(path):
    """(Trajectories, dict of the file's other tensors) from a file written by :func:`save_trajectories`."""
    tensors = load_tensors(path)
    names = [f.name for f in fields(Trajectories)]
    return Trajectories(**{n: tensors.pop(n) for n in names}), tensors


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


def stage_pending(round_dir, stage):
    """True if the stage's outputs are complete in its temporary folder but not yet moved into place."""
    return os.path.isfile(_complete_path(round_dir, stage))


def finish_stage(round_dir, stage, summary=None):
    """Move the stage's temporary folder's contents into the round folder, then write the marker.

    ``summary`` (JSON-able) is first saved beside the outputs, so a call that stopped half way can be
    completed later by ``finish_stage(round_dir, stage)``; returns the summary.
    """
    tmp = stage_tmp_dir(round_dir, stage)
    if summary is not None:
        write_json(_complete_path(round_dir, stage), summary)
    summary = read_json(_complete_path(round_dir, stage))
    for name in sorted(os.listdir(tmp)):
        if name.startswith("."):
            continue
        dest = os.path.join(round_dir, name)
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        os.replace(os.path.join(tmp, name), dest)
    write_json(marker_path(round_dir, stage), {"format_version": FORMAT_VERSION, **summary})
    shutil.rmtree(tmp)
    return summary


def load_samples(round_dir):
    """(manifest dict, Trajectories of the whole round in trajectory order) of a finished sampling stage."""
    manifest = read_json(os.path.join(round_dir, "samples", "manifest.json"))
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{round_dir}/samples has format_version={manifest.get('format_version')}, this code reads {FORMAT_VERSION}")
    parts = [load_trajectories(os.path.join(round_dir, "samples", b["file"]))[0] for b in manifest["batches"]]
    return manifest, Trajectories.cat(parts)
