"""What every storage backend offers: the :class:`Storage` interface, :class:`ObjectInfo`, the
errors, and the checks of keys and byte ranges that both backends share.

A key is a relative, ``/``-separated name (``views/mel/5s/shard-0007-ab12.h5``): no leading
``/``, no empty, ``.`` or ``..`` segment, no control character, no backslash, at most
:data:`MAX_KEY_BYTES` bytes of UTF-8, and no segment starting with :data:`TEMP_PREFIX` (the
local backend's temporary files). A key that breaks a rule is a one-line
:class:`~feature_store.errors.ParameterError` naming it, before any I/O.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from feature_store.errors import ParameterError, StoreError

#: Longest key, in bytes of UTF-8 (S3's own limit).
MAX_KEY_BYTES = 1024
#: Prefix of the local backend's temporary files; refused as the start of a key's segment.
TEMP_PREFIX = ".gtzan-put-"
#: Largest object :meth:`Storage.get` returns when no ``max_bytes`` is given.
DEFAULT_MAX_GET_BYTES = 2 << 30
#: Largest object :meth:`Storage.put_new` writes: one S3 PUT (create-only puts cannot be multipart).
MAX_PUT_BYTES = 5 << 30
#: Most bytes one :meth:`Storage.get_ranges` call returns, all ranges together, by default.
DEFAULT_MAX_RANGES_BYTES = 1 << 30
#: Most ranges in one :meth:`Storage.get_ranges` call.
MAX_RANGES = 100_000
#: Bytes read at a time from a file given to :meth:`Storage.put_new`.
CHUNK_BYTES = 8 << 20

#: What :meth:`Storage.put_new` takes: the bytes, or a file (a path or a binary file object).
Data = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO


class ObjectExists(StoreError):
    """A create-only put found the key already there: nothing was written."""


class ObjectNotFound(StoreError, FileNotFoundError):
    """No object under the key (also a :class:`FileNotFoundError`, as a missing file is)."""


class ObjectTooLarge(StoreError):
    """The object is larger than the reader allows: refused before any of it was read."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ObjectInfo:
    """One stored object.

    Attributes
    ----------
    key : str
        Its key, relative to the storage's root.
    size : int
        Its size in bytes, as the storage reports it.
    etag : str or None
        The S3 ETag (None on the local backend).
    sha256 : str or None
        Hex sha256 of its bytes, where known (computed by a put; on S3, also recorded with the
        object and returned by :meth:`Storage.head`).
    last_modified : datetime or None
        When it was written (an aware time: S3's ``Last-Modified``, a file's mtime), as
        :meth:`Storage.list` and :meth:`Storage.head` report it; None where unknown.
    """

    key: str
    size: int
    etag: str | None = None
    sha256: str | None = None
    last_modified: datetime | None = None


def check_key(key: object) -> str:
    """``key`` if it is a valid key (see the module's docstring), else a ParameterError naming it."""
    if not isinstance(key, str) or not key:
        raise ParameterError(f"an object key must be a non-empty string, got {key!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in key) or "\\" in key:
        raise ParameterError(f"object key {key!r} holds a control character or a backslash")
    if key.startswith("/") or key.endswith("/"):
        raise ParameterError(f"object key {key!r} must be relative, without a leading or trailing '/'")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise ParameterError(f"object key {key[:60]!r}... is longer than {MAX_KEY_BYTES} bytes")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise ParameterError(f"object key {key!r} has an empty, '.' or '..' segment")
        if part.startswith(TEMP_PREFIX):
            raise ParameterError(f"object key {key!r} has a segment starting with {TEMP_PREFIX!r} (reserved)")
    return key


def check_prefix(prefix: object) -> str:
    """A listing prefix: empty (everything) or a valid key."""
    return "" if prefix in ("", None) else check_key(prefix)


def check_ranges(key: str, ranges: Sequence[tuple[int, int]], *, size: int | None,
                 max_bytes: int) -> tuple[list[int], list[int]]:
    """``(starts, lengths)`` of ``ranges`` (``(offset, length)`` pairs), checked.

    Raises
    ------
    ParameterError
        A range that is not two non-negative integers, that ends past ``size`` (when known),
        more than :data:`MAX_RANGES` ranges, or more than ``max_bytes`` bytes in all.
    """
    if len(ranges) > MAX_RANGES:
        raise ParameterError(f"{len(ranges)} ranges of {key!r} in one call: at most {MAX_RANGES}")
    starts, lengths = [], []
    for r in ranges:
        try:
            offset, length = r
        except (TypeError, ValueError):
            raise ParameterError(f"a range of {key!r} must be (offset, length), got {r!r}") from None
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in (offset, length)):
            raise ParameterError(f"a range of {key!r} must be two non-negative integers, got {r!r}")
        if size is not None and offset + length > size:
            raise ParameterError(f"range {r!r} of {key!r} ends past its {size} bytes")
        starts.append(offset)
        lengths.append(length)
    if sum(lengths) > max_bytes:
        raise ParameterError(f"ranges of {key!r} ask for {sum(lengths)} bytes, more than the {max_bytes} allowed")
    return starts, lengths


