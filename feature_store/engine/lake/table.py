""":class:`IndexTable`: the index of one view and clip length as a Delta Lake table.

Each shard task is one atomic commit. Its idempotence is Delta's own: the commit carries an
application transaction (``txn``: the task's id, version 1) beside its rows; a task whose id
the table already has commits nothing, and two tries of one task racing each other conflict
in the library's commit check, so the loser sees the winner's id when it tries again. Commits
of different tasks only append, so a commit that loses the race for its version number is
retried by the library and then here, each a bounded number of times; none loses a row.

Every version's log file is created once, never overwritten (a local rename without
replace; on S3, delta-rs's conditional put, ``If-None-Match``): concurrent writers on an S3
server are safe only where the server honours conditional puts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl

from feature_store.engine.lake import files as lake_files
from feature_store.engine.lake.records import (
    META_PREFIX, PARTITION, CommitResult, Lineage, check_rows, check_task, commit_metadata,
    from_stored, input_schema, meta_of, row_schema, stored_schema, to_stored,
)
from feature_store.engine.lake.upkeep import Upkeep
from feature_store.errors import ParameterError, StoreError
from feature_store.integrity import first_line
from feature_store.tables import SCHEMES

#: Tries of one shard's commit against concurrent writers (each also retried by the library).
DEFAULT_COMMIT_TRIES = 20
#: Commits between two checkpoints of the log: a reader or writer loads the last checkpoint
#: and replays at most this many commits after it.
CHECKPOINT_INTERVAL = 10
#: Newest commits searched for the version a task just committed.
COMMIT_SEARCH = 64
#: Data files a scan reads at once (object stores answer each read after a round trip).
READ_THREADS = 8
#: Prefix of the application-transaction id of a shard task.
APP_PREFIX = "gtzan-shard-task:"
#: Columns left out of :meth:`IndexTable.version_digest`: who wrote a row, not what it is.
UNDIGESTED = ("run_id", "task_id")


class IndexTable(Upkeep):
    """The index table of one view and clip length, with versions, history and vacuum.

    Parameters
    ----------
    uri : str or path
        A local folder, or ``s3://bucket/prefix/...``.
    storage_options : dict, optional
        The object store's options (deltalake's, e.g. ``AWS_ENDPOINT_URL``).
    schemes : sequence of str
        The split schemes: one string column each.
    arrays : sequence of str
        The arrays whose row digests (``xxh3_<array>``, uint64) each row carries.
    """

    def __init__(self, uri: str | os.PathLike[str], *, storage_options: dict[str, str] | None = None,
                 schemes: Sequence[str] = SCHEMES, arrays: Sequence[str] = ("clips",)) -> None:
        text = os.fspath(uri)
        self.local = "://" not in text or text.startswith("file://")
        self.uri = str(os.path.abspath(os.path.expanduser(text.removeprefix("file://")))) if self.local else text
        self.storage_options = dict(storage_options) if storage_options else None
        self.schemes = tuple(schemes)
        self.arrays = tuple(arrays)
        self.input_schema = input_schema(self.schemes, self.arrays)
        self.row_schema = row_schema(self.schemes, self.arrays)
        self.stored_schema = stored_schema(self.schemes, self.arrays)

    def __repr__(self) -> str:
        return f"IndexTable({self.uri!r})"

    # -- loading --------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the table has been created (StoreError, one line, when its storage fails)."""
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError

        try:
            return DeltaTable.is_deltatable(self.uri, storage_options=self.storage_options)
        except (DeltaError, OSError) as exc:
            raise StoreError(f"the index table at {self.uri} cannot be reached ({first_line(exc)})") from None

    def _load(self, version: int | None = None, *, create: bool = False) -> Any:
        """The table at ``version`` (default the newest); ``create``: create it when missing."""
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError, TableNotFoundError

        try:
            return DeltaTable(self.uri, version=version, storage_options=self.storage_options)
        except TableNotFoundError:
            if create:
                self._create()
                return self._load(version)
            raise StoreError(f"no index table at {self.uri}: build the view first") from None
        except (DeltaError, OSError) as exc:
            raise StoreError(f"the index table at {self.uri} cannot be loaded ({first_line(exc)})") from exc

    def _create(self) -> None:
        """Create the empty table (schema and partitioning) unless it exists; creators may race."""
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError

        if self.exists():
            return
        schema = pl.DataFrame(schema=self.stored_schema).to_arrow().schema
        try:
            DeltaTable.create(self.uri, schema=schema, partition_by=[PARTITION], mode="ignore",
                              configuration={"delta.checkpointInterval": str(CHECKPOINT_INTERVAL)},
                              storage_options=self.storage_options)
        except (DeltaError, OSError) as exc:
            if not self.exists():  # not merely another creator's win
                raise StoreError(f"cannot create the index table at {self.uri} ({first_line(exc)})") from exc

    def latest_version(self) -> int:
        """The newest version of the table."""
        return int(self._load().version())

    # -- writing --------------------------------------------------------------------------
    def commit_shard(self, rows: pl.DataFrame, *, shard: int, task_id: str, lineage: Lineage,
                     tries: int = DEFAULT_COMMIT_TRIES) -> CommitResult:
        """Append one shard task's rows in one atomic commit, once per ``task_id``.

        Parameters
        ----------
        rows : pl.DataFrame
            Exactly the columns of :attr:`input_schema` (digests as uint64), no nulls.
        shard : int
            The shard the rows belong to.
        task_id : str
            The task's stable id (the same on every try of the task): a second commit of the
            same id adds nothing.
        lineage : Lineage
            Parameter hash, code version and run id, written to every row and to the commit.
        tries : int
            Commits attempted against concurrent writers before giving up.

        Raises
        ------
        ParameterError
            If ``rows``, ``shard``, ``task_id`` or ``lineage`` is malformed.
        StoreError
            If the commit fails (storage, or ``tries`` conflicts in a row).
        """
        from deltalake import CommitProperties, Transaction

        check_task(shard=shard, task_id=task_id, lineage=lineage)
        check_rows(rows, self.input_schema)
        app_id = APP_PREFIX + task_id
        data = to_stored(rows.with_columns(
            pl.lit(lineage.params_hash).alias("params_hash"), pl.lit(lineage.code_version).alias("code_version"),
            pl.lit(lineage.run_id).alias("run_id"), pl.lit(task_id).alias("task_id"),
            pl.lit(shard, pl.Int64).alias("shard"),
        )).sort(PARTITION, *self.schemes, "clip_id")
        meta = commit_metadata(shard=shard, task_id=task_id, lineage=lineage, rows=data.height)
        txn = [Transaction(app_id=app_id, version=1, last_updated=int(time.time() * 1000))]
        actions = lake_files.write_local(root=self.uri, data=data) if self.local else None
        try:
            for attempt in range(max(1, tries)):
                dt = self._load(create=True)
                if dt.transaction_version(app_id) is not None:
                    self._discard(actions)
                    return CommitResult(version=int(dt.version()), committed=False, rows=0, retries=attempt)
                # the version it read: a commit with a later version was rebased over others
                props = CommitProperties(custom_metadata={**meta, f"{META_PREFIX}read_version": str(dt.version())},
                                         app_transactions=txn)
                if self._commit_once(dt, data=data, actions=actions, props=props, what=f"shard {shard} (task {task_id})"):
                    return CommitResult(version=self._version_of(dt, task_id), committed=True, rows=data.height,
                                        retries=attempt)
        except BaseException:
            self._discard(actions)
            raise
        self._discard(actions)
        raise StoreError(f"shard {shard} (task {task_id}) lost {tries} commits in a row to concurrent writers of "
                         f"{self.uri}; run the task again")

    def _commit_once(self, dt: Any, *, data: pl.DataFrame, actions: list[Any] | None, props: Any, what: str) -> bool:
        """Commit a shard's rows on the loaded snapshot ``dt``; False when a concurrent commit won."""
        from deltalake import write_deltalake
        from deltalake.exceptions import CommitFailedError, DeltaError

        try:
            # the loaded snapshot is the commit's read version: a try of the same task
            # committed after it is a conflict the library detects, never a second append
            if actions is not None:
                schema = pl.DataFrame(schema=self.stored_schema).to_arrow().schema
                dt.create_write_transaction(actions, "append", schema, partition_by=[PARTITION],
                                            commit_properties=props)
            else:
                write_deltalake(dt, data.to_arrow(), mode="append", partition_by=[PARTITION],
                                commit_properties=props, storage_options=self.storage_options)
        except CommitFailedError:
            return False
        except (DeltaError, OSError) as exc:
            raise StoreError(f"cannot commit {what} to {self.uri} ({first_line(exc)}); run the task again") from exc
        return True

    def _version_of(self, dt: Any, task_id: str) -> int:
        """The version a task just committed on ``dt`` (searched among the newest commits), or
        the newest version, which holds its rows either way."""
        dt.update_incremental()
        for c in dt.history(limit=COMMIT_SEARCH):
            if meta_of(c, "task_id") == task_id:
                return int(c["version"])
        return int(dt.version())

    def _discard(self, actions: list[Any] | None) -> None:
        """Delete the files a shard task wrote, unless the newest version references them (a
        commit reported failed that took effect); left for :meth:`vacuum` if that is unknown."""
        if not actions:
            return
        with contextlib.suppress(StoreError, OSError):
            referenced = {f.path for f in lake_files.data_files(self._load(), string_columns=(), local=self.local)}
            lake_files.discard_local(root=self.uri, actions=actions, referenced=referenced)

    # -- reading --------------------------------------------------------------------------
    def resolve(self, *, version: int | None = None, as_of: datetime | str | None = None) -> int:
        """The version a query pins: ``version``, the last one at ``as_of``, or the newest.

        Raises
        ------
        StoreError
            If there is no such version, or ``as_of`` is before the table's first version.
        """
        return int(self._snapshot(version=version, as_of=as_of).version())

    def _snapshot(self, *, version: int | None, as_of: datetime | str | None) -> Any:
        """The table loaded at the version :meth:`resolve` names (loaded once)."""
        if version is not None and as_of is not None:
            raise ParameterError("give a version or a time (as_of), not both")
        if as_of is not None:
            return self._load(self._version_at(as_of))
        if version is None:
            return self._load()
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise StoreError(f"the index table at {self.uri} has versions 0 to {self.latest_version()}, "
                             f"not {version!r}")
        try:
            return self._load(version)
        except StoreError:
            latest = self.latest_version()
            if version <= latest:
                raise
            raise StoreError(f"the index table at {self.uri} has versions 0 to {latest}, not {version!r}") from None

    def _version_at(self, as_of: datetime | str) -> int:
        if isinstance(as_of, str):
            try:
                as_of = datetime.fromisoformat(as_of)
            except ValueError:
                raise ParameterError(f"as_of {as_of!r} is not an ISO 8601 time (e.g. 2026-12-06T23:00:00Z)") from None
        if not isinstance(as_of, datetime):
            raise ParameterError(f"as_of must be a datetime or an ISO 8601 string, got {type(as_of).__name__}")
        when = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
        versions = [v for v in self.history() if v.timestamp <= when]
        if not versions:
            first = self.history()[0].timestamp.isoformat() if self.exists() else "never"
            raise StoreError(f"{when.isoformat()} is before the index table at {self.uri} existed "
                             f"(its first version is of {first})")
        return max(v.version for v in versions)

    def files(self, *, version: int | None = None, as_of: datetime | str | None = None,
              labels: Sequence[int] | None = None, scheme: str | None = None,
              parts: Sequence[str] | None = None) -> list[lake_files.DataFile]:
        """The data files a query reads: those of the pinned version that may hold its rows."""
        if scheme is not None and scheme not in self.schemes:
            raise ParameterError(f"unknown split scheme {scheme!r}; valid schemes are {list(self.schemes)}")
        dt = self._snapshot(version=version, as_of=as_of)
        every = lake_files.data_files(dt, string_columns=self.schemes, local=self.local)
        return lake_files.select(every, labels=None if labels is None else list(labels), column=scheme,
                                 values=None if parts is None else list(parts))

    def scan(self, *, version: int | None = None, as_of: datetime | str | None = None,
             labels: Sequence[int] | None = None, scheme: str | None = None,
             parts: Sequence[str] | None = None) -> pl.LazyFrame:
        """The rows of one version (default the newest), optionally of some labels and split parts.

        Only the files of the selected labels (the partitions), and of those only the files
        whose recorded statistics can hold the selected parts, are read. Digests come back
        as uint64. Columns are :attr:`row_schema`'s.
        """
        selected = self.files(version=version, as_of=as_of, labels=labels, scheme=scheme, parts=parts)
        frames = self._read(selected)
        df = pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=self.stored_schema)
        df = from_stored(df.select(list(self.stored_schema)))
        preds = []
        if labels is not None:
            preds.append(pl.col(PARTITION).is_in(list(labels)))
        if scheme is not None and parts is not None:
            preds.append(pl.col(scheme).is_in(list(parts)))
        return df.lazy().filter(*preds) if preds else df.lazy()

    def _read(self, selected: Sequence[lake_files.DataFile]) -> list[pl.DataFrame]:
        """The rows of ``selected`` data files, :data:`READ_THREADS` files in flight, in order."""
        from concurrent.futures import ThreadPoolExecutor

        file_schema = {k: v for k, v in self.stored_schema.items() if k != PARTITION}

        def one(f: lake_files.DataFile) -> pl.DataFrame:
            return lake_files.read_file(root=self.uri, local=self.local, f=f, schema=file_schema,
                                        storage_options=self.storage_options)

        if len(selected) < 2:
            return [one(f) for f in selected]
        with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(selected))) as pool:
            return list(pool.map(one, selected))

    def version_digest(self, version: int | None = None) -> str:
        """``sha256:<hex>`` of the rows of ``version`` (default the newest), in clip order.

        The same rows give the same digest whatever files, commits or runs hold them (the
        run and task ids are left out): what a model records about the data it trained on.
        """
        df = self.scan(version=version).collect()
        cols = [c for c in self.row_schema if c not in UNDIGESTED]
        df = df.select(cols).sort("clip_id", "object_key", "object_row")
        text = df.select(pl.concat_str([pl.col(c).cast(pl.String) for c in cols], separator="\x1f").alias("r"))
        h = hashlib.sha256("\x1f".join(cols).encode())
        for chunk in text.iter_slices(65536):
            h.update(("\n" + "\n".join(chunk["r"].to_list())).encode())
        return f"sha256:{h.hexdigest()}"

__all__ = ["IndexTable"]
