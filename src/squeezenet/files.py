"""Writing files without losing any: atomic replace, up-front writability checks,
one-line errors for full or read-only disks, and a one-writer lock on run folders.

torch is imported only by :func:`atomic_save`, so the serving path can use the rest.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import SqueezeNetError

_HINTS = {
    errno.ENOSPC: "the disk is full; free some space or choose another output folder",
    errno.EDQUOT: "the disk quota is exhausted; free some space or choose another output folder",
    errno.EROFS: "the file system is read-only; choose another output folder",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "permission denied; choose a folder you can write to",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "the path is a folder; give a file name",
    errno.ENAMETOOLONG: "the path is too long",
}


def disk_error(e: OSError, path) -> SqueezeNetError:
    """A one-line SqueezeNetError for an OSError met while writing ``path``."""
    hint = _HINTS.get(e.errno, "check the path and the disk")
    return SqueezeNetError(f"cannot write '{path}': {e.strerror or e} ({hint})")


def ensure_writable_dir(path) -> Path:
    """Create folder ``path`` if needed and prove a file can be written in it, before any
    long work starts. Raises a one-line error otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise disk_error(e, path) from e
    return path


@contextmanager
def writable_dir_kept_on_success(path):
    """:func:`ensure_writable_dir`, undone if the block raises: the folders this call created
    (``path`` and any missing parents) are removed again while they are still empty, so a
    run refused before it wrote anything (missing data, a bad setting) leaves no empty
    folder behind. A folder that existed before, or holds anything, is never touched."""
    path = Path(path)
    created = [p for p in (path, *path.parents) if not p.exists()]  # deepest first
    ensure_writable_dir(path)
    try:
        yield path
    except BaseException:
        for p in created:
            try:
                p.rmdir()  # only ever an empty folder
            except OSError:
                break
        raise


def ensure_writable_file(path) -> Path:
    """Check that ``path`` (a file to be written later) can be created or replaced."""
    path = Path(path)
    if path.is_dir():
        raise SqueezeNetError(f"cannot write '{path}': it is a folder; give a file name")
    ensure_writable_dir(path.parent if str(path.parent) else Path("."))
    return path


def _atomic(path, write) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise disk_error(e, path) from e
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise disk_error(e, path) from e
        if isinstance(e, RuntimeError) and "write" in str(e).lower():  # torch's zip writer wraps ENOSPC
            raise SqueezeNetError(f"cannot write '{path}': {str(e).splitlines()[0]} (is the disk full?)") from e
        raise


def sha256_file(path) -> str:
    """The hex SHA-256 of a file's bytes, read a megabyte at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, rename over it: a crash
    or a full disk leaves the previous file untouched."""
    _atomic(path, lambda f: f.write(data))


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_save(obj, path) -> None:
    """``torch.save`` with the same guarantee as :func:`atomic_write_bytes`."""
    import torch

    _atomic(path, lambda f: torch.save(obj, f))


class RunLock:
    """An exclusive OS lock (``fcntl.flock``) on ``<folder>/.lock``.

    A second writer is refused at once with the holder's PID. The kernel drops the lock
    when its process exits, however it exits (``kill -9`` too), so a stale lock file
    never blocks a later run. A block that fails while the folder holds nothing but the
    lock file takes the file with it (so a refused run leaves no folder that looks used,
    and :func:`writable_dir_kept_on_success` can remove the folder it made); it is
    unlinked while still locked, and a taker whose lock turns out to be on an unlinked
    file takes it again on the new one, so the lock stays exclusive.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.fd = None

    def __enter__(self):
        ensure_writable_dir(self.folder)
        for _ in range(100):  # a file unlinked between our open and our lock: lock the new one
            if self._take(self.folder / ".lock"):
                return self
        raise SqueezeNetError(f"cannot lock '{self.folder}': its lock file keeps being replaced; is another "
                              "program deleting '.lock' there?")

    def _take(self, path: Path) -> bool:
        import fcntl

        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise disk_error(e, path) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise SqueezeNetError(f"'{self.folder}' is in use by a running squeezenet process (pid {holder}); "
                                  "wait for it to finish or choose another --out") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if not same:  # a failing holder removed it between our open and our lock: ours locks nothing
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return True

    def __exit__(self, exc_type, *exc):
        import fcntl

        if self.fd is None:
            return False
        try:
            if exc_type is not None and [p.name for p in self.folder.iterdir()] == [".lock"]:
                (self.folder / ".lock").unlink()  # still locked: see _take
        except OSError:
            pass  # the lock file stays; the folder is still usable
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None
        return False
