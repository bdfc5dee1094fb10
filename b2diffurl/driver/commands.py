"""``python -m b2diffurl.driver COMMAND``: what run_process.sh asks of Python.

    prepare [PREPARED]                  check the whole run, print its settings as shell assignments
                                        (and write the checked run to PREPARED for start and report)
    start EXP_DIR FD PREPARED           lock the run folder on the shell's descriptor FD, compare the
                                        settings with the recorded ones, write settings.json
    catchup EXP_DIR SAVE_INTERVAL [ROUND]
                                        bring the bookkeeping in line with the finished rounds (and
                                        print ROUND's summary line)
    report EXP_DIR SAVE_INTERVAL PREPARED [FIGURES]
                                        the end of a run: bookkeeping, settings.json, the outcome block
    launch ACCELERATE_ARGS...           accelerate launch, with a failed rank's exit status and no
                                        launcher traceback

Each command imports only what it needs: ``catchup`` runs after every round and starts in a
fraction of a second (no torch).
"""

import os
import sys

from b2diffurl.errors import UserError


def main(argv):
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if command == "prepare":
            from b2diffurl.driver.machines import ephemeral_ports, port_warning
            from b2diffurl.driver.prepare import checked_run, shell_assignments
            from b2diffurl.settings import write_prepared

            values, config = checked_run(os.environ)
            if warning := port_warning(values, ephemeral_ports()):
                print(f"warning: {warning}", file=sys.stderr)
            if args:
                write_prepared(args[0], values, config)
            print(shell_assignments(values))
        elif command == "start":
            from b2diffurl.settings import read_prepared, start

            start(args[0], int(args[1]), read_prepared(args[2]))
        elif command == "report":
            from b2diffurl.driver.books import catch_up
            from b2diffurl.outcome import report
            from b2diffurl.settings import finish, read_prepared

            catch_up(args[0], int(args[1]))
            finish(args[0], read_prepared(args[2]))
            print(report(args[0], args[3] if len(args) > 3 else ""))
        elif command == "catchup":
            from b2diffurl.driver.books import catch_up, summary_line

            exp_dir, save_interval = args[0], int(args[1])
            catch_up(exp_dir, save_interval)
            if len(args) > 2:
                print(summary_line(exp_dir, args[2]))
        elif command == "launch":
            from b2diffurl.driver.launch import launch

            return launch(args)
        else:
            print(f"error: unknown command {command!r}: use prepare, start, catchup, report or launch", file=sys.stderr)
            return 2
    except UserError as err:
        for line in getattr(err, "problems", [str(err)]):
            print(f"error: {line}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    return 0
