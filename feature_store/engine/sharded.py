"""Shard tasks end to end: one shard's object published, its rows committed to the index
table of its view and clip length, and a query's clips read back from the objects that one
table version names.

This joins :mod:`feature_store.engine.shards` (the objects) and :mod:`feature_store.engine.lake`
(the table). The table of a view and clip length lives beside its shards, on the same storage:
``<view folder>/clip-05s/index`` (a local folder, or ``s3://bucket/prefix/...``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl


from feature_store.engine.lake import IndexTable, Lineage
from feature_store.engine.lake.upkeep import DEFAULT_RETAIN_VERSIONS, DEFAULT_RETENTION_HOURS, MIN_OBJECT_AGE_HOURS
from feature_store.engine.shards import ShardArrays, build_shard, read_shard, shard_prefix, shards_of
from feature_store.engine.storage import Storage
from feature_store.engine.store import ViewStore
from feature_store.engine.view import FeatureView
from feature_store.errors import StoreError
from feature_store.integrity import DIGEST_PREFIX
from feature_store.params import validate_clip_seconds


@dataclasses.dataclass(frozen=True, kw_only=True)
class PublishedShard:
    """What :func:`publish_shard` did.

    Attributes
    ----------
    shard : int
    task_id : str
    object_key : str or None
        The object its rows name; None when an earlier try of the task had committed already
        (this try's object was then deleted: nothing references it).
    version : int
        The table version that holds the task's rows.
    committed : bool
        Whether this call made the commit.
    rows : int
        Rows this call committed (0 for a task committed before).
    note : str
        Why nothing was committed, when nothing was, or why the commit's partitions were not
        compacted ("" otherwise).
    compacted : int or None
        The version of the compaction that followed the commit (its label partitions held
        more than :data:`~feature_store.engine.lake.upkeep.COMPACT_FILES` small files), or None.
    """

    shard: int
    task_id: str
    object_key: str | None
    version: int
    committed: bool
    rows: int
    note: str = ""
    compacted: int | None = None


def code_version(view: FeatureView) -> str:
    """The code that computed a view's numbers: the package version, then the view's own code
    versions (its registry fields named ``*code_version``): ``0.1.0+timbre=1``."""
    from feature_store.engine.registry import package_version

    own = [f"{k.removesuffix('_code_version').removesuffix('code_version') or 'view'}={v}"
           for k, v in sorted(view.registry_fields().items()) if k.endswith("code_version")]
    return "+".join([package_version(), *own])[:200]


def lineage_of(view: FeatureView, *, run_id: str) -> Lineage:
    """The lineage of a commit of ``view``'s rows, whoever publishes them (the command line or
    a Dagster asset): the view's hash (every parameter), :func:`code_version`, ``run_id``."""
    return Lineage(params_hash=view.hash(), code_version=code_version(view), run_id=run_id)


def index_table(storage: Storage, view: FeatureView, *, clip_seconds: int) -> IndexTable:
    """The index table of ``view`` at ``clip_seconds`` on ``storage``."""
    c = validate_clip_seconds(clip_seconds)
    prefix = shard_prefix(view, clip_seconds=c, shard=0).rsplit("/", 1)[0]
    arrays = [s.name for s in view.array_specs(c) if s.hdf5]
    return IndexTable(f"{storage.url.rstrip('/')}/{prefix}/index", storage_options=storage.storage_options() or None,
                      arrays=arrays)


def table_rows(rows: pl.DataFrame, table: IndexTable) -> pl.DataFrame:
    """A shard's rows (:attr:`ShardResult.rows`) as the table's commit takes them: its input
    columns, digests back to uint64 (the table adds ``shard`` and ``task_id`` itself)."""
    digests = [c for c in rows.columns if c.startswith(DIGEST_PREFIX)]
    out = rows.with_columns(pl.col(c).reinterpret(signed=False) for c in digests)
    return out.select(list(table.input_schema)).cast(table.input_schema)  # type: ignore[arg-type]


