"""Shards as the unit of work: one task per (shard, clip length), one immutable object each.

A song belongs to one of ``shards`` shards by its content hash (:func:`shard_of`), so the
shard of a song never depends on which other songs the corpus holds. :func:`build_shard`
computes the songs of one shard (through the :class:`~feature_store.engine.build.Builder`'s
planning, workers and per-song cache, under the shard's own lock: :func:`shard_lock`), writes
their rows at one clip length into one HDF5 file in the store's chunked layout
(:class:`~feature_store.engine.writer.ClipWriter`) in a local temporary folder, and publishes
it with a create-only put under a new key::

    <view folder>/clip-05s/shard-0007/<task id>-<uuid>.h5

so no object is ever overwritten, a retried task writes a new object, and a task killed before
its put leaves no object (a put publishes only a whole file). What it returns is
the rows an index table commits for that object (:class:`ShardResult`). :func:`read_shard`
reads rows of one object back, bounded and checked: a few rows by the object's chunk table
(:mod:`feature_store.engine.chunk_table`: their chunks only, without HDF5), more through HDF5
on the whole object.

Digests: an xxh3-64 row digest is unsigned, and the table formats have no unsigned 64-bit
type, so the rows carry each digest bit-reinterpreted as int64 (:func:`to_int64`; two's
complement, a digest of ``2**63`` or more is negative); :func:`read_shard` takes them so.
"""

from __future__ import annotations

import dataclasses
import io
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from feature_store import h5 as h5lib
from feature_store import integrity
from feature_store.bounds import MAX_SHARDS
from feature_store.engine import chunk_table as chunk_tables
from feature_store.engine.build import Builder
from feature_store.engine.index import table_schema
from feature_store.engine.read import check_dataset, read_rows
from feature_store.engine.storage import Storage
from feature_store.engine.storage.base import DEFAULT_MAX_GET_BYTES
from feature_store.engine.storage.ranged import RangedObject
from feature_store.engine.store import ViewStore, clip_dirname
from feature_store.engine.view import FeatureView
from feature_store.errors import ParameterError
from feature_store.integrity import DIGEST_PREFIX, IntegrityError
from feature_store.params import validate_clip_seconds

#: What a task id may hold (a Dagster run id, step key or partition key); other characters
#: become ``_`` in the object key, never a folder.
_TASK_ID = re.compile(r"[A-Za-z0-9_.:|/@=+-]{1,200}")
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_.=+-]")
#: Columns a shard's rows add to the index columns (whose ``hdf5_row`` becomes ``object_row``).
SHARD_COLUMNS = ("object_key", "object_row", "shard", "task_id")
#: A read of at most this many rows fetches only their chunks (in one batch of ranged reads),
#: not the whole object.
RANGED_MAX_ROWS = 64
#: What to do about a damaged shard object.
REPAIR_SHARDS = "repair it with `gtzan features lake-verify --repair`"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShardResult:
    """What :func:`build_shard` did.

    Attributes
    ----------
    shard, shards, clip_seconds : int
    task_id : str
    object_key : str
        The object published (one per task run, never overwritten).
    object_bytes : int
        Its size.
    object_sha256 : str
        Hex sha256 of its bytes.
    rows : pl.DataFrame
        One row per clip of the object: today's index columns (``hdf5_row`` renamed
        ``object_row``, the row in the object), ``xxh3_<array>`` as int64 (bit-reinterpreted
        from uint64), ``object_key``, ``shard`` and ``task_id``.
    songs : int
        Songs of the shard stored.
    computed : list of str
        Songs computed (the rest came from the per-song cache).
    failed : pl.DataFrame
        Songs that failed (``song_id``, ``reason``); they have no rows.
    seconds : float
    tables : dict of str to pl.DataFrame
        The view's tables of these clips (``clip_id``, ``song_id``, ``genre`` and the table's
        columns: mel's ``summary``), which are not in the object.
    """

    shard: int
    shards: int
    clip_seconds: int
    task_id: str
    object_key: str
    object_bytes: int
    object_sha256: str
    rows: pl.DataFrame
    songs: int
    computed: list[str]
    failed: pl.DataFrame
    seconds: float
    tables: dict[str, pl.DataFrame] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShardArrays:
    """What :func:`read_shard` returns: per array, the rows asked for, in the order asked."""

    arrays: dict[str, np.ndarray]
    clip_ids: list[str]


