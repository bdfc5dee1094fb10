"""Files that are either complete or absent: written under a temporary name and renamed, with their sha256.

Every file is written as ``<name>.tmp-PID`` and renamed when complete (:func:`write_bytes`); a stop
in between leaves only a temporary file, which :func:`purge_temporary_files` removes later. The
crash-safety tests stop a run at named points of these writes (:func:`fault_point`).
"""

import hashlib
import json
import os
import re
import signal

from b2diffurl.errors import RecordError

TMP_SUFFIX = re.compile(r"\.tmp-\d+$")
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


def purge_temporary_files(folder, recursive=True):
    """Delete ``*.tmp-PID`` files (writes that a stop interrupted before their rename) under ``folder``."""
    walk = os.walk(folder) if recursive else [(folder, [], os.listdir(folder))]
    for dirpath, _, names in walk:
        for name in names:
            if TMP_SUFFIX.search(name):
                os.remove(os.path.join(dirpath, name))


def files_nbytes(folder, files):
    """Total size of ``files`` (paths relative to ``folder``): a stage summary's ``bytes_written``."""
    return sum(os.path.getsize(os.path.join(folder, name)) for name in files)
