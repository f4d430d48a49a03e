"""A shard object's chunk table: where each row's compressed chunk is, read without HDF5.

A shard object (:mod:`feature_store.engine.shards`) is an HDF5 file whose arrays are stored
in Blosc chunks (one clip per chunk for ``row`` arrays, :data:`~feature_store.engine.view.BLOCK_ROWS`
for ``block`` ones). Opening HDF5 over ranged reads to find a few of those chunks costs a
metadata fetch and many small reads through a Python file object, per object. So the shard
writer puts a table of every chunk's byte range into the file's *userblock*: the bytes
HDF5 reserves at the start of a file and never reads. A reader of a few rows then fetches
the table's first block, and the wanted chunks in one batch of ranged reads, and decodes
them with the same Blosc library HDF5's filter uses: no HDF5, two requests per object.

Layout (little-endian; :data:`HEADER_BYTES` of header, then the entries)::

    0    magic  b"GTZCHNK1"
    8    u32    layout version (1)
    12   u32    clip seconds
    16   u64    rows of the object
    24   u64    xxh3-64 of every entry's bytes (all arrays, in order)
    32   u32    arrays
    64   64 B   the view's parameter hash (ASCII, NUL padded)
    128  per array (at most :data:`MAX_ARRAYS`), 48 B: name (32 B, NUL padded),
         u32 rows per chunk, u32 chunks, u64 offset of its entries in the file
    entries: per chunk, u64 byte offset, u32 byte size, and u32 HDF5 filter mask (0: a Blosc
             frame; 1: HDF5 skipped the filter, as it does for data Blosc cannot shrink, so the
             chunk is the rows' bytes as they are)
    ids: per row, u64 xxh3-64 of its clip id (UTF-8), after the last array's entries

Nothing read from the table is trusted beyond what it is checked against: its own digest,
the view and clip length it must be, the shapes the view gives, sizes bounded by the
Blosc frame of one chunk, ranges inside the object, the clip ids the index names at those
rows, and, by the caller, every row against the digest the index holds for it. An object without a table (or written before tables
existed) is read through HDF5, as before.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from feature_store.integrity import IntegrityError, digest

MAGIC = b"GTZCHNK1"
LAYOUT_VERSION = 1
HEADER_BYTES = 512
MAX_ARRAYS = 8
#: The most entry bytes a reader takes from one table (a 1M-row object of 1-row chunks, two arrays).
MAX_TABLE_BYTES = 24 << 20
#: Blosc 1's frame: a 16-byte header, and at most that much over the data it holds.
BLOSC_HEADER = 16
_ENTRY = np.dtype([("offset", "<u8"), ("size", "<u4"), ("mask", "<u4")])
_HEAD = struct.Struct("<8sIIQQI")
_ARRAY = struct.Struct("<32sIIQ")


@dataclass(frozen=True)
class TableArray:
    """One array's part of a chunk table: its name, rows per chunk, chunks and entries' offset."""

    name: str
    step: int
    chunks: int
    at: int


def userblock_bytes(rows: int, chunks_per_array: Sequence[int]) -> int:
    """The userblock size (a power of two, at least 512) that holds the table of such a file."""
    need = HEADER_BYTES + _ENTRY.itemsize * sum(chunks_per_array) + 8 * rows
    return max(512, 1 << math.ceil(math.log2(need)))


def chunk_count(rows: int, step: int) -> int:
    """Chunks of ``step`` rows that hold ``rows`` rows."""
    return -(-rows // step)


def id_digests(clip_ids: Sequence[str]) -> np.ndarray:
    """xxh3-64 of each clip id's UTF-8 bytes (uint64)."""
    return np.array([digest(c.encode()) for c in clip_ids], dtype="<u8")