def check_shards(shards: object) -> int:
    """``shards`` if it is an integer in ``1..MAX_SHARDS``, else a one-line ParameterError."""
    if not isinstance(shards, int) or isinstance(shards, bool) or not 1 <= shards <= MAX_SHARDS:
        raise ParameterError(f"shards must be an integer in 1..{MAX_SHARDS}, got {shards!r}")
    return shards


def check_shard(shard: object, *, shards: int) -> int:
    """``shard`` if it is an integer in ``0..shards-1``, else a one-line ParameterError."""
    check_shards(shards)
    if not isinstance(shard, int) or isinstance(shard, bool) or not 0 <= shard < shards:
        raise ParameterError(f"shard must be an integer in 0..{shards - 1}, got {shard!r}")
    return shard


def shard_of(sha256_hex: str, *, shards: int) -> int:
    """The shard of a song: the first 64 bits of its content's sha256, modulo ``shards``.

    Stable across runs, hosts and corpora: it depends on the song's bytes and ``shards`` alone.
    """
    check_shards(shards)
    if not (isinstance(sha256_hex, str) and len(sha256_hex) == 64 and re.fullmatch(r"[0-9a-f]{64}", sha256_hex)):
        raise ParameterError(f"not a lower-case sha256 hex digest: {sha256_hex!r}")
    return int(sha256_hex[:16], 16) % shards


def shard_prefix(view: FeatureView, *, clip_seconds: int, shard: int) -> str:
    """The key prefix of one shard's objects: ``<view folder>/clip-05s/shard-0007``."""
    return f"{view.folder}/{clip_dirname(clip_seconds)}/shard-{shard:04d}"


def shard_lock(shard: int, *, shards: int) -> str:
    """The lock a shard task holds while it fills the per-song cache: ``cache-shard-0007-of-0016``.

    Not the whole cache's lock: the tasks of other shards, on this host or others sharing the
    store, compute at the same time (their songs, and so their cache entries, are disjoint),
    while two tasks of one shard (two clip lengths, or a retry) take turns and share entries.
    A whole-store build (:meth:`ViewStore.build`) sweeps the cache's temporary files under the
    cache's lock: one running beside shard tasks of the same store may fail a song of theirs
    (it is then in :attr:`ShardResult.failed`, without rows).
    """
    return f"cache-shard-{shard:04d}-of-{shards:04d}"


def to_int64(digests: Any) -> np.ndarray:
    """uint64 digests bit-reinterpreted as int64 (what the index table stores)."""
    return np.asarray(digests, np.uint64).view(np.int64)


def shards_of(sha256: pl.Series, *, shards: int) -> pl.Series:
    """:func:`shard_of` of every digest of ``sha256`` at once (Int64), without a Python loop."""
    check_shards(shards)
    bad = sha256.is_null() | ~sha256.str.contains(r"^[0-9a-f]{64}$")
    if bad.any():
        raise ParameterError(f"not a lower-case sha256 hex digest: {sha256.filter(bad).head(1).to_list()[0]!r}")
    # the first 64 bits as two 32-bit halves: (hi * 2**32 + lo) mod n, in int64 without overflow
    hi = sha256.str.slice(0, 8).str.to_integer(base=16).cast(pl.Int64)
    lo = sha256.str.slice(8, 8).str.to_integer(base=16).cast(pl.Int64)
    return (((hi % shards) * (2**32 % shards) + lo) % shards).alias("shard")


