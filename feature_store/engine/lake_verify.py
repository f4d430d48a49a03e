"""Verifying a version of a view's index table and its shard objects, and repairing the shards.

:func:`verify_table` pins one version of the index table of a view and clip length
(:func:`feature_store.engine.sharded.index_table`) and reads everything it references, the
way a reader would and through the same checked readers, one thing at a time:

* each of the version's data files (:func:`feature_store.engine.lake.files.read_file`: a
  size-bounded get, its size and row count against the log, the xxh3-128 digest in its name
  and the Parquet page checksums);
* each shard object its rows name, fetched whole by the storage's size-bounded get (on S3
  checked against the sha256 stored with the object), then read from those bytes by
  :func:`feature_store.engine.shards.read_shard`: the object's view and clip length, the
  clip ids at the rows the table names, and every row of every array against the xxh3
  digest the table holds for it.

What is missing or damaged is listed per shard (:class:`TableCheck`), never raised.
Memory holds the version's index rows (their ids, places and digests) and one object at a
time.

:func:`repair_table` rebuilds each damaged shard from the store's catalog, per-song cache
and audio (:func:`~feature_store.engine.shards.build_shard`) into a new object, and
replaces that shard's rows in the newest version with the rebuilt ones in one commit
(:meth:`IndexTable.replace_shard <feature_store.engine.lake.table.IndexTable.replace_shard>`).
The clips the shard held are kept exactly: a rebuild that lacks one of them replaces
nothing. The damaged object is left for ``vacuum``: older versions still name it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import polars as pl

from feature_store.engine.lake import IndexTable, Lineage
from feature_store.engine.lake import files as lake_files
from feature_store.engine.lake.records import PARTITION
from feature_store.engine.sharded import index_table, table_rows
from feature_store.engine.shards import build_shard, check_shards, read_shard, shard_prefix, shards_of
from feature_store.engine.storage import ObjectNotFound, Storage
from feature_store.engine.store import ViewStore
from feature_store.engine.view import FeatureView
from feature_store.errors import GTZANError, StoreError
from feature_store.integrity import DIGEST_PREFIX, REPAIR_FEATURES
from feature_store.params import validate_clip_seconds

#: The columns of an index row that a check reads (besides the digests).
_CHECKED = ("song_id", "clip_id", "object_key", "object_row", "shard")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DamagedObject:
    """One shard object of a version that is missing or cannot be read back as its rows say.

    Attributes
    ----------
    shard : int
        The shard its rows belong to.
    key : str
        The object's key, as the table names it.
    rows : int
        Rows of the version that name it.
    missing : bool
        No object under the key (deleted); otherwise it is there but damaged.
    reason : str
        One line: what failed.
    """

    shard: int
    key: str
    rows: int
    missing: bool
    reason: str

    def line(self) -> str:
        """``object <key> missing`` or ``object <key> damaged (<reason>)``, with its rows."""
        what = "missing" if self.missing else f"damaged ({self.reason})"
        return f"object {self.key} ({self.rows} rows) {what}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class TableCheck:
    """What :func:`verify_table` found in one version of an index table.

    Attributes
    ----------
    uri : str
        The table.
    version : int
        The version checked.
    files_checked : int
        The table's data files read (each checked).
    objects_checked : int
        Shard objects the version names.
    rows_checked : int
        Rows read back and matched to their digests (rows of sound objects).
    objects : tuple of DamagedObject
        Objects missing or damaged, by shard then key.
    table : tuple of str
        One line per damaged data file of the table itself, or per row the table names
        twice: rows that a rebuild of shards cannot bring back.
    """

    uri: str
    version: int
    files_checked: int
    objects_checked: int
    rows_checked: int
    objects: tuple[DamagedObject, ...] = ()
    table: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.objects and not self.table

    @property
    def damaged_shards(self) -> dict[int, list[DamagedObject]]:
        """The damaged objects of each damaged shard, by shard."""
        out: dict[int, list[DamagedObject]] = {}
        for o in self.objects:
            out.setdefault(o.shard, []).append(o)
        return dict(sorted(out.items()))


@dataclasses.dataclass(frozen=True, kw_only=True)
class RepairedShard:
    """One shard :func:`repair_table` rebuilt.

    Attributes
    ----------
    shard : int
    object_key : str
        The new object its rows now name.
    rows : int
        Rows the shard holds, as before.
    version : int
        The table version whose commit replaced the shard's rows.
    changed_rows : int
        Rows whose rebuilt digests differ from the digests the damaged version held (0: the
        same numbers as before the damage; more when the view's code changed since).
    """

    shard: int
    object_key: str
    rows: int
    version: int
    changed_rows: int


def verify_table(storage: Storage, view: FeatureView, *, clip_seconds: int,
                 version: int | None = None) -> TableCheck:
    """Check one version (default the newest) of ``view``'s index table at ``clip_seconds``
    and every shard object it references (see the module docstring).

    Raises
    ------
    StoreError
        One line: there is no such table or version (what is damaged is reported instead).
    """
    c = validate_clip_seconds(clip_seconds)
    table = index_table(storage, view, clip_seconds=c)
    if not table.exists():
        raise StoreError(f"no index table at {table.uri}: publish the view first")
    pinned = table.resolve(version=version)
    rows, files, problems = _index_rows(table, pinned)
    if rows.height:
        twice = rows.filter(pl.col("clip_id").is_duplicated())["clip_id"].unique().sort()
        if twice.len():
            problems.append(f"{table.uri} version {pinned} names {twice.len()} clips more than once "
                            f"(first: {twice[0]}): {lake_files.REPAIR_TABLE}")
    damaged: list[DamagedObject] = []
    checked = objects = 0
    for (key,), part in rows.sort("object_key", "object_row").group_by("object_key", maintain_order=True):
        objects += 1
        found = _check_object(storage, view, clip_seconds=c, key=str(key), rows=part)
        if found is None:
            checked += part.height
        else:
            damaged.append(found)
    return TableCheck(uri=table.uri, version=pinned, files_checked=files, objects_checked=objects,
                      rows_checked=checked, objects=tuple(sorted(damaged, key=lambda d: (d.shard, d.key))),
                      table=tuple(problems))


def _index_rows(table: IndexTable, version: int) -> tuple[pl.DataFrame, int, list[str]]:
    """The version's rows (the columns a check needs, digests as stored: int64), the data
    files read, and one line per data file that cannot be read."""
    columns = [*_CHECKED, *(c for c in table.stored_schema if c.startswith(DIGEST_PREFIX))]
    file_schema = {k: v for k, v in table.stored_schema.items() if k != PARTITION}
    empty = pl.DataFrame(schema={c: table.stored_schema[c] for c in columns})
    try:
        files = table.files(version=version)
    except StoreError as exc:  # a log naming paths this table never writes
        return empty, 0, [_reason(exc, where=table.uri, name=table.uri)]
    frames, problems = [empty], []
    for f in files:
        try:
            df = lake_files.read_file(storage=table.storage, f=f, schema=file_schema)
        except (StoreError, OSError) as exc:  # IntegrityError too
            problems.append(_reason(exc, where=table.uri, name=table.uri))
            continue
        frames.append(df.select(columns))
    return pl.concat(frames, how="vertical"), len(files), problems


def _check_object(storage: Storage, view: FeatureView, *, clip_seconds: int, key: str,
                  rows: pl.DataFrame) -> DamagedObject | None:
    """None when the object ``key`` is there and gives back every row ``rows`` name, each
    matching its digest; else what is wrong with it."""
    shards = sorted(set(rows["shard"].to_list()))
    shard = int(shards[0])

    def damaged(reason: str, *, missing: bool = False) -> DamagedObject:
        return DamagedObject(shard=shard, key=key, rows=rows.height, missing=missing, reason=reason)

    if len(shards) > 1:
        return damaged(f"its rows name the shards {shards}, an object holds one")
    # a key from the table's rows is read only where this shard's objects are put
    if not key.startswith(shard_prefix(view, clip_seconds=clip_seconds, shard=shard) + "/"):
        return damaged(f"the table names it for shard {shard}, whose objects are not there")
    try:
        # fetched whole through the checked get (size bound; on S3 the sha256 stored with it),
        # then every row read from those bytes: a reader of a few rows would fetch ranges only
        read_shard(storage, key, view=view, clip_seconds=clip_seconds, rows=rows, whole=True)
    except ObjectNotFound:
        return damaged("no such object", missing=True)
    except (GTZANError, OSError) as exc:  # IntegrityError, ObjectTooLarge, unreadable, a malformed row
        return damaged(_reason(exc, where=f"{storage.url}/{key}", name="the object"))
    return None


def _reason(exc: BaseException, *, where: str, name: str) -> str:
    """A reader's error about what is at ``where`` (an object, a table) as a short line: paths
    under it relative, ``where`` itself as ``name`` (the report names it), without the store
    folder's remedy (the repair here is another)."""
    text = " ".join(str(exc).split()).replace(f"; {REPAIR_FEATURES}", "")
    text = text.replace(f"{where}/", "").replace(f"{where}: ", "").replace(where, name)
    return text if len(text) <= 300 else text[:297] + "..."


def repair_table(store: ViewStore, *, storage: Storage, check: TableCheck, clip_seconds: int, shards: int,
                 audio_root: str | Path, lineage: Lineage, task_prefix: str,
                 workers: int | None = None) -> list[RepairedShard]:
    """Rebuild each shard ``check`` found damaged into a new object, and replace its rows in
    the newest version of the table, one commit per shard.

    Parameters
    ----------
    store : ViewStore
        The view, its catalog and per-song cache.
    storage : Storage
    check : TableCheck
        A :func:`verify_table` of the newest version.
    clip_seconds : int
    shards : int
        The shard count the table was published with (the songs of a shard depend on it).
    audio_root : path
        The genres folder the catalog's paths point into.
    lineage : Lineage
        What the replacing commits record.
    task_prefix : str
        Shard K's task id is ``<task_prefix>.shard-K``.
    workers : int, optional

    Raises
    ------
    StoreError
        One line, with nothing replaced for that shard: the table's own files are damaged, the
        table moved on since ``check``, ``shards`` does not give the songs a shard holds, or
        a rebuild lacks clips the shard held.
    """
    c = validate_clip_seconds(clip_seconds)
    check_shards(shards)
    table = index_table(storage, store.view, clip_seconds=c)
    if check.table:
        raise StoreError(f"the index table itself is damaged ({check.table[0]}); rebuilding shards cannot bring its "
                         f"rows back: {lake_files.REPAIR_TABLE}")
    latest = table.latest_version()
    if check.version != latest:
        raise StoreError(f"{table.uri} is at version {latest}, the check was of version {check.version}: "
                         "repair the newest version (verify it again)")
    damaged = sorted(check.damaged_shards)
    if not damaged:
        return []
    held = table.scan(version=latest).filter(pl.col("shard").is_in(damaged)).collect()
    _check_songs(store, held, shards=shards, table=table)
    out = []
    for k in damaged:
        out.append(_rebuild(store, table, storage=storage, held=held.filter(pl.col("shard") == k), shard=k,
                            shards=shards, clip_seconds=c, audio_root=audio_root, lineage=lineage,
                            task_id=f"{task_prefix}.shard-{k}", workers=workers))
    return out


def _check_songs(store: ViewStore, held: pl.DataFrame, *, shards: int, table: IndexTable) -> None:
    """Refuse, in one line, a shard count under which a damaged shard's songs fall elsewhere."""
    ok = store.catalog().filter(pl.col("status") == "ok").select("song_id", "sha256")
    now = dict(zip(ok["song_id"].to_list(), shards_of(ok["sha256"], shards=shards).to_list()))
    for song, k in held.select("song_id", "shard").unique().sort("shard", "song_id").iter_rows():
        if now.get(song) != k:
            where = "is no longer in the catalog" if song not in now else f"falls in shard {now[song]} of {shards}"
            raise StoreError(f"shard {k} of {table.uri} holds the song {song}, which {where}: repair with the shard "
                             f"count it was published with (GTZAN_SHARDS); nothing was replaced")


def _rebuild(store: ViewStore, table: IndexTable, *, storage: Storage, held: pl.DataFrame, shard: int, shards: int,
             clip_seconds: int, audio_root: str | Path, lineage: Lineage, task_id: str,
             workers: int | None) -> RepairedShard:
    """One damaged shard rebuilt into a new object, its rows replaced in one commit."""
    built = build_shard(store, shard=shard, shards=shards, clip_seconds=clip_seconds, storage=storage,
                        audio_root=audio_root, task_id=task_id, workers=workers)
    rows = table_rows(built.rows, table).filter(pl.col("clip_id").is_in(held["clip_id"].implode()))
    lacking = held.height - rows.height
    if lacking:
        with contextlib.suppress(StoreError):
            storage.delete(built.object_key)  # named by no version: nothing was committed
        failed = ", ".join(built.failed["song_id"].to_list()[:3]) or "none"
        raise StoreError(f"rebuilding shard {shard} gave {lacking} of its {held.height} clips fewer than "
                         f"{table.uri} holds (songs that failed: {failed}); nothing was replaced")
    digests = [col for col in rows.columns if col.startswith(DIGEST_PREFIX)]
    before = held.select("clip_id", *digests)
    joined = rows.select("clip_id", *digests).join(before, on="clip_id", suffix="_held")
    changed = joined.filter(pl.any_horizontal(pl.col(d) != pl.col(f"{d}_held") for d in digests)).height
    result = table.replace_shard(rows, shard=shard, task_id=task_id, lineage=lineage)
    if not result.committed:  # another commit of the shard, or of this task id, came first
        storage.delete(built.object_key)  # named by no version
        why = result.note or f"task {task_id} committed before"
        raise StoreError(f"shard {shard} of {table.uri} was not replaced ({why}): verify it again")
    return RepairedShard(shard=shard, object_key=built.object_key, rows=rows.height, version=result.version,
                         changed_rows=changed)
