"""``python -m b2diffurl.driver launch ARGS``: accelerate launch, with a failed rank's exit status and no
launcher traceback."""

import signal
import sys

from b2diffurl.errors import LOST_PEER, first_line

EXIT_NOT_MET = 4


def launch(argv):
    """``accelerate launch ARGV``; a failed rank ends it with that rank's exit status and no launcher
    traceback (the rank printed its own one-line error); Ctrl-C ends it with 130."""
    import logging

    import torch.distributed.run  # noqa: F401 - creates the elastic loggers silenced below
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    from torch.distributed import DistNetworkError

    args = launch_command_parser().parse_args(argv)
    try:
        launch_command(args)
    except DistNetworkError as err:  # several machines: the main one is not there (yet) or cannot be reached
        print(
            f"error: the machines did not meet ({first_line(err)}): start run_process.sh on every machine with the "
            "same NUM_MACHINES, MAIN_PROCESS_IP and MAIN_PROCESS_PORT (the main machine's address and a port it can "
            "open), "
            "each with its MACHINE_RANK; if one of them stopped, see its own output",
            file=sys.stderr,
        )
        return EXIT_NOT_MET
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        if failure.exitcode < 0 and args.num_machines and args.num_machines > 1:
            # a process of this machine died of a signal (the C++ runtime can abort when a peer
            # machine's connection breaks under it): it printed no line of its own
            try:
                name = signal.Signals(-failure.exitcode).name
            except ValueError:  # not a signal number this platform names
                name = f"exit status {failure.exitcode}"
            print(f"error: {LOST_PEER} (rank {rank} ended with {name})", file=sys.stderr)
            return 1
        return failure.exitcode if failure.exitcode > 0 else 1
    except (KeyboardInterrupt, SignalException):
        return 130
    return 0