def publish_shard(store: ViewStore, *, storage: Storage, shard: int, shards: int, clip_seconds: int,
                  audio_root: str | Path, task_id: str, lineage: Lineage, workers: int | None = None,
                  replace: bool = False) -> PublishedShard:
    """Build one shard into a new object and commit its rows in one atomic commit, once per
    ``task_id`` and once per shard: a retried task whose earlier try committed adds no row,
    nor does a build that lost the race for the shard to another build (whatever its task
    id); the new object, which no version references, is deleted at once.

    A shard whose catalog songs changed since it was published is refused in one line,
    unless ``replace``: then it is rebuilt into a new object and its rows replaced in one
    commit (:meth:`IndexTable.replace_shard`); earlier versions still read the old object.

    After its commit, the label partitions it added files to are compacted once they hold
    more than :data:`~feature_store.engine.lake.upkeep.COMPACT_FILES` small files (one more
    commit, the same rows), so a new reader reads a few files per label, not one per shard.

    A task killed before its put leaves no object; one killed between its put and its commit
    leaves an object that no version references, which :func:`unreferenced_objects` lists
    for deletion once it is old.
    """
    table = index_table(storage, store.view, clip_seconds=clip_seconds)
    before = _published(table, store, shard=shard, shards=shards, task_id=task_id, clip_seconds=clip_seconds,
                        replace=replace)
    if before is not None:
        return before
    built = build_shard(store, shard=shard, shards=shards, clip_seconds=clip_seconds, storage=storage,
                        audio_root=audio_root, task_id=task_id, workers=workers)
    commit = table.replace_shard if replace else table.commit_shard
    try:
        result = commit(table_rows(built.rows, table), shard=shard, task_id=task_id, lineage=lineage)
    except BaseException:
        storage.delete(built.object_key)  # no version names it: the commit failed or was refused
        raise
    if not result.committed:
        storage.delete(built.object_key)
        return PublishedShard(shard=shard, task_id=task_id, object_key=None, version=result.version, committed=False,
                              rows=0, note=result.note)
    compacted, note = _compact(table, labels=sorted(set(built.rows["label"].to_list())))
    return PublishedShard(shard=shard, task_id=task_id, object_key=built.object_key, version=result.version,
                          committed=True, rows=result.rows, note=note, compacted=compacted)


def compact_table(storage: Storage, view: FeatureView, *, clip_seconds: int) -> int | None:
    """Once a build's shards are published: each label's small files of the view's index table
    at ``clip_seconds`` rewritten as one per part of the first split scheme, in one commit with
    the same rows, so that a new reader's selective query reads one file per label and part.
    The compaction's version, or None when every label is so already (or there is no table)."""
    table = index_table(storage, view, clip_seconds=clip_seconds)
    return table.compact_small(more_than=1) if table.exists() else None


def _compact(table: IndexTable, *, labels: list[int]) -> tuple[int | None, str]:
    """Compact the label partitions a commit added files to, once they hold many small files:
    the compaction's version (None if none was needed), and a note if it failed (the rows
    are committed either way; the next publish compacts)."""
    try:
        return table.compact_small(labels=labels), ""
    except StoreError as exc:
        return None, f"committed; its label partitions are not compacted yet ({exc})"


def _published(table: IndexTable, store: ViewStore, *, shard: int, shards: int, task_id: str,
               clip_seconds: int, replace: bool) -> PublishedShard | None:
    """The answer for a shard whose rows the newest version holds already, or None (build it).

    A shard whose catalog songs are those published is left as it is; one whose songs
    changed since is refused in one line, or (``replace``) rebuilt. This check saves the
    build; the commit itself is the guard against a second publish racing this one.
    """
    if not table.exists():
        return None
    version = table.latest_version()
    held = table.scan(version=version).filter(pl.col("shard") == shard).select("song_id", "task_id").collect()
    if held.is_empty():
        return None
    tasks = sorted(set(held["task_id"]))
    ok = store.catalog().filter(pl.col("status") == "ok").select("song_id", "sha256")
    wanted = set(ok.filter(shards_of(ok["sha256"], shards=shards) == shard)["song_id"])
    have = set(held["song_id"])
    if replace and have != wanted:
        return None
    if not have <= wanted:
        raise StoreError(f"shard {shard} of {store.view.name} at {clip_seconds} s holds {len(have - wanted)} songs "
                         f"the catalog no longer gives (version {version}, task {tasks[-1]}): pass replace to "
                         f"rebuild it and replace its rows in one commit (gtzan features publish --replace)")
    new = len(wanted - have)
    note = (f"published before, in version {version} or earlier (task {tasks[-1]}); nothing added"
            + (f"; {new} catalog songs of the shard have no row (too short for a clip, or ingested since: "
               "pass replace to rebuild it, gtzan features publish --replace)" if new else ""))
    return PublishedShard(shard=shard, task_id=task_id, object_key=None, version=version, committed=False,
                          rows=0, note=note)


