"""``python -m b2diffurl.figures RUN_DIR ... --out DIR``: see the package docstring."""

import sys

from b2diffurl.figures.cli import main

sys.exit(main())
