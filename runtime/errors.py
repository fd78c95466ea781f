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


class AudioUnavailable(KickspaceError):
    """Live play cannot start here: PortAudio is missing (``missing == "portaudio"``) or it finds no output device
    (``missing == "device"``). ``reason`` is the short one-line cause, ``str(err)`` adds what to do."""

    def __init__(self, missing: str, reason: str, advice: str) -> None:
        self.missing = missing
        self.reason = reason
        super().__init__(f"{reason}. {advice}" if advice else reason)


class DiskFullError(KickspaceError, OSError):
    """A write that failed because the disk (or the user's quota) is full; the message names the file.

    Also an :class:`OSError` with ``errno`` ENOSPC or EDQUOT, so code that already tolerates a failed write (the
    feature cache turns itself off) still does.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.message = message

    def __str__(self) -> str:
        return self.message