def write_table(h5file: Any, path: Path, *, names: Sequence[str], view_hash: str, clip_seconds: int,
                clip_ids: Sequence[str], userblock: int) -> bool:
    """Collect the chunk ranges of ``names`` from the open ``h5file`` (all written), close it,
    and write their table into the file's userblock at ``path``.

    Returns False (the file closed, its userblock left zero: readers fall back to HDF5) when a
    chunk is missing or has a filter mask the table cannot describe (the writer's datasets
    have one filter, Blosc: a mask is 0 or 1).
    """
    rows, parts, entries = 0, [], []
    at = HEADER_BYTES
    for name in names:
        ds = h5file[name]
        rows, step = int(ds.shape[0]), int(ds.chunks[0]) if ds.chunks else 0
        if not step or len(names) > MAX_ARRAYS or len(name.encode()) > 32:
            h5file.close()
            return False
        n = chunk_count(rows, step)
        got = np.zeros(n, dtype=_ENTRY)
        tail = (0,) * (ds.ndim - 1)
        for i in range(n):
            info = ds.id.get_chunk_info_by_coord((i * step, *tail))
            if info.byte_offset is None or info.filter_mask not in (0, 1):
                h5file.close()
                return False
            got[i] = (info.byte_offset, info.size, info.filter_mask)
        parts.append(_ARRAY.pack(name.encode(), step, n, at))
        entries.append(got.tobytes())
        at += got.nbytes
    h5file.close()
    if len(clip_ids) != rows:
        return False
    body = b"".join(entries) + id_digests(clip_ids).tobytes()
    if HEADER_BYTES + len(body) > userblock:
        return False
    head = _HEAD.pack(MAGIC, LAYOUT_VERSION, clip_seconds, rows, digest(body), len(names))
    header = head.ljust(64, b"\0") + view_hash.encode().ljust(64, b"\0")[:64] + b"".join(parts)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, header.ljust(HEADER_BYTES, b"\0") + body, 0)
    finally:
        os.close(fd)
    return True


@dataclass(frozen=True)
class ChunkTable:
    """A parsed, checked chunk table (:func:`parse`)."""

    rows: int
    arrays: dict[str, TableArray]
    entries: np.ndarray  # _ENTRY records of every array, in order
    ids: np.ndarray  # uint64 digest of each row's clip id

    def ranges(self, name: str, chunks: np.ndarray) -> np.ndarray:
        """The ``_ENTRY`` records of chunks ``chunks`` of array ``name``."""
        a = self.arrays[name]
        first = (a.at - HEADER_BYTES) // _ENTRY.itemsize
        return self.entries[first + chunks]


def has_table(first: bytes) -> bool:
    """Whether an object's first bytes open a chunk table."""
    return first[: len(MAGIC)] == MAGIC


def parse_header(head: bytes, *, label: str, view_hash: str, clip_seconds: int,
                 size: int) -> tuple[int, int, dict[str, TableArray], int]:
    """``(rows, entries' digest, arrays, entry bytes)`` of a table's header, checked against the
    view and clip length wanted and the object's ``size``."""
    magic, version, clip, rows, body_digest, n = _HEAD.unpack_from(head)
    stored_hash = head[64:128].rstrip(b"\0").decode("ascii", "replace")
    if version != LAYOUT_VERSION or n > MAX_ARRAYS or magic != MAGIC:
        raise IntegrityError(f"{label}: chunk table of layout {version} with {n} arrays, not one this "
                             f"version reads: the object is damaged")
    if stored_hash != view_hash or clip != clip_seconds:
        raise IntegrityError(f"{label} is not a {clip_seconds} s object of the view {view_hash} "
                             f"(its chunk table says {clip} s of {stored_hash!r}): the object is damaged or misplaced")
    arrays, at = {}, HEADER_BYTES
    for i in range(n):
        raw, step, chunks, where = _ARRAY.unpack_from(head, 128 + i * _ARRAY.size)
        name = raw.rstrip(b"\0").decode("ascii", "replace")
        if step < 1 or chunks != chunk_count(rows, step) or where != at:
            raise IntegrityError(f"{label}: its chunk table's entry for {name!r} does not fit its "
                                 f"{rows} rows: the object is damaged")
        arrays[name] = TableArray(name=name, step=step, chunks=chunks, at=where)
        at += chunks * _ENTRY.itemsize
    at += 8 * rows
    if at - HEADER_BYTES > MAX_TABLE_BYTES or at > size:
        raise IntegrityError(f"{label}: its chunk table claims {at - HEADER_BYTES} bytes of entries, more "
                             f"than the object or a reader holds: the object is damaged")
    return rows, body_digest, arrays, at - HEADER_BYTES


