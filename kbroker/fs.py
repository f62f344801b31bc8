"""File-system helpers every floor may use: durable replace, directory fsync, syncfs."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def _load_syncfs():  # type: ignore[no-untyped-def]
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_syncfs = _load_syncfs()


def sync_filesystem(path: Path) -> None:
    """Make everything written to the file system holding ``path`` durable in one call.

    Linux ``syncfs(2)``: one call instead of an fsync per file and directory when many
    small files were just written (creating or closing thousands of partitions).
    Falls back to ``os.sync()`` where ``syncfs`` is unavailable.
    """
    if _syncfs is not None:
        fd = os.open(path, os.O_RDONLY)
        try:
            if _syncfs(fd) == 0:
                return
            err = ctypes.get_errno()
        finally:
            os.close(fd)
        log.warning("syncfs(%s) failed (errno %d); falling back to sync()", path, err)
    os.sync()


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename/create inside it is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` via ``<path>.tmp``, fsync and rename.

    ``mode`` is the new file's permission bits (secrets are written 0o600).
    On any failure (a full disk, say) the temporary file is removed and ``path`` is left
    as it was.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
