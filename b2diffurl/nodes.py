"""Several machines: every node must see the same run folder. ``python -m b2diffurl.nodes EXP_DIR``,
launched by run_process.sh on every machine (as the stages are) before round 0 when NUM_MACHINES > 1.

Global rank 0 writes a random token into ``EXP_DIR/.nodes``; every rank reads the file in its own
``EXP_DIR`` and says whether it holds that token; then rank 0 removes it. When some machine does not
see it (SavePath not on a filesystem every node mounts, or mounted elsewhere) every machine stops
with the same line naming the machines that do not, exit status 2, before anything else is written.
The check also proves, before round 0, that the machines reach each other (the launch's rendezvous).
"""

import os
import secrets
import socket
import sys

TOKEN_NAME = ".nodes"


def blind_machines(seen):
    """seen: [(machine rank, host, sees the token)] of every rank -> sorted [(machine rank, host)] of
    the machines where some rank does not see it."""
    return sorted({(machine, host) for machine, host, ok in seen if not ok})


def problem_line(exp_dir, blind):
    names = ", ".join(f"machine rank {m} ({h})" for m, h in blind)
    return (
        f"{names} cannot see the run folder {exp_dir} that machine rank 0 writes: SavePath must be on a filesystem "
        "every node mounts at the same path (NFS, Lustre, ...), the same SavePath on every node"
    )


def main(argv):
    if len(argv) != 1:
        print("usage: python -m b2diffurl.nodes EXP_DIR (launched on every machine by run_process.sh)", file=sys.stderr)
        return 2
    exp_dir = argv[0]
    import torch
    import torch.distributed as dist
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    path = os.path.join(exp_dir, TOKEN_NAME)
    token = [secrets.token_hex(16) if state.is_main_process else None]
    if state.is_main_process:
        os.makedirs(exp_dir, exist_ok=True)
        with open(path + ".partial", "w") as f:
            f.write(token[0])
        os.replace(path + ".partial", path)
    dist.broadcast_object_list(token, src=0)  # after the write: every rank looks once the file is there
    try:
        with open(path) as f:
            sees = f.read() == token[0]
    except OSError:
        sees = False
    seen = [None] * state.num_processes
    dist.all_gather_object(
        seen, (int(os.environ.get("GROUP_RANK", os.environ.get("NODE_RANK", "0"))), socket.gethostname(), sees)
    )
    if state.is_main_process:
        os.remove(path)
    blind = blind_machines(seen)
    if blind and state.is_local_main_process:
        print(f"error: {problem_line(exp_dir, blind)}", file=sys.stderr)
    dist.barrier()
    # leave without the interpreter's teardown: destroying the process group while a peer that has
    # already left tears its end down can abort in the C++ runtime ("terminate called ...")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(2 if blind else 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
