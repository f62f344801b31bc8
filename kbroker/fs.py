"""File-system helpers every floor may use: durable replace, directory fsync, syncfs, and
the file stores (disk, or memory for ``log.dirs=:memory:``) chosen by path."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import itertools
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Protocol, TypeVar

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


# -- file stores ---------------------------------------------------------------------------
#
# Everything the broker keeps in files (segment files and indexes, checkpoints, snapshots,
# meta.properties, the JSON state stores) goes through a :class:`FileStore` chosen by path:
# paths under a memory root (``log.dirs=:memory:``) live in a :class:`MemoryFileStore`,
# every other path on disk through :data:`DISK` (the plain ``os`` calls). The segment
# ``.log`` files' read/append paths pick their store once, when the segment is opened, so
# the per-append and per-fetch code stays free of any lookup.

_V = TypeVar("_V")

#: The prefix of every memory root: no directory of this name is ever created.
MEMORY_PREFIX = "/:memory:/"
#: What ``log.dirs`` names to keep the data in memory.
MEMORY_LOG_DIRS = ":memory:"


class FileStore(Protocol):
    """The file operations the broker's stores need, keyed by path."""

    #: True when nothing reaches the disk (fsyncs are no-ops, nothing survives the process).
    in_memory: bool

    def read_bytes(self, path: Path) -> bytes:
        """The whole file; FileNotFoundError if absent."""
        ...

    def write_atomic(self, path: Path, data: bytes, mode: int = 0o644) -> None:
        """Replace ``path`` with ``data`` durably (temporary file, fsync, rename)."""
        ...

    def replace(self, path: Path, data: bytes) -> None:
        """Replace ``path`` with ``data`` through a temporary file and rename, no fsync."""
        ...

    def create_new(self, path: Path, data: bytes = b"") -> None:
        """Create ``path`` (FileExistsError if there) holding ``data``, no fsync."""
        ...

    def write_at(self, path: Path, data: bytes, pos: int, *, truncate: int | None = None,
                 fsync: bool = False) -> None:
        """Write ``data`` at ``pos`` (creating the file), then cut it to ``truncate`` bytes if given."""
        ...

    def append(self, path: Path, data: bytes) -> None:
        """Append ``data`` to ``path`` (created if absent)."""
        ...

    def fsync(self, path: Path) -> None:
        """Make the file's earlier writes durable; FileNotFoundError if absent."""
        ...

    def exists(self, path: Path) -> bool:
        """Whether a file or directory is at ``path``."""
        ...

    def is_dir(self, path: Path) -> bool:
        """Whether a directory is at ``path``."""
        ...

    def size(self, path: Path) -> int:
        """The file's length; FileNotFoundError if absent."""
        ...

    def mtime_ms(self, path: Path) -> int:
        """The file's last modification time in epoch ms; FileNotFoundError if absent."""
        ...

    def listdir(self, path: Path) -> list[str]:
        """Names in a directory; FileNotFoundError if absent."""
        ...

    def makedirs(self, path: Path) -> None:
        """Create a directory and its parents (no error if it exists)."""
        ...

    def rename(self, src: Path, dst: Path) -> None:
        """Rename a file or directory (replacing a file at ``dst``)."""
        ...

    def unlink(self, path: Path, missing_ok: bool = False) -> None:
        """Remove a file."""
        ...

    def rmtree(self, path: Path) -> None:
        """Remove a directory and everything in it, ignoring errors."""
        ...

    def fsync_dir(self, path: Path) -> None:
        """Make creations and renames in a directory durable."""
        ...

    def sync_filesystem(self, path: Path) -> None:
        """Make everything written to the store holding ``path`` durable."""
        ...


