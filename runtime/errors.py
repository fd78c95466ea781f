"""The one exception type of the Kickspace package.

Every error a user can act on (a bad file, an invalid preset field, a model of the wrong version, a missing
device) is raised as :class:`KickspaceError` with a message that says what is wrong and what to do. It lives
in ``runtime`` because the runtime is the leaf every other package may import; ``trainer`` and ``export``
re-raise through it too.
"""

from __future__ import annotations


class KickspaceError(Exception):
    """An error with a message a musician or an ML engineer can act on."""


class ConfigError(KickspaceError, ValueError):
    """An invalid config, preset, spec or model field; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")
