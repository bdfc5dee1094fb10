"""SHA256SUMS of the built toy model's folder: written with quality.json, checked by
``python -m b2diffurl.toyworld verify`` and by the tests."""

import os

from b2diffurl.records import file_sha256
from b2diffurl.toyworld import models

CHECKSUMS_FILE = "SHA256SUMS"


def checksum_lines(folder):
    """``<sha256>  <relative path>`` of every file under ``folder`` but SHA256SUMS, sorted."""
    lines = []
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder)
            if rel != CHECKSUMS_FILE:
                lines.append(f"{file_sha256(path)}  {rel}")
    return sorted(lines, key=lambda line: line.split("  ", 1)[1])


def write_checksums(folder):
    """Write ``folder``'s SHA256SUMS (every other file of it)."""
    with open(os.path.join(folder, CHECKSUMS_FILE), "w") as f:
        f.write("\n".join(checksum_lines(folder)) + "\n")


def verify(folder=models.MODEL_DIR):
    """Problems (one line each) of the built model folder against its SHA256SUMS; [] when intact."""
    listed = os.path.join(folder, CHECKSUMS_FILE)
    if not os.path.isfile(listed):
        return [f"{listed} is missing: rebuild with `python -m b2diffurl.toyworld build`"]
    with open(listed) as f:
        wanted = dict(reversed(line.rstrip("\n").split("  ", 1)) for line in f if line.strip())
    problems = []
    for rel, digest in wanted.items():
        path = os.path.join(folder, rel)
        if not os.path.isfile(path):
            problems.append(f"{path} is missing")
        elif file_sha256(path) != digest:
            problems.append(f"{path} does not match its checksum in {CHECKSUMS_FILE}")
    return problems