class DiskStore:
    """The file system, through exactly the calls the broker always made."""

    in_memory = False

    def read_bytes(self, path: Path) -> bytes:
        return path.read_bytes()

    def write_atomic(self, path: Path, data: bytes, mode: int = 0o644) -> None:
        atomic_write(path, data, mode)

    def replace(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def create_new(self, path: Path, data: bytes = b"") -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            if data:
                os.write(fd, data)
        finally:
            os.close(fd)

    def write_at(self, path: Path, data: bytes, pos: int, *, truncate: int | None = None,
                 fsync: bool = False) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            if data:
                os.pwrite(fd, data, pos)
            if truncate is not None:
                os.ftruncate(fd, truncate)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(f"short write to {path}")
        finally:
            os.close(fd)

    def fsync(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def exists(self, path: Path) -> bool:
        return path.exists()

    def is_dir(self, path: Path) -> bool:
        return path.is_dir()

    def size(self, path: Path) -> int:
        return path.stat().st_size

    def mtime_ms(self, path: Path) -> int:
        return path.stat().st_mtime_ns // 1_000_000

    def listdir(self, path: Path) -> list[str]:
        return os.listdir(path)

    def makedirs(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)

    def rename(self, src: Path, dst: Path) -> None:
        os.rename(src, dst)

    def unlink(self, path: Path, missing_ok: bool = False) -> None:
        path.unlink(missing_ok=missing_ok)

    def rmtree(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def fsync_dir(self, path: Path) -> None:
        fsync_dir(path)

    def sync_filesystem(self, path: Path) -> None:
        sync_filesystem(path)


def _move_keys(table: dict[str, _V], src: str, dst: str) -> None:
    """Re-key ``src`` and every key below it (``src/...``) to the same place under ``dst``."""
    prefix = src + "/"
    for key in [k for k in table if k == src or k.startswith(prefix)]:
        table[dst + key[len(src):]] = table.pop(key)


def _missing(path: Path) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))


class MemoryFileStore:
    """Files and directories in memory, for brokers whose ``log.dirs`` is ``:memory:``.

    A file is a ``bytearray`` (a segment keeps a reference to its own and reads and
    appends it directly); directories are sets of child names. One lock guards the tree:
    the broker's threads (requests, retention, flushes) use it concurrently.
    """

    in_memory = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, bytearray] = {}
        self._mtimes: dict[str, int] = {}
        self._dirs: dict[str, set[str]] = {}

    # -- internals --------------------------------------------------------------------------
    def _parent_children(self, key: str, path: Path) -> set[str]:
        children = self._dirs.get(os.path.dirname(key))
        if children is None:
            raise _missing(path.parent)
        return children

    def _put(self, path: Path, data: bytes | bytearray) -> bytearray:
        key = str(path)
        if key in self._dirs:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), key)
        self._parent_children(key, path).add(os.path.basename(key))
        buf = self._files[key] = bytearray(data)
        self._mtimes[key] = time.time_ns() // 1_000_000
        return buf

    def _get(self, path: Path) -> bytearray:
        buf = self._files.get(str(path))
        if buf is None:
            raise _missing(path)
        return buf

    # -- segment files ----------------------------------------------------------------------
    def open_buffer(self, path: Path, *, create: bool = False, exclusive: bool = False) -> bytearray:
        """The ``bytearray`` that is the file at ``path`` (created empty if ``create``)."""
        with self._lock:
            buf = self._files.get(str(path))
            if buf is not None:
                if exclusive:
                    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
                return buf
            if not create:
                raise _missing(path)
            return self._put(path, b"")

    def set_mtime_ms(self, path: Path, mtime_ms: int) -> None:
        """Set the file's modification time (a cleaned segment keeps the replaced ones')."""
        with self._lock:
            self._get(path)
            self._mtimes[str(path)] = mtime_ms

    def touch(self, path: Path) -> None:
        """Record a write to ``path`` now (its modification time drives retention.ms)."""
        self._mtimes[str(path)] = time.time_ns() // 1_000_000

    # -- FileStore --------------------------------------------------------------------------
    def read_bytes(self, path: Path) -> bytes:
        with self._lock:
            return bytes(self._get(path))

    def write_atomic(self, path: Path, data: bytes, mode: int = 0o644) -> None:
        with self._lock:
            self._put(path, data)

    def replace(self, path: Path, data: bytes) -> None:
        with self._lock:
            self._put(path, data)

    def create_new(self, path: Path, data: bytes = b"") -> None:
        with self._lock:
            if str(path) in self._files or str(path) in self._dirs:
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
            self._put(path, data)

    def write_at(self, path: Path, data: bytes, pos: int, *, truncate: int | None = None,
                 fsync: bool = False) -> None:
        with self._lock:
            buf = self._files.get(str(path))
            if buf is None:
                buf = self._put(path, b"")
            if data:
                if len(buf) < pos:
                    buf.extend(bytes(pos - len(buf)))
                buf[pos : pos + len(data)] = data
            if truncate is not None:
                del buf[truncate:]
            self.touch(path)

    def append(self, path: Path, data: bytes) -> None:
        with self._lock:
            buf = self._files.get(str(path))
            if buf is None:
                buf = self._put(path, b"")
            buf += data
            self.touch(path)

    def fsync(self, path: Path) -> None:
        with self._lock:
            self._get(path)

    def exists(self, path: Path) -> bool:
        key = str(path)
        return key in self._files or key in self._dirs

    def is_dir(self, path: Path) -> bool:
        return str(path) in self._dirs

    def size(self, path: Path) -> int:
        with self._lock:
            return len(self._get(path))

    def mtime_ms(self, path: Path) -> int:
        with self._lock:
            self._get(path)
            return self._mtimes[str(path)]

    def listdir(self, path: Path) -> list[str]:
        with self._lock:
            children = self._dirs.get(str(path))
            if children is None:
                raise _missing(path)
            return list(children)

    def makedirs(self, path: Path) -> None:
        with self._lock:
            self._makedirs(str(path))

    def _makedirs(self, key: str) -> None:
        if key in self._dirs:
            return
        if key in self._files:
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), key)
        parent = os.path.dirname(key)
        if parent != key:
            self._makedirs(parent)
            self._dirs[parent].add(os.path.basename(key))
        self._dirs[key] = set()

    def create_dir(self, path: Path) -> None:
        """Create one directory (its parent must exist); FileExistsError if something is there."""
        with self._lock:
            key = str(path)
            if key in self._dirs or key in self._files:
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), key)
            self._parent_children(key, path).add(os.path.basename(key))
            self._dirs[key] = set()

    def rename(self, src: Path, dst: Path) -> None:
        with self._lock:
            s, d = str(src), str(dst)
            if s in self._files:
                self._parent_children(d, dst).add(os.path.basename(d))
                self._files[d] = self._files.pop(s)
                self._mtimes[d] = self._mtimes.pop(s)
            elif s in self._dirs:
                if d in self._dirs or d in self._files:
                    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), d)
                self._parent_children(d, dst).add(os.path.basename(d))
                _move_keys(self._files, s, d)
                _move_keys(self._mtimes, s, d)
                _move_keys(self._dirs, s, d)
            else:
                raise _missing(src)
            self._dirs[os.path.dirname(s)].discard(os.path.basename(s))

    def unlink(self, path: Path, missing_ok: bool = False) -> None:
        with self._lock:
            key = str(path)
            if self._files.pop(key, None) is None:
                if missing_ok:
                    return
                raise _missing(path)
            self._mtimes.pop(key, None)
            self._dirs[os.path.dirname(key)].discard(os.path.basename(key))

    def rmtree(self, path: Path) -> None:
        with self._lock:
            key = str(path)
            prefix = key + "/"
            for table in (self._files, self._mtimes, self._dirs):
                for k in [k for k in table if k == key or k.startswith(prefix)]:
                    del table[k]
            parent = self._dirs.get(os.path.dirname(key))
            if parent is not None:
                parent.discard(os.path.basename(key))

    def fsync_dir(self, path: Path) -> None:
        pass  # nothing to make durable

    def sync_filesystem(self, path: Path) -> None:
        pass  # nothing to make durable

    @property
    def file_count(self) -> int:
        """Files held (for tests and diagnostics)."""
        return len(self._files)


