"""The local backend: objects are files under one folder.

A put writes a temporary file in the object's own folder (same file system), fsyncs it, and
publishes it with :func:`os.link`, which fails when the name exists: create-only and atomic,
so a reader sees the whole object or none, and a second writer of the same key gets
:class:`~feature_store.engine.storage.base.ObjectExists` without touching the first one's
file. Reads open the file once without following symlinks (``O_NOFOLLOW``, ``O_NONBLOCK``:
no object is reached through a link or a FIFO planted in the folder), check it is a regular
file and its size on that descriptor, then read at most ``max_bytes + 1`` from it: the checks
of :func:`feature_store.integrity.read_bounded`, on the very file that is read (that helper
takes a path and follows symlinks).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from feature_store.atomic import fsync_dir
from feature_store.engine.storage.base import (DEFAULT_MAX_GET_BYTES, DEFAULT_MAX_RANGES_BYTES, TEMP_PREFIX, Data,
                                               ObjectExists, ObjectInfo, ObjectNotFound, Storage, check_key,
                                               check_prefix, check_ranges, put_chunks, too_large)
from feature_store.errors import StoreError

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _mtime(st: os.stat_result) -> datetime:
    """A file's modification time, aware (UTC)."""
    return datetime.fromtimestamp(st.st_mtime, tz=UTC)


class LocalStorage(Storage):
    """Objects as files under ``root`` (created on the first put).

    Parameters
    ----------
    root : str or PathLike
        The folder; ``~`` is expanded.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def put_new(self, key: str, data: Data) -> ObjectInfo:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StoreError(f"{self.url}: {key!r} would be under an object (a file): the local backend keeps "
                             f"keys and their prefixes apart") from None
        if target.is_dir():
            raise StoreError(f"{self.url}: {key!r} is a prefix of other objects (a folder) here") from None
        if target.parent.is_symlink() or not target.parent.resolve().is_relative_to(self.root.resolve()):
            raise StoreError(f"{self.url}: the folder of {key!r} leads out of the store (a symlink): refused")
        tmp = target.with_name(f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}")
        h = hashlib.sha256()
        size = 0
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, 0o644)
            with os.fdopen(fd, "wb") as fh:
                for part in put_chunks(data, h, what=repr(key)):
                    size += len(part)
                    fh.write(part)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, target, follow_symlinks=False)
            except FileExistsError:
                raise ObjectExists(f"{self.url}: object {key!r} already exists; it was not overwritten") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        fsync_dir(target.parent)
        return ObjectInfo(key=key, size=size, sha256=h.hexdigest())

    def _open(self, key: str) -> tuple[int, os.stat_result]:
        """A read-only descriptor of the object's regular file (no symlink followed) and its stat."""
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _O_NOFOLLOW | _O_CLOEXEC)
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.url}: no object {key!r}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError(f"{path} is a symlink, not an object of the store: refused") from None
            raise
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):  # a prefix, not an object (as on S3)
            os.close(fd)
            raise ObjectNotFound(f"{self.url}: no object {key!r}")
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise StoreError(f"{path} is not a regular file, not an object of the store: refused")
        return fd, st

    def get(self, key: str, *, max_bytes: int = DEFAULT_MAX_GET_BYTES) -> bytes:
        fd, st = self._open(key)
        with os.fdopen(fd, "rb") as fh:
            if st.st_size > max_bytes:
                raise too_large(f"{self.url}/{key}", st.st_size, max_bytes)
            data = fh.read(max_bytes + 1)
        if len(data) > max_bytes:  # it grew while read
            raise too_large(f"{self.url}/{key}", len(data), max_bytes)
        return data

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]], *,
                   max_bytes: int = DEFAULT_MAX_RANGES_BYTES, size: int | None = None) -> list[bytes]:
        fd, st = self._open(key)  # the size the file has now, whatever the caller was told
        try:
            starts, lengths = check_ranges(key, ranges, size=st.st_size, max_bytes=max_bytes)
            out = [os.pread(fd, n, start) for start, n in zip(starts, lengths, strict=True)]
        finally:
            os.close(fd)
        if any(len(b) != n for b, n in zip(out, lengths, strict=True)):
            raise StoreError(f"{self.url}: object {key!r} shrank while read: refused")
        return out

    def get_start(self, key: str, *, length: int) -> tuple[bytes, ObjectInfo]:
        fd, st = self._open(key)
        try:
            n = min(int(length), st.st_size)
            check_ranges(key, [(0, n)], size=st.st_size, max_bytes=DEFAULT_MAX_RANGES_BYTES)
            data = os.pread(fd, n, 0)
        finally:
            os.close(fd)
        if len(data) != n:
            raise StoreError(f"{self.url}: object {key!r} shrank while read: refused")
        return data, ObjectInfo(key=key, size=st.st_size, last_modified=_mtime(st))

    def head(self, key: str) -> ObjectInfo:
        fd, st = self._open(key)
        os.close(fd)
        return ObjectInfo(key=key, size=st.st_size, last_modified=_mtime(st))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        prefix = check_prefix(prefix)
        start = self.root.joinpath(*prefix.split("/")) if prefix else self.root
        if not start.is_dir() or start.is_symlink():  # a prefix is a folder (S3 lists prefix/...)
            return []
        found = []
        for folder, dirs, files in os.walk(start):  # symlinked folders are not entered
            dirs.sort()
            for name in files:
                path = Path(folder) / name
                st = os.lstat(path)
                if name.startswith(TEMP_PREFIX) or not stat.S_ISREG(st.st_mode):
                    continue
                found.append(ObjectInfo(key=path.relative_to(self.root).as_posix(), size=st.st_size,
                                        last_modified=_mtime(st)))
        return sorted(found, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def storage_options(self) -> dict[str, str]:
        return {}
