"""Writing files safely, in one place: the atomic writer every output goes through (temporary file, fsync,
exclusive publish or replace), CSV tables, and the SHA-256 of a file (model weights, prepared datasets)."""

from __future__ import annotations

import csv
import hashlib
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import XPCSInputError

__all__ = ["atomic_path", "write_csv", "file_sha256"]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _check_target(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise XPCSInputError(f"{path} is a folder; give a file name for the output")
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):  # never replace a device, FIFO or socket
        raise XPCSInputError(f"{path} exists and is not a regular file (a device, FIFO or socket); it is never "
                             "replaced: choose another output")
    if path.exists() and not overwrite:
        raise XPCSInputError(f"{path} exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise XPCSInputError(f"output folder {path.parent} does not exist; create it first")


@contextmanager
def atomic_path(path, overwrite: bool = False):
    """Write ``path`` atomically: yields a temporary path in the same folder, renamed over ``path`` on success.

    Write the whole output to the yielded path (the file exists, empty: open it with mode ``"w"``). On a normal
    exit it is flushed to disk and moved onto ``path`` with ``os.replace`` (atomic within a file system); on any
    exception it is removed and ``path`` is left as it was. The temporary name starts with a dot and keeps the
    suffix of ``path`` (``.png``, ``.csv``), for writers that choose the format from it.

    Raises
    ------
    XPCSInputError
        ``path`` exists and ``overwrite`` is False, is a folder, or its folder is missing or not writable.
    """
    path = Path(path)
    _check_target(path, overwrite)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as exc:
        raise XPCSInputError(f"cannot write in {path.parent} ({_one_line(exc)}); choose a writable folder") from exc
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _check_target(path, overwrite)  # created by someone else meanwhile?
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~umask)  # not mkstemp's 0o600
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _publish(tmp, path, overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` onto ``path``: replacing it with ``overwrite``, else exclusively (a hard link
    fails if ``path`` appeared meanwhile, so of two concurrent writers only one succeeds)."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise XPCSInputError(f"{path} was created by another process meanwhile; pass overwrite=True "
                             "to replace it") from None
    except OSError:  # a file system without hard links: check, then rename
        _check_target(path, overwrite)
        os.replace(tmp, path)
        return
    tmp.unlink(missing_ok=True)


def write_csv(path, rows: list[dict], *, overwrite: bool = False) -> Path:
    """Write ``rows`` (dicts with the same keys) as a CSV table, atomically (see :func:`atomic_path`)."""
    if not rows:
        raise XPCSInputError(f"no rows to write to {path}")
    fields = list(dict.fromkeys(k for r in rows for k in r))  # every column of every row, in first-seen order
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return Path(path)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, hex (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