def parse(head: bytes, body: bytes, *, label: str, view_hash: str, clip_seconds: int, size: int) -> ChunkTable:
    """The table of ``head`` (its first :data:`HEADER_BYTES`) and ``body`` (its entries), checked."""
    rows, body_digest, arrays, nbytes = parse_header(head, label=label, view_hash=view_hash,
                                                     clip_seconds=clip_seconds, size=size)
    if len(body) != nbytes or digest(body) != body_digest:
        raise IntegrityError(f"{label}: its chunk table fails its checksum: the object is damaged")
    entries = np.frombuffer(body[: len(body) - 8 * rows], dtype=_ENTRY)
    if entries.size and ((entries["offset"] < HEADER_BYTES) | (entries["offset"] + entries["size"] > size)
                         | (entries["mask"] > 1)).any():
        raise IntegrityError(f"{label}: its chunk table names bytes outside the object: the object is damaged")
    return ChunkTable(rows=rows, arrays=arrays, entries=entries,
                      ids=np.frombuffer(body[len(body) - 8 * rows:], dtype="<u8"))


def decode_chunk(data: bytes, *, nbytes: int, mask: int, label: str, name: str,
                 into: np.ndarray | None = None) -> np.ndarray:
    """The ``nbytes`` bytes (uint8) of one chunk: ``data`` itself when HDF5 stored it unfiltered
    (``mask`` 1), else the Blosc frame's content, after checking that its header says it holds
    ``nbytes`` and that the frame is exactly ``data``: the memory is the caller's ``nbytes``,
    whatever the frame claims. Written into ``into`` (contiguous, ``nbytes`` bytes) when given."""
    out = np.empty(nbytes, dtype=np.uint8) if into is None else into
    if mask:
        if len(data) != nbytes:
            raise IntegrityError(f"{label}: a chunk of {name!r} is {len(data)} bytes, not the {nbytes} bytes of "
                                 f"its rows: the object is damaged")
        out[:] = np.frombuffer(data, dtype=np.uint8)
        return out
    if len(data) < BLOSC_HEADER:
        raise IntegrityError(f"{label}: a chunk of {name!r} is {len(data)} bytes, too short: the object is damaged")
    claims, _, cbytes = struct.unpack_from("<III", data, 4)
    if claims != nbytes or cbytes != len(data) or cbytes > nbytes + BLOSC_HEADER:
        raise IntegrityError(f"{label}: a chunk of {name!r} claims {claims} bytes in {cbytes}, not the "
                             f"{nbytes} bytes of its rows in {len(data)}: the object is damaged")
    from numcodecs import blosc

    try:
        blosc.decompress(data, out)
    except (RuntimeError, ValueError) as exc:
        raise IntegrityError(f"{label}: a chunk of {name!r} cannot be decompressed ({exc}): the object is "
                             f"damaged") from None
    return out