def _in_shard(shard: int, shards: int) -> Callable[[pl.DataFrame], pl.DataFrame]:
    def select(ok: pl.DataFrame) -> pl.DataFrame:
        return ok.filter(shards_of(ok["sha256"], shards=shards) == shard)

    return select


def build_shard(store: ViewStore, *, shard: int, shards: int, clip_seconds: int, storage: Storage,
                audio_root: str | Path, task_id: str, workers: int | None = None,
                lock_timeout: float | None = None) -> ShardResult:
    """Compute one shard's songs at one clip length and publish them as one new object.

    Parameters
    ----------
    store : ViewStore
        The view and the local store root (catalog, splits and per-song cache).
    shard, shards : int
        Which shard, of how many (:func:`shard_of`).
    clip_seconds : int
    storage : Storage
        Where the object is published (create-only).
    audio_root : path
        The genres folder the catalog's paths point into.
    task_id : str
        The task's id (recorded in the rows and the key).
    workers : int, optional
        Worker processes (as :meth:`ViewStore.build`).
    lock_timeout : float, optional
        Seconds to wait for the per-song cache's lock (the store's default).

    Returns
    -------
    ShardResult

    Raises
    ------
    ParameterError
        A bad ``shard``, ``shards``, ``clip_seconds`` or ``task_id``.
    StoreError
        Ingest has not run, or the put fails (nothing is published then).
    """
    from feature_store.engine.store import DEFAULT_LOCK_TIMEOUT

    t0 = time.perf_counter()
    check_shard(shard, shards=shards)
    c = validate_clip_seconds(clip_seconds)
    if not isinstance(task_id, str) or not _TASK_ID.fullmatch(task_id):
        raise ParameterError(f"task_id must be 1 to 200 characters of letters, digits and _.:|/@=+-, got {task_id!r}")
    builder = Builder(store, clip_seconds=[c], workers=workers, progress=False,
                      lock_timeout=DEFAULT_LOCK_TIMEOUT if lock_timeout is None else float(lock_timeout))
    _, splits, ok, songs = builder.prepare(audio_root, select=_in_shard(shard, shards))
    # a new name on every try: a retried task never meets, nor replaces, an earlier try's object
    key = f"{shard_prefix(store.view, clip_seconds=c, shard=shard)}/{_KEY_UNSAFE.sub('_', task_id)}-{uuid.uuid4().hex}"
    key += ".h5"
    with tempfile.TemporaryDirectory(prefix="gtzan-shard-") as tmp:
        folder = Path(tmp)
        writer, failed = builder.stream_one(folder, ok, splits, songs, lock=shard_lock(shard, shards=shards))
        (folder / "out").mkdir()
        index = writer.finish(folder / "out")
        tables = {spec.name: integrity.read_parquet(folder / "out" / f"{spec.name}.parquet",
                                                    schema=table_schema(spec))
                  for spec in store.view.array_specs(c) if spec.columns is not None}
        info = storage.put_new(key, folder / "out" / store.view.data_file)
    digests = [col for col in index.columns if col.startswith(DIGEST_PREFIX)]
    rows = index.rename({"hdf5_row": "object_row"}).with_columns(
        *[pl.Series(col, to_int64(index[col].to_numpy()), dtype=pl.Int64) for col in digests],
        pl.lit(key).alias("object_key"), pl.lit(shard, pl.Int64).alias("shard"), pl.lit(task_id).alias("task_id"))
    return ShardResult(shard=shard, shards=shards, clip_seconds=c, task_id=task_id, object_key=key,
                       object_bytes=info.size, object_sha256=info.sha256 or "", rows=rows,
                       songs=rows["song_id"].n_unique(), computed=builder.computed, failed=failed,
                       seconds=time.perf_counter() - t0, tables=tables)


@contextmanager
def _remedy() -> Iterator[None]:
    """The chunk table's IntegrityError (one line) with what to do about the damaged object."""
    try:
        yield
    except IntegrityError as exc:
        raise IntegrityError(f"{exc}; {REPAIR_SHARDS}") from None


