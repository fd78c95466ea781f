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


def check_fields(data: object, cls: type, *, where: str, prefix: str | None = None) -> dict:
    """Return ``data`` if it is a dict whose keys are all fields of dataclass ``cls``; else raise ConfigError.

    ``where`` names the object in messages; an unknown key is named ``PREFIX.key`` (``prefix`` defaults to
    ``where``; pass ``""`` for top-level keys).
    """
    import dataclasses

    if not isinstance(data, dict):
        raise ConfigError(where, f"must be an object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    prefix = where if prefix is None else prefix
    for key in data:
        if key not in known:
            raise ConfigError(f"{prefix}.{key}" if prefix else str(key),
                              f"unknown field (known: {', '.join(sorted(known))})")
    return data


def run_command(args, *, program: str) -> int:
    """Run a parsed subcommand's ``handler``; a :class:`KickspaceError` is logged as one line and exits 2.

    The shared edge of the ``trainer``, ``runtime`` and ``python -m export`` command lines: the package loggers
    show on stderr for the command's length at the level its ``-v`` / ``-q`` ask for (:mod:`runtime.logs`). A full
    disk met outside the atomic writes (a library's own writer, e.g. TensorBoard's event file) is one line too.
    """
    import errno
    import logging

    from runtime.logs import command_logging

    log = logging.getLogger(program)
    with command_logging(verbose=getattr(args, "verbose", False), quiet=getattr(args, "log_quiet", False)):
        try:
            return args.handler(args)
        except KickspaceError as err:
            log.error(f"{program} {args.command}: error: {err}")
            return 2
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            where = f" writing {err.filename}" if err.filename else ""
            log.error(f"{program} {args.command}: error: the disk is full{where} ({err.strerror}); free some space "
                      "and run again")
            return 2
        except KeyboardInterrupt:
            log.error(f"{program} {args.command}: interrupted")
            return 130
