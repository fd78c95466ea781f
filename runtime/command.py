"""The shared edge of every command line (``trainer``, ``runtime``, ``python -m export``): run a parsed
subcommand and turn a :class:`~runtime.errors.KickspaceError` into one line and an exit status."""

from __future__ import annotations

import errno
import logging

from runtime.errors import KickspaceError
from runtime.logs import command_logging


def run_command(args, *, program: str) -> int:
    """Run a parsed subcommand's ``handler``; a :class:`KickspaceError` is logged as one line and exits 2.

    The shared edge of the ``trainer``, ``runtime`` and ``python -m export`` command lines: the package loggers
    show on stderr for the command's length at the level its ``-v`` / ``-q`` ask for (:mod:`runtime.logs`). A full
    disk met outside the atomic writes (a library's own writer, e.g. TensorBoard's event file) is one line too.
    """
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