@contextmanager
def _damaged(where: str) -> Iterator[None]:
    """What h5py raises on a damaged object, as one-line IntegrityError naming it."""
    try:
        yield
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
        if isinstance(exc, ParameterError):
            raise
        raise IntegrityError(f"{where} cannot be read ({integrity.first_line(exc)}): the object is damaged; "
                             f"{REPAIR_SHARDS}") from exc


def _wanted(rows: pl.DataFrame, names: Sequence[str]) -> tuple[np.ndarray, list[str], dict[str, np.ndarray]]:
    """``(object rows, clip ids, uint64 digests per array)`` of the caller's index rows, checked."""
    need = ["object_row", "clip_id", *(integrity.digest_column(n) for n in names)]
    missing = [col for col in need if col not in rows.columns]
    if missing:
        raise ParameterError(f"the rows to read lack the columns {missing}")
    where = rows["object_row"].to_numpy()
    if rows["object_row"].null_count() or where.dtype != np.int64 or (where < 0).any():
        raise ParameterError("object_row must be non-negative int64 values, without nulls")
    digests = {n: np.asarray(rows[integrity.digest_column(n)].to_numpy(), np.int64).view(np.uint64) for n in names}
    return where, rows["clip_id"].to_list(), digests


def read_shard(storage: Storage, key: str, *, view: FeatureView, clip_seconds: int, rows: pl.DataFrame,
               arrays: Sequence[str] | None = None, max_bytes: int = DEFAULT_MAX_GET_BYTES,
               whole: bool | None = None) -> ShardArrays:
    """Rows of one shard object, each checked against the digest the caller's index gives.

    Parameters
    ----------
    storage : Storage
    key : str
        The object (a :class:`ShardResult`'s ``object_key``).
    view : FeatureView
        The view that wrote it: the object's attributes, shapes and dtypes must be its.
    clip_seconds : int
    rows : pl.DataFrame
        The index rows to read, in the order wanted (all the object's rows for a whole
        shard): ``object_row``, ``clip_id`` and ``xxh3_<array>`` (int64) of each array read.
    arrays : list of str, optional
        Arrays to read (default: every HDF5 array of the view).
    max_bytes : int
        The largest object read: a larger one is refused before any of it is fetched.
    whole : bool, optional
        Fetch the object whole (its sha256 checked where the backend records one), or only the
        chunks of ``rows`` by range; default: by range for at most :data:`RANGED_MAX_ROWS` rows.

    Raises
    ------
    IntegrityError
        One line: the object is not the view's, does not hold those clips, cannot be read, or
        a row fails its digest.
    ObjectNotFound, ObjectTooLarge, ParameterError
    """
    c = validate_clip_seconds(clip_seconds)
    specs = {s.name: s for s in view.array_specs(c) if s.hdf5}
    names = list(specs) if arrays is None else list(arrays)
    unknown = [n for n in names if n not in specs]
    if unknown or not names:
        raise ParameterError(f"the {view.name} view has no array {unknown or names!r}; its arrays are {list(specs)}")
    where, clip_ids, digests = _wanted(rows, names)
    label = f"{storage.url}/{key}"
    ranged = (0 < where.size <= RANGED_MAX_ROWS) if whole is None else not whole
    # a few rows: their chunks only, checked row by row; more: the whole object, sha256 checked
    data = b"" if ranged else storage.get(key, max_bytes=max_bytes)
    src = RangedObject(storage, key, max_bytes=max_bytes) if ranged else io.BytesIO(data)
    order = np.argsort(where, kind="stable")
    uniq, first, inverse = np.unique(where[order], return_index=True, return_inverse=True)
    if ranged:  # by the object's chunk table when it has one: no HDF5, two requests
        with _remedy():
            got = chunk_tables.read_rows(src, label=label, view_hash=view.hash(), clip_seconds=c, specs=specs,
                                         names=names, rows=uniq, clip_ids=[clip_ids[i] for i in order[first]])
        if got is not None:
            return _checked(got, order=order, inverse=inverse, digests=digests, label=label, clip_ids=clip_ids)
    with _damaged(label), h5lib.h5py().File(src, "r") as h5:
        _check_object(h5, label, view=view, clip_seconds=c, names=names, where=where)
        if not ranged:
            with _remedy():
                chunk_tables.check_whole(data, h5, label=label, view_hash=view.hash(), clip_seconds=c)
        if ranged:
            src.prefetch(chunk_ranges([h5["clip_id"], *(h5[n] for n in names)], uniq))
        stored_ids = h5["clip_id"].asstr()[uniq.tolist()] if uniq.size else np.array([], dtype=object)
        if [str(s) for s in np.asarray(stored_ids)[inverse]] != [clip_ids[i] for i in order]:
            raise IntegrityError(f"{label} does not hold the clips the index names at those rows: "
                                 f"the object or the index is damaged; {REPAIR_SHARDS}")
        got = {n: read_rows(h5[n], uniq) for n in names}
    return _checked(got, order=order, inverse=inverse, digests=digests, label=label, clip_ids=clip_ids)


