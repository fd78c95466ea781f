"""How the command lines show what the library reports: ``logging`` on stderr, ``-v`` / ``-q``, and result lines.

Library modules of ``trainer``, ``export`` and ``runtime`` never print: each has ``log =
logging.getLogger(__name__)`` and reports progress and summaries at INFO, a skipped file or dropped input at
WARNING and a failure that ends a command at ERROR. The command-line edge (:func:`runtime.command.run_command`, shared
by ``trainer``, ``runtime`` and ``python -m export``) shows them for the length of one command through
:func:`command_logging`: one handler on stderr whose default format is the bare message, so each message reads as
one plain line.

Levels (flags added to every subcommand by :func:`add_log_flags`):

- default: INFO and up, the bare message;
- ``-v`` / ``--verbose``: DEBUG and up; the debug lines are prefixed with the logger's name (``runtime.model:
  ...``), the others look as by default;
- ``-q`` / ``--quiet``: warnings and errors only; the command's status lines on stdout (:func:`say`, e.g.
  ``wrote FILE``) are hidden too. What a command exists to print (``runtime list``, the table of ``trainer subset``)
  is printed whatever the level. Where a subcommand's ``--quiet`` already means something else (``runtime play``:
  no status view), it keeps that meaning and the log level stays at INFO (its start and summary lines show).

Only the three package loggers get the handler (third-party loggers keep their own level), and they stop
propagating while a command runs, so a handler another library put on the root logger does not show a line twice.
The handler writes to whatever ``sys.stderr`` is when a record arrives, so a rich progress bar, which redirects
stderr through its console while it draws, prints log lines above the bar instead of through it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Iterator

PACKAGES = ("trainer", "export", "runtime")

_state = {"quiet": False}


class _Formatter(logging.Formatter):
    """The bare message; a DEBUG record is prefixed with its logger's name (``runtime.model: ...``)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"{record.name}: {text}" if record.levelno < logging.INFO else text


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to the current ``sys.stderr`` (pytest's capture, rich's redirect)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ and setStream assign it; the live one is used
        pass


def add_log_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``-v/--verbose`` and ``-q/--quiet`` to ``parser`` (a subcommand), leaving an existing ``--quiet`` alone.

    Parsed as ``args.verbose`` (bool) and ``args.log_quiet`` (bool; False where the subcommand's own ``--quiet``
    means something else).
    """
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show debug lines, each prefixed with the module that logged it")
    if "--quiet" not in parser._option_string_actions and "-q" not in parser._option_string_actions:
        parser.add_argument("-q", "--quiet", dest="log_quiet", action="store_true",
                            help="show warnings and errors only (no progress, summary or 'wrote FILE' lines)")


def log_level(*, verbose: bool = False, quiet: bool = False) -> int:
    """The level of the package loggers for the flags: DEBUG with ``verbose``, WARNING with ``quiet``, else INFO."""
    return logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO


@contextlib.contextmanager
def command_logging(*, verbose: bool = False, quiet: bool = False) -> Iterator[logging.Handler]:
    """Show the package loggers' records on stderr while the block runs; restore their previous set-up after it.

    Yields the handler (the bare message; ``name: message`` for a DEBUG line).
    """
    handler = _StderrHandler()
    handler.setFormatter(_Formatter("%(message)s"))
    loggers = [logging.getLogger(name) for name in PACKAGES]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    saved_quiet = _state["quiet"]
    level = log_level(verbose=verbose, quiet=quiet)
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(level)
        lg.propagate = False
    _state["quiet"] = quiet and not verbose
    try:
        yield handler
    finally:
        _state["quiet"] = saved_quiet
        for lg, (old_level, old_propagate) in zip(loggers, saved):
            lg.removeHandler(handler)
            lg.setLevel(old_level)
            lg.propagate = old_propagate


def say(line: str) -> None:
    """Print a command's status line (``wrote FILE``) on stdout, unless the command runs with ``-q``.

    For the command-line modules only; library code logs instead.
    """
    if not _state["quiet"]:
        print(line, flush=True)
