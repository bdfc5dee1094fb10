"""The trajectories a round samples, selects and trains on: their tensors, their size, their file.

A samples/ batch file and selected.safetensors hold :class:`Trajectories` (selected.safetensors adds
per-trajectory ``indices``, ``scores`` and ``normalised``), written by :func:`save_trajectories` and
read back by :func:`trajectories_from_tensors`.
"""

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from b2diffurl.tensorfiles import save_tensors

if TYPE_CHECKING:  # torch is imported where tensors are made: the driver reads markers without it
    import torch


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


def save_trajectories(path, trajectories, metadata=None, extra=None):
    """Trajectories (and ``extra`` per-trajectory tensors, e.g. scores) -> one safetensors file; returns its sha256."""
    return save_tensors(path, {**trajectories.tensors(), **(extra or {})}, metadata)


def trajectories_from_tensors(tensors):
    """(Trajectories, dict of the other tensors) from a dict read from a :func:`save_trajectories` file."""
    names = [f.name for f in fields(Trajectories)]
    return Trajectories(**{n: tensors.pop(n) for n in names}), tensors
