"""Progress output: a tqdm bar on a terminal, plain periodic lines anywhere else.

A log file or a pipe never receives carriage-return redraws; ``enable(False)``
(``--no-progress``) silences every bar in the process, the image-decoding ones too.
"""

from __future__ import annotations

import contextlib
import sys
import time

_ENABLED = True


def enable(on: bool) -> None:
    global _ENABLED
    _ENABLED = bool(on)


@contextlib.contextmanager
def enabled(on: bool):
    """Progress output on or off for the duration of a block."""
    before = _ENABLED
    enable(on)
    try:
        yield
    finally:
        enable(before)


def _tty() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


class Progress:
    """``update(n, **postfix)`` and ``close()``; a bar on a TTY, else a line every
    ``every_s`` seconds (and at the end)."""

    def __init__(self, total: int, desc: str, initial: int = 0, every_s: float = 30.0):
        self.total, self.desc, self.n, self.every_s = total, desc, initial, every_s
        self.postfix: dict = {}
        self._last = time.perf_counter()
        self.bar = None
        if _ENABLED and _tty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, leave=True, dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int = 1, **postfix) -> None:
        self.n += n
        self.postfix = postfix
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
        elif _ENABLED and time.perf_counter() - self._last >= self.every_s:
            self._line()

    def _line(self) -> None:
        self._last = time.perf_counter()
        extra = " ".join(f"{k}={v}" for k, v in self.postfix.items())
        print(f"{self.desc}: {self.n}/{self.total} {extra}".rstrip(), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def progress(items, desc: str, min_total: int = 0):
    """Iterate ``items`` with progress output when there are at least ``min_total``."""
    items = list(items)
    if len(items) < min_total or not _ENABLED:
        yield from items
        return
    p = Progress(len(items), desc)
    try:
        for it in items:
            yield it
            p.update(1)
    finally:
        p.close()
