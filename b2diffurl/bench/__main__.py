"""``python -m b2diffurl.bench``: the command line of :mod:`b2diffurl.bench.cli`."""

import sys

from b2diffurl.bench.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