def _checked(got: dict[str, np.ndarray], *, order: np.ndarray, inverse: np.ndarray, digests: dict[str, np.ndarray],
             label: str, clip_ids: list[str]) -> ShardArrays:
    """The rows read (of the sorted unique object rows) in the caller's order, each checked
    against the index's digest."""
    out = {}
    # rows asked in the object's order, each once: the rows read are the answer, not copied
    same = bool((order == np.arange(order.size)).all() and (inverse == np.arange(inverse.size)).all())
    for n, rows in got.items():
        if same and rows.shape[0] == order.size:
            values = rows
        else:
            values = np.empty_like(rows, shape=(order.size, *rows.shape[1:]))
            values[order] = rows[inverse]
        integrity.check_rows(values, digests[n], path=label, array=n, clip_ids=clip_ids,  # type: ignore[arg-type]
                             remedy=REPAIR_SHARDS)
        out[n] = values
    return ShardArrays(arrays=out, clip_ids=clip_ids)


def chunk_ranges(datasets: Sequence[Any], rows: np.ndarray) -> list[tuple[int, int]]:
    """``(offset, length)`` in the file of every chunk of ``datasets`` (chunked along rows) that
    holds one of ``rows``; none for a dataset that is not chunked (it is read as asked)."""
    out: set[tuple[int, int]] = set()
    for ds in datasets:
        if ds.chunks is None:
            continue
        step = int(ds.chunks[0])
        for first in sorted({int(r) // step * step for r in rows}):
            info = ds.id.get_chunk_info_by_coord((first, *([0] * (ds.ndim - 1))))
            if info.byte_offset is not None:
                out.add((int(info.byte_offset), int(info.size)))
    return sorted(out)


def _check_object(h5: Any, label: str, *, view: FeatureView, clip_seconds: int, names: Sequence[str],
                  where: np.ndarray) -> None:
    """Refuse an object of another view or clip length, or whose arrays claim other shapes,
    dtypes or chunks than the view's, before any row is read."""
    if h5.attrs.get("view_hash") != view.hash() or int(h5.attrs.get("clip_seconds", -1)) != clip_seconds:
        raise IntegrityError(f"{label} is not a {clip_seconds} s object of the {view.name} view "
                             f"({view.hash()}): the object is damaged or misplaced; {REPAIR_SHARDS}")
    ids = h5["clip_id"]
    n = int(ids.shape[0]) if ids.ndim == 1 else -1
    if n < 0 or (where.size and int(where.max()) >= n):
        raise IntegrityError(f"{label} holds {max(n, 0)} rows, fewer than the index names: "
                             f"the object or the index is damaged; {REPAIR_SHARDS}")
    specs = {s.name: s for s in view.array_specs(clip_seconds)}
    for name in names:
        check_dataset(h5[name], specs[name], n)
