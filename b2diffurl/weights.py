"""Loading and writing large checkpoints one tensor at a time.

open_clip builds its model with random weights and then loads the whole checkpoint beside it: at
ViT-H-14 size (986 M parameters, 3.9 GB in fp32) the selection stage's memory peaked at about twice
the weights, and the random initialisation alone took about 25 s of a CPU core, every round. Here the
model is built with ``torch.nn.init``'s fillers switched off (:func:`no_random_init`: its memory is
allocated, not written) and the checkpoint is copied into it tensor by tensor
(:func:`stream_into`), so the load's peak is the model plus its largest tensor. docs/PERFORMANCE.md
has the measurement.
"""

import contextlib
import json
import os
import struct

SAFETENSORS_DTYPES = {
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "float64": "F64",
    "int64": "I64",
    "int32": "I32",
}


@contextlib.contextmanager
def no_random_init():
    """Within: every public filler of ``torch.nn.init`` (``normal_``, ``kaiming_uniform_``, ...) leaves its
    tensor as it is. For building a model whose every parameter a checkpoint then sets; buffers
    computed otherwise (open_clip's causal ``attn_mask``) are built as usual."""
    import torch

    init = torch.nn.init
    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))]
    saved = {n: getattr(init, n) for n in names}
    try:
        for n in names:
            setattr(init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, f in saved.items():
            setattr(init, n, f)


def read_safetensors_header(f):
    """{name: (torch dtype, shape, start, end)} of an open .safetensors file; byte offsets from the file's start."""
    import torch

    (size,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(size))
    header.pop("__metadata__", None)
    dtypes = {code: getattr(torch, name) for name, code in SAFETENSORS_DTYPES.items()}
    return {
        name: (dtypes[e["dtype"]], e["shape"], 8 + size + e["data_offsets"][0], 8 + size + e["data_offsets"][1])
        for name, e in header.items()
    }


def checkpoint_tensors(path):
    """(names, get) of a .safetensors checkpoint: ``get(name)`` -> its tensor (on the CPU), read with
    plain file reads, one tensor at a time (not memory-mapped: mapped pages of the file would count
    in the process's memory until the load ends)."""
    import torch

    f = open(path, "rb")
    entries = read_safetensors_header(f)

    def get(name):
        dtype, shape, start, end = entries[name]
        data = torch.empty(end - start, dtype=torch.uint8)
        f.seek(start)
        if f.readinto(data.numpy()) != end - start:
            raise OSError(f"{path}: {name} is cut short (the file is truncated)")
        return data.view(dtype).reshape(shape)

    return list(entries), get


def stream_into(model, path, ignore=()):
    """Copy the checkpoint at ``path`` into ``model``'s parameters and persistent buffers, one tensor at
    a time (cast to each parameter's dtype and device). Returns None when done, or why the
    checkpoint does not fit (a missing or extra key, a shape that differs) with the model untouched
    beyond the tensors already copied: the caller then loads it another way. ``ignore``: checkpoint
    keys the model may lack (dropped)."""
    import torch

    if not path.endswith(".safetensors"):
        return "not a .safetensors file (a pickled checkpoint is left to its library's own loader)"
    names, get = checkpoint_tensors(path)
    target = model.state_dict(keep_vars=True)
    wanted = [n for n in names if n not in ignore or n in target]
    missing, extra = sorted(set(target) - set(wanted)), sorted(set(wanted) - set(target))
    if missing or extra:
        return f"keys differ (missing {missing[:3]}, unexpected {extra[:3]})"
    with torch.no_grad():
        for name in wanted:
            tensor, dest = get(name), target[name]
            if tensor.numel() != dest.numel():
                return f"{name}: shape {tuple(tensor.shape)} in the checkpoint, {tuple(dest.shape)} in the model"
            dest.copy_(tensor.reshape(dest.shape))  # a scalar logit_scale and a [1] one are the same number
            del tensor
    return None


def write_safetensors(path, items, metadata=None):
    """Write a .safetensors file holding one tensor in memory at a time. ``items(real)`` returns an
    iterable of (name, tensor) in a fixed order; it is called twice: ``items(False)`` for the header
    (every name's dtype, shape and offsets; meta tensors will do), then ``items(True)`` for the bytes,
    each tensor made on demand (a generator)."""
    import torch

    header, offset = {}, 0
    for name, tensor in items(False):
        size = tensor.numel() * tensor.element_size()
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[str(tensor.dtype).replace("torch.", "")],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name, tensor in items(True):
            if tensor.is_meta:
                raise ValueError(f"{name}: the second pass of write_safetensors must give real tensors")
            f.write(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    os.replace(tmp, path)
