"""``python -m export`` (a shell cannot run a command named ``export``, so the module form is the documented one)."""

import sys

from export.cli import main

sys.exit(main())
