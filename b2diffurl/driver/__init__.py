"""What run_process.sh asks of Python (``python -m b2diffurl.driver COMMAND``, see :mod:`.commands`).

- :mod:`.prepare`: check the whole run before round 0, print its settings as shell assignments;
- :mod:`.machines`: the variables of a run on several machines and the ports they meet on;
- :mod:`.books`: progress.csv, the cleanup after a stop, a round's summary line;
- :mod:`.launch`: accelerate launch with a failed rank's exit status and no launcher traceback.

The variables themselves (names, fields, near misses) are :mod:`b2diffurl.variables`.
"""
