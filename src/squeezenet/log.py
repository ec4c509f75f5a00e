"""What the library has to say, without printing it: notes, warnings and progress lines
go to the ``squeezenet`` logger, and the command line (:func:`squeezenet.cli.main`)
shows them on stderr as ``note: ...``, ``warning: ...`` and plain lines. A program that
imports the library decides for itself (``logging.getLogger("squeezenet")``); by
Python's default only warnings reach stderr there.
"""

from __future__ import annotations

import logging
import sys

LOG = logging.getLogger("squeezenet")
NOTE = 25  # between INFO (progress lines) and WARNING
logging.addLevelName(NOTE, "NOTE")


def note(message: str) -> None:
    """Something the user should know that changes nothing (a remapping, a default used)."""
    LOG.log(NOTE, message)


def warn(message: str) -> None:
    """Something that may be wrong with the input (a skipped file, an empty class)."""
    LOG.warning(message)


def say(message: str) -> None:
    """A progress line (an epoch's summary)."""
    LOG.info(message)


class StderrLines(logging.Handler):
    """The command line's view: one line per record on the current ``sys.stderr``."""

    PREFIX = {NOTE: "note: ", logging.WARNING: "warning: "}

    def emit(self, record: logging.LogRecord) -> None:
        print(self.PREFIX.get(record.levelno, "") + record.getMessage(), file=sys.stderr, flush=True)


def to_stderr() -> None:
    """Show the library's notes, warnings and progress lines on stderr (once)."""
    if not any(isinstance(h, StderrLines) for h in LOG.handlers):
        LOG.addHandler(StderrLines())
    LOG.setLevel(logging.INFO)
