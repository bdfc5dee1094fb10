"""One process tree at a time on a run folder: an advisory lock on ``<exp_dir>/.run.lock``.

The driver takes the lock before it writes anything and holds it until it exits (its stages run
under it); a stage script or an evaluation started by hand on a folder that a live driver (or
another stage) works on stops at once with one line naming that process. The lock is
``flock(2)`` on an open file: the kernel drops it when the holding process dies, however it dies
(``kill -9`` included), so a stopped run never leaves it held. On NFS (Linux >= 2.6.12) ``flock``
is carried by the server's byte-range locks and holds across machines; a filesystem without locks
is named in one warning line and the run goes on unguarded.

The file holds who took the lock (pid, host, command, start time), for the message of the process
that finds it taken. It is not a result: :data:`LOCK_NAME` is left out of run-folder comparisons.
"""

import errno
import fcntl
import json
import os
import socket
import sys
import time

from b2diffurl.errors import UserError

LOCK_NAME = ".run.lock"
HELD_VARIABLE = "B2DIFFURL_RUN_LOCK"  # set by the driver to the folder it holds: its stages do not lock again
_held = []  # open lock files of this process (kept open: closing one drops its lock)
_held_dirs = set()  # run folders this process locked by hand (a round's stages in one process lock once)


class RunFolderBusy(UserError):
    """Another live process works on the run folder (found by the main process only)."""

    same_on_every_rank = False


def lock_path(exp_dir):
    return os.path.join(exp_dir, LOCK_NAME)


def holder_text(path):
    """Who holds the lock at ``path``, in words (from what the holder wrote)."""
    try:
        with open(path) as f:
            info = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"pid {info.get('pid')} on {info.get('host')} ({info.get('command', '?')}, since {started})"


def acquire(exp_dir, fd=None, command=None):
    """Take the run folder's lock without waiting; raises :class:`RunFolderBusy` naming the holder.

    ``fd``: an open descriptor of the lock file to lock (the driver's shell opens it and keeps it
    open, so the lock outlives this call and lasts as long as the driver); otherwise the file is
    opened here and kept open for the life of this process. Returns False (after one warning line)
    where the filesystem has no locks, True otherwise.
    """
    os.makedirs(exp_dir, exist_ok=True)
    path = lock_path(exp_dir)
    if fd is None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        _held.append(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunFolderBusy(
                f"{exp_dir} is in use by {holder_text(path)}: wait for it to finish or stop it "
                "(a stopped run continues where it stopped when rerun)"
            ) from None
        print(
            f"warning: cannot lock {path} ({os.strerror(err.errno)}: the filesystem has no file locks); "
            "nothing stops a second driver on this folder",
            file=sys.stderr,
        )
        return False
    info = {
        "pid": os.getppid() if command == "driver" else os.getpid(),
        "host": socket.gethostname(),
        "command": command or os.path.basename(sys.argv[0]),
        "started": round(time.time()),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    return True


def acquire_for_stage(exp_dir):
    """The lock for a stage or evaluation run by hand; a no-op under the driver that holds it, once this
    process holds it (a round's stages in one process), and for
    a run folder that does not exist yet (no process works on it; a stage that stops on a bad setting
    before writing then leaves nothing behind)."""
    held, real = os.environ.get(HELD_VARIABLE), os.path.realpath(exp_dir)
    if held and os.path.realpath(held) == real or real in _held_dirs:
        return True
    if not os.path.isdir(exp_dir):
        return False
    locked = acquire(exp_dir)
    if locked:
        _held_dirs.add(real)
    return locked