def too_large(url: str, size: int, max_bytes: int) -> ObjectTooLarge:
    """The error of an object larger than a reader allows."""
    return ObjectTooLarge(f"{url} is {size} bytes, more than the {max_bytes} this reader allows: refused unread")


def chunks_of(data: Data) -> Iterable[bytes | memoryview]:
    """The bytes of ``data`` in pieces of at most :data:`CHUNK_BYTES` (a file is read as it goes)."""
    if isinstance(data, bytes | bytearray | memoryview):
        yield memoryview(data).cast("B")
        return
    if isinstance(data, str | os.PathLike):
        with open(Path(data), "rb") as fh:
            yield from iter(lambda: fh.read(CHUNK_BYTES), b"")
        return
    yield from iter(lambda: data.read(CHUNK_BYTES), b"")


def put_chunks(data: Data, h: Any, *, what: str) -> Iterator[bytes | memoryview]:
    """:func:`chunks_of` ``data``, each added to the hash ``h``; more than :data:`MAX_PUT_BYTES`
    in all is a one-line ParameterError (raised before the piece past the bound is yielded)."""
    total = 0
    for part in chunks_of(data):
        total += len(part)
        if total > MAX_PUT_BYTES:
            raise ParameterError(f"{what}: more than {MAX_PUT_BYTES} bytes, the most one create-only put writes")
        h.update(part)
        yield part


def bytes_of(data: Data, *, what: str) -> tuple[bytes | bytearray | memoryview, str]:
    """The bytes of ``data`` in memory (at most :data:`MAX_PUT_BYTES`) and their sha256.

    A file's chunks are appended to one buffer as they are read, so the memory is the data's
    once (a list of chunks joined at the end held it twice).
    """
    h = hashlib.sha256()
    first, whole = None, None
    for part in put_chunks(data, h, what=what):
        if first is None:
            first = part
        else:
            if whole is None:
                whole = bytearray(first)
            whole += part
    return (whole if whole is not None else first if first is not None else b""), h.hexdigest()


class Storage(abc.ABC):
    """A flat space of immutable objects under string keys: a local folder or an S3 prefix.

    Every write is create-only (:meth:`put_new`): an object, once there, is never overwritten,
    so a reader never sees a torn or replaced object. Every read is bounded: :meth:`get`
    refuses an object larger than ``max_bytes`` before reading any of it.
    """

    #: Where the objects are, for messages and display (``s3://bucket/prefix``, a folder).
    url: str
    #: Objects a reader of many (``read_clips``) fetches at once: a request's latency is what
    #: overlapping hides, and a local read has little (BENCHMARKS.md, "Sharded store at scale").
    concurrent_reads: int = 1

    @abc.abstractmethod
    def put_new(self, key: str, data: Data) -> ObjectInfo:
        """Store ``data`` (bytes, a path or a binary file object) under ``key``, only if no
        object is there; raise :class:`ObjectExists` (nothing written) if one is."""

    @abc.abstractmethod
    def get(self, key: str, *, max_bytes: int = DEFAULT_MAX_GET_BYTES) -> bytes:
        """The object's bytes; :class:`ObjectTooLarge` before reading if it holds more than
        ``max_bytes``; :class:`ObjectNotFound` if there is none."""

    @abc.abstractmethod
    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]], *,
                   max_bytes: int = DEFAULT_MAX_RANGES_BYTES, size: int | None = None) -> list[bytes]:
        """The bytes of each ``(offset, length)`` range of one object, in one call.

        ``size``: the object's size, when the caller has it from :meth:`head` (a remote
        backend then skips asking for it again; a range past the object's end fails either way).
        """

    def get_start(self, key: str, *, length: int) -> tuple[bytes, ObjectInfo]:
        """The object's first ``length`` bytes (all of it, if smaller) and its :class:`ObjectInfo`:
        what a reader of a few byte ranges needs first. A remote backend answers in one request."""
        info = self.head(key)
        n = min(int(length), info.size)
        return (self.get_ranges(key, [(0, n)], max_bytes=max(n, 1), size=info.size)[0] if n else b""), info

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """The object's :class:`ObjectInfo`, without reading it; :class:`ObjectNotFound` if none."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key is ``prefix`` or under ``prefix/`` (all: ``""``), sorted by key."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Delete the object; deleting a missing key is not an error (as on S3)."""

    @abc.abstractmethod
    def uri(self, key: str) -> str:
        """Where ``key`` is, for deltalake and polars (with :meth:`storage_options`)."""

    @abc.abstractmethod
    def storage_options(self) -> dict[str, str]:
        """What deltalake and polars need to reach the same place (their ``storage_options``)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
