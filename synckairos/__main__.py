"""``python -m synckairos``: same as the ``synckairos`` console script."""

import sys

from synckairos.cli import main

sys.exit(main())
