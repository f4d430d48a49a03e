"""An object read in byte ranges, as a read-only seekable file: a few rows of a large object.

:class:`RangedObject` gives h5py (or any reader of binary files) an object of a
:class:`~feature_store.engine.storage.base.Storage` without fetching it whole. Reads are
served from blocks of :data:`BLOCK_BYTES`, fetched on first use; :meth:`RangedObject.prefetch`
fetches the blocks of many ranges (the chunks of the rows wanted) in one
:meth:`~Storage.get_ranges` call, so that a lookup of a few clips costs a few requests, not
one per chunk. Memory is the blocks fetched, bounded by ``max_bytes`` whatever the object or
its reader asks for.

A ranged read does not check the object's sha256 (only a whole read can); callers check
what they read (the shard reader checks every row against the index's digest).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import Any

from feature_store.engine.storage.base import DEFAULT_MAX_GET_BYTES, ObjectTooLarge

#: Bytes of one block: the unit fetched and kept.
BLOCK_BYTES = 64 << 10


class RangedObject(io.RawIOBase):
    """One stored object as a read-only, seekable binary file, fetched block by block.

    Parameters
    ----------
    storage : Storage
    key : str
    max_bytes : int
        Most bytes fetched over the file's life (an :class:`ObjectTooLarge` past it).
    block : int
        Bytes of one block.

    Attributes
    ----------
    size : int
        The object's size (from :meth:`Storage.head`).
    requests : int
        Range requests made (one :meth:`Storage.get_ranges` call each).
    fetched : int
        Bytes fetched.
    """

    def __init__(self, storage: Any, key: str, *, max_bytes: int = DEFAULT_MAX_GET_BYTES,
                 block: int = BLOCK_BYTES) -> None:
        super().__init__()
        self.storage, self.key, self.max_bytes, self.block = storage, key, int(max_bytes), int(block)
        self.requests = self.fetched = 0
        self._blocks: dict[int, bytes] = {}
        self._pos = 0
        if hasattr(storage, "get_start"):  # the size and the first block in one request
            first, info = storage.get_start(key, length=min(self.block, self.max_bytes))
            self.size, self.requests, self.fetched = int(info.size), 1, len(first)
            if first and (len(first) == self.block or len(first) == self.size):
                self._blocks[0] = first
        else:
            self.size = int(storage.head(key).size)

    # -- the file interface ---------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        end = min(self.size, self._pos + len(view))
        if end <= self._pos:
            return 0
        self._fetch([(self._pos, end - self._pos)])
        at = self._pos
        while at < end:
            i, off = divmod(at, self.block)
            piece = self._blocks[i][off : off + (end - at)]
            view[at - self._pos : at - self._pos + len(piece)] = piece
            at += len(piece)
        n, self._pos = end - self._pos, end
        return n

    # -- fetching -------------------------------------------------------------------------
    def prefetch(self, ranges: Iterable[tuple[int, int]]) -> None:
        """Fetch the blocks of ``ranges`` (offset, length) not yet held, in one request."""
        self._fetch(list(ranges))

    def _fetch(self, ranges: Sequence[tuple[int, int]]) -> None:
        missing = sorted({i for off, n in ranges if n > 0
                          for i in range(off // self.block, (min(self.size, off + n) - 1) // self.block + 1)
                          if i not in self._blocks})
        if not missing:
            return
        runs: list[list[int]] = []  # consecutive missing blocks, fetched as one range
        for i in missing:
            if runs and runs[-1][1] == i:
                runs[-1][1] = i + 1
            else:
                runs.append([i, i + 1])
        spans = [(a * self.block, min(self.size, b * self.block) - a * self.block) for a, b in runs]
        total = sum(n for _, n in spans)
        if self.fetched + total > self.max_bytes:
            raise ObjectTooLarge(f"{self.storage.url}/{self.key}: reading it would fetch more than "
                                 f"{self.max_bytes} bytes; refused")
        got = self.storage.get_ranges(self.key, spans, max_bytes=max(total, 1), size=self.size)
        self.requests += 1
        self.fetched += total
        for (a, b), data in zip(runs, got, strict=True):
            for i in range(a, b):
                self._blocks[i] = bytes(data[(i - a) * self.block : (i - a + 1) * self.block])
