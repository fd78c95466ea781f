"""``python -m trainer`` is the ``trainer`` console script."""

import sys

from trainer.cli import main

sys.exit(main())