def read_rows(obj: Any, *, label: str, view_hash: str, clip_seconds: int, specs: dict[str, Any],
              names: Sequence[str], rows: np.ndarray, clip_ids: Sequence[str]) -> dict[str, np.ndarray] | None:
    """Rows ``rows`` (increasing, unique) of arrays ``names`` of a shard object, by its chunk
    table: ``None`` when the object has none (the caller reads it through HDF5).

    Parameters
    ----------
    obj : RangedObject
        The object, read by range (its first block holds the table's header).
    specs : dict of str to ArraySpec
        The view's arrays at this clip length: each row's shape and dtype.
    rows : np.ndarray [shape=(n,), dtype=int64]
    clip_ids : list of str
        The clip id the index names at each of ``rows``.

    Returns
    -------
    dict of str to np.ndarray [shape=(n, *spec.shape), dtype=spec.dtype], or None
        Not yet checked against the index's row digests (the caller does that).
    """
    obj.seek(0)
    head = obj.read(min(HEADER_BYTES, obj.size))
    if len(head) < HEADER_BYTES or not has_table(head):
        return None
    total, _, arrays, nbytes = parse_header(head, label=label, view_hash=view_hash, clip_seconds=clip_seconds,
                                            size=obj.size)
    obj.seek(HEADER_BYTES)
    table = parse(head, obj.read(nbytes), label=label, view_hash=view_hash, clip_seconds=clip_seconds, size=obj.size)
    if rows.size and int(rows[-1]) >= total:
        raise IntegrityError(f"{label} holds {total} rows, fewer than the index names: the object or the index "
                             f"is damaged")
    if not np.array_equal(table.ids[rows], id_digests(clip_ids)):
        raise IntegrityError(f"{label} does not hold the clips the index names at those rows: the object or the "
                             f"index is damaged")
    plan = []  # (name, chunk numbers, their entries, bytes of one decoded chunk)
    for name in names:
        a = arrays.get(name)
        spec = specs[name]
        row_bytes = int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize
        if a is None:
            raise IntegrityError(f"{label}: its chunk table has no array {name!r}: the object is damaged")
        chunks = np.unique(rows // a.step)
        got = table.ranges(name, chunks)
        if (got["size"] > a.step * row_bytes + BLOSC_HEADER).any():
            raise IntegrityError(f"{label}: its chunk table gives a chunk of {name!r} more bytes than its rows "
                                 f"could take: the object is damaged")
        plan.append((name, a.step, chunks, got, a.step * row_bytes))
    spans = [(int(o), int(n)) for _, _, _, got, _ in plan for o, n in zip(got["offset"], got["size"], strict=True)]
    fetch = sum(n for _, n in spans)
    if obj.fetched + fetch > obj.max_bytes:
        raise IntegrityError(f"{label}: reading its rows would fetch more than {obj.max_bytes} bytes; refused")
    data = iter(obj.storage.get_ranges(obj.key, spans, max_bytes=max(fetch, 1), size=obj.size) if spans else ())
    obj.requests, obj.fetched = obj.requests + 1, obj.fetched + fetch
    out = {}
    for name, step, chunks, got, nbytes in plan:
        spec, masks = specs[name], dict(zip(chunks.tolist(), got["mask"].tolist(), strict=True))
        values = np.empty((rows.size, *spec.shape), dtype=spec.dtype)
        if step == 1:  # a chunk per row, decoded straight into its place
            flat = values.reshape(rows.size, -1).view(np.uint8)
            for j, k in enumerate(chunks.tolist()):
                decode_chunk(next(data), nbytes=nbytes, mask=int(masks[k]), label=label, name=name, into=flat[j])
            out[name] = values
            continue
        for k in chunks.tolist():
            block = decode_chunk(next(data), nbytes=nbytes, mask=int(masks[k]), label=label, name=name)
            block = block.view(spec.dtype).reshape(step, *spec.shape)
            mine = (rows // step) == k
            values[mine] = block[rows[mine] - k * step]
        out[name] = values
    return out


def check_whole(data: bytes | memoryview, h5file: Any, *, label: str, view_hash: str, clip_seconds: int) -> None:
    """Check a whole object's chunk table, if it has one, against the chunks its HDF5 file
    indexes and the clip ids it stores: a table that readers of a few rows would trust is
    verified whenever the object is read whole (``gtzan features lake-verify`` does)."""
    head = bytes(data[:HEADER_BYTES])
    if len(head) < HEADER_BYTES or not has_table(head):
        return
    _, _, _, nbytes = parse_header(head, label=label, view_hash=view_hash, clip_seconds=clip_seconds,
                                   size=len(data))
    table = parse(head, bytes(data[HEADER_BYTES:HEADER_BYTES + nbytes]), label=label, view_hash=view_hash,
                  clip_seconds=clip_seconds, size=len(data))
    for name, a in table.arrays.items():
        ds = h5file.get(name)
        if ds is None or ds.chunks is None or int(ds.chunks[0]) != a.step or int(ds.shape[0]) != table.rows:
            raise IntegrityError(f"{label}: its chunk table's {name!r} is not its HDF5 array's: the object is damaged")
        tail = (0,) * (ds.ndim - 1)
        for k, e in enumerate(table.ranges(name, np.arange(a.chunks))):
            info = ds.id.get_chunk_info_by_coord((k * a.step, *tail))
            if (info.byte_offset, info.size, info.filter_mask) != (int(e["offset"]), int(e["size"]), int(e["mask"])):
                raise IntegrityError(f"{label}: its chunk table does not name chunk {k} of {name!r} where HDF5 "
                                     f"stores it: the object is damaged")
    if not np.array_equal(table.ids, id_digests(h5file["clip_id"].asstr()[:].tolist())):
        raise IntegrityError(f"{label}: its chunk table's clip ids are not the object's: the object is damaged")