def read_clips(storage: Storage, view: FeatureView, *, clip_seconds: int, version: int | None = None,
               labels: Sequence[int] | None = None, scheme: str | None = None, parts: Sequence[str] | None = None,
               arrays: Sequence[str] | None = None) -> tuple[pl.DataFrame, ShardArrays]:
    """The rows of one table version that a query selects (by label and split part), and
    their arrays, read object by object (each object fetched once) and checked row by row
    against the digests of that version.

    Returns
    -------
    (pl.DataFrame, ShardArrays)
        The rows, sorted by ``clip_id``, and their arrays in that order.
    """
    table = index_table(storage, view, clip_seconds=clip_seconds)
    rows = table.scan(version=version, labels=labels, scheme=scheme, parts=parts).collect().sort("clip_id")
    stored = rows.with_columns(pl.col(c).reinterpret(signed=True) for c in rows.columns if c.startswith(DIGEST_PREFIX))
    c = validate_clip_seconds(clip_seconds)
    names = list(arrays) if arrays is not None else [s.name for s in view.array_specs(c) if s.hdf5]
    specs = {s.name: s for s in view.array_specs(c)}
    out = {n: np.empty((rows.height, *specs[n].shape), dtype=specs[n].dtype) for n in names}
    groups = [(str(key), part) for (key,), part in stored.with_row_index("_at").group_by("object_key",
                                                                                       maintain_order=True)]

    def one(group: tuple[str, pl.DataFrame]) -> tuple[np.ndarray, ShardArrays]:
        key, part = group
        return part["_at"].to_numpy(), read_shard(storage, key, view=view, clip_seconds=c, rows=part, arrays=names)

    # objects in flight at once, as many as the backend gains from (S3: their round trips overlap)
    workers = min(getattr(storage, "concurrent_reads", 1), len(groups))
    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        for at, got in (pool.map(one, groups) if workers > 1 else map(one, groups)):
            for n in names:
                out[n][at] = got.arrays[n]
    return rows, ShardArrays(arrays=out, clip_ids=rows["clip_id"].to_list())


def unreferenced_objects(storage: Storage, view: FeatureView, *, clip_seconds: int,
                         retain_versions: int = DEFAULT_RETAIN_VERSIONS, retention_hours: int = DEFAULT_RETENTION_HOURS,
                         now: datetime | None = None) -> list[str]:
    """Shard objects of ``view`` at ``clip_seconds`` that no kept version of its table
    references (a task killed between its put and its commit, or rows vacuumed since), and
    that are older than ``retention_hours`` (at least :data:`MIN_OBJECT_AGE_HOURS`) at ``now``.

    An object a shard task has put but not yet committed is as unreferenced as an orphan,
    but new: the age keeps it, so a vacuum running beside a publish deletes nothing the
    publish is about to commit. An object whose storage gives no time is kept.
    """
    table = index_table(storage, view, clip_seconds=clip_seconds)
    prefix = shard_prefix(view, clip_seconds=clip_seconds, shard=0).rsplit("/", 1)[0]
    when = now or datetime.now(UTC)
    kept = (set(table.referenced_object_keys(retain_versions=retain_versions, retention_hours=retention_hours,
                                             now=when)) if table.exists() else set())
    before = when - timedelta(hours=max(retention_hours, MIN_OBJECT_AGE_HOURS))
    return sorted(o.key for o in storage.list(prefix) if o.key.endswith(".h5") and o.key not in kept
                  and o.last_modified is not None and o.last_modified < before)
