""":class:`IndexTable`: the index of one view and clip length as a Delta Lake table.

Each shard task is one atomic commit (an append, or a replace of the shard's rows), guarded
by Delta's own application transactions against a second commit of the task or of the shard
(see :mod:`~feature_store.engine.lake.writes`). A commit that loses the race for its version
number to other shards' commits is retried by the library and then here, each a bounded
number of times; none loses a row.

Every version's log file is created once, never overwritten (a local rename without
replace; on S3, delta-rs's conditional put, ``If-None-Match``): concurrent writers on an S3
server are safe only where the server honours conditional puts.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl

from feature_store.engine.lake import files as lake_files
from feature_store.engine.lake.records import PARTITION, from_stored, input_schema, row_schema, stored_schema
from feature_store.engine.lake.upkeep import Upkeep
from feature_store.engine.lake.writes import APP_PREFIX, DEFAULT_COMMIT_TRIES, Writes
from feature_store.engine.storage import LocalStorage, Storage
from feature_store.errors import ParameterError, StoreError
from feature_store.integrity import first_line
from feature_store.tables import SCHEMES

#: Commits between two checkpoints of the log: a reader or writer loads the last checkpoint
#: and replays at most this many commits after it.
CHECKPOINT_INTERVAL = 10
#: Data files a scan reads at once (object stores answer each read after a round trip).
READ_THREADS = 8
#: Columns left out of :meth:`IndexTable.version_digest`: who wrote a row, not what it is.
UNDIGESTED = ("run_id", "task_id")


class IndexTable(Writes, Upkeep):
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

    @functools.cached_property
    def storage(self) -> Storage:
        """The table's folder or prefix as a storage backend: its data files are put and got
        there (the log is delta-rs's)."""
        if self.local:
            return LocalStorage(self.uri)
        from feature_store.engine.storage.s3 import S3Config, S3Storage

        # deltalake's option names are the AWS variables' in lower case
        given = {k.upper(): str(v) for k, v in (self.storage_options or {}).items()}
        return S3Storage(self.uri, config=S3Config.from_env({**os.environ, **given}))

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
        every = lake_files.data_files(dt, string_columns=self.schemes)
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
            return lake_files.read_file(storage=self.storage, f=f, schema=file_schema)

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

__all__ = ["APP_PREFIX", "DEFAULT_COMMIT_TRIES", "IndexTable"]
