"""Tensors on disk: safetensors files with a format version, the same bytes for the same tensors, no pickle.

:func:`save_tensors` writes a dict of tensors atomically with ``format_version`` in the file's
metadata and its JSON header's keys sorted, so a rerun writes identical bytes (and checksums);
:func:`tensors_from_bytes` reads one back and names a file of another version or a corrupt one in
one line. torch and safetensors are imported where tensors are made: the driver reads markers
without them.
"""

import json
import os
import struct

from b2diffurl.atomic import write_bytes
from b2diffurl.errors import RecordError

FORMAT_VERSION = 2


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


def safetensors_payload(path):
    """Tensor bytes of a safetensors file: its size less the 8-byte header length and the JSON header."""
    with open(path, "rb") as f:
        (header,) = struct.unpack("<Q", f.read(8))
    return os.path.getsize(path) - 8 - header
