"""``python -m b2diffurl.toyworld``: the toy world's tools, :mod:`b2diffurl.toylab.cli`."""

import sys

from b2diffurl.toylab.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
