"""``python -m runtime`` is the ``runtime`` console script."""

import sys

from runtime.cli import main

sys.exit(main())
