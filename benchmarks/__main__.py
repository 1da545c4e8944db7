"""``python -m benchmarks <scenario> [options]``: see :mod:`benchmarks.cli`.

``synckairos bench`` of a checkout runs this too, with ``BENCHMARKS_PROG`` set
to the name its help and report show.
"""

import os
import sys

from benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main(prog=os.environ.pop("BENCHMARKS_PROG", "python -m benchmarks")))