#: The file system.
DISK: FileStore = DiskStore()
#: Every memory root's files (one tree: roots are directories under :data:`MEMORY_PREFIX`).
MEMORY = MemoryFileStore()
_root_ids = itertools.count(1)


def store_for(path: Path | str) -> FileStore:
    """The store that holds ``path``: memory under a memory root, else the disk."""
    return MEMORY if os.fspath(path).startswith(MEMORY_PREFIX) else DISK


def is_memory_path(path: Path | str) -> bool:
    """Whether ``path`` lies under a memory root."""
    return os.fspath(path).startswith(MEMORY_PREFIX)


def new_memory_root() -> Path:
    """A fresh, empty directory in memory for one broker's data (see :func:`drop_memory_root`)."""
    root = Path(f"{MEMORY_PREFIX}{os.getpid()}-{next(_root_ids)}")
    MEMORY.makedirs(root)
    return root


def drop_memory_root(root: Path) -> None:
    """Free everything stored under a memory root (the broker stopped)."""
    if not is_memory_path(root):
        raise ValueError(f"{root} is not a memory root")
    MEMORY.rmtree(root)


def read_text(path: Path) -> str:
    """The UTF-8 text of the file at ``path`` in its store (FileNotFoundError if absent)."""
    return store_for(path).read_bytes(path).decode("utf-8")


def save_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Create ``path``'s directory if needed and replace the file durably in its store."""
    store = store_for(path)
    store.makedirs(path.parent)
    store.write_atomic(path, data, mode)
