"""The upkeep of an index table: compaction, history, and vacuum by one retention rule.

:class:`Upkeep` is a part of :class:`~feature_store.engine.lake.table.IndexTable` (its base
class), kept apart so that each module reads on its own.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from feature_store.engine.lake import files as lake_files
from feature_store.engine.lake.records import (
    META_PREFIX, PARTITION, TableVersion, VacuumReport, meta_of, removed_of, rows_of,
)
from feature_store.errors import ParameterError, StoreError
from feature_store.integrity import first_line

#: Hours a data file stays after a commit removed it: a reader that pinned an older version
#: that long ago can still read it (Delta's own default, one week).
DEFAULT_RETENTION_HOURS = 168
#: Versions :meth:`Upkeep.vacuum` keeps readable at least, however old.
DEFAULT_RETAIN_VERSIONS = 10
#: Hours an object no version references is kept at least, whatever the retention: a shard
#: task puts its object before its commit names it, and vacuum must not delete it between.
MIN_OBJECT_AGE_HOURS = 1
#: A build compacts a label partition once it holds more than this many small files: a
#: new reader then reads a few files per label, not one per shard.
COMPACT_FILES = 8
#: Files smaller than this are small (compacted; larger ones are left as they are).
COMPACT_SMALL_BYTES = 64 << 20
#: Tries of a compaction against concurrent commits that remove its files.
DEFAULT_COMPACT_TRIES = 5
#: Most seconds a compaction that lost waits before it tries again (a random share of it).
COMPACT_BACKOFF_S = 0.5
#: The commit metadata of a compaction (its rows are moved, not added).
COMPACT_META = {f"{META_PREFIX}operation": "compact"}


class Upkeep:
    """Compaction, history, kept versions and vacuum of an :class:`IndexTable`."""

    uri: str
    local: bool
    schemes: tuple[str, ...]
    stored_schema: dict[str, pl.DataType]

    def _load(self, version: int | None = None, *, create: bool = False) -> Any:
        raise NotImplementedError

    def _read(self, selected: Sequence[lake_files.DataFile]) -> list[pl.DataFrame]:
        raise NotImplementedError

    def _discard(self, actions: list[Any] | None) -> None:
        raise NotImplementedError

    def _write(self, data: pl.DataFrame, *, data_change: bool = True, split_by: str | None = None) -> list[Any]:
        raise NotImplementedError

    def compact(self, *, labels: Sequence[int] | None = None, min_files: int = 2, small_bytes: int | None = None,
                tries: int = DEFAULT_COMPACT_TRIES) -> int:
        """Rewrite each label's small files as one per part of the first split scheme (a new
        version, same rows), and checkpoint the log there.

        The files are written by the project's writer (page checksums, digest names) and the
        old ones removed in the same commit, on every backend. A new reader then loads one
        checkpoint and reads, for a query of some labels and parts of the first scheme (``seed``'s
        ``test``), one file per label and part (the files' statistics say which), instead of
        every commit and every shard's file. The replaced files stay until :meth:`vacuum`, so earlier versions remain
        readable. Appends racing a compaction are kept (it removes only the files it read);
        a commit that removed one of those files first makes it start again, up to ``tries``.

        Parameters
        ----------
        labels : sequence of int, optional
            Only these label partitions (default: all).
        min_files : int
            Compact a partition only when it holds at least this many files (at least 2).
        small_bytes : int, optional
            Only files smaller than this count and are rewritten (default: every file).

        Returns
        -------
        int
            The newest version (the compaction's, or the one it found nothing to do in).
        """
        from deltalake.exceptions import DeltaError

        for _ in range(max(1, tries)):
            adds: list[Any] = []
            try:
                dt = self._load()
                moved = self._to_compact(dt, labels=labels, min_files=min_files, small_bytes=small_bytes)
                if moved:
                    adds = self._write(pl.concat(self._read(moved)).select(list(self.stored_schema))
                                       .sort(PARTITION, *self.schemes, "clip_id"), data_change=False,
                                       split_by=self._split_by)
                    if not self._commit_compaction(dt, adds=adds, moved=moved):
                        self._discard(adds)
                        time.sleep(random.uniform(0, COMPACT_BACKOFF_S))  # racing compactions: apart
                        continue
                dt = self._load()
                dt.create_checkpoint()
                return int(dt.version())
            except (DeltaError, OSError) as exc:
                self._discard(adds)
                raise StoreError(f"cannot compact {self.uri} ({first_line(exc)}); run it again") from exc
        raise StoreError(f"compacting {self.uri} lost {tries} commits in a row to concurrent commits that removed "
                         "its files (other compactions, replaces); run it again")

    def compact_small(self, *, labels: Sequence[int] | None = None, more_than: int | None = None,
                      small_bytes: int | None = None) -> int | None:
        """:meth:`compact` the label partitions (of ``labels``) that hold more than
        ``more_than`` (default :data:`COMPACT_FILES`) files smaller than ``small_bytes``
        (default :data:`COMPACT_SMALL_BYTES`), those files only, as a build goes: return the
        compaction's version, or None when no partition needed it."""
        more_than = COMPACT_FILES if more_than is None else more_than
        small_bytes = COMPACT_SMALL_BYTES if small_bytes is None else small_bytes
        if not self._to_compact(self._load(), labels=labels, min_files=more_than + 1, small_bytes=small_bytes):
            return None
        return self.compact(labels=labels, min_files=more_than + 1, small_bytes=small_bytes)

    def _to_compact(self, dt: Any, *, labels: Sequence[int] | None, min_files: int,
                    small_bytes: int | None) -> list[lake_files.DataFile]:
        """The small files of the partitions of ``labels`` that hold at least ``min_files`` of
        them (any number, for ``min_files`` of 2 or less), unless they are as a compaction
        leaves them (one file per part already)."""
        groups: dict[int, list[lake_files.DataFile]] = {}
        split = self._split_by
        for f in lake_files.data_files(dt, string_columns=(split,) if split else ()):
            if (labels is None or f.label in labels) and (small_bytes is None or f.size < small_bytes):
                groups.setdefault(f.label, []).append(f)
        return [f for fs in groups.values() if (len(fs) >= min_files or min_files <= 2)
                and not lake_files.settled(fs, column=split) for f in fs]

    @property
    def _split_by(self) -> str | None:
        """The column a compaction writes one file per value of: the first split scheme."""
        return self.schemes[0] if self.schemes else None

    def _commit_compaction(self, dt: Any, *, adds: list[Any], moved: Sequence[lake_files.DataFile]) -> bool:
        """Commit a compaction on the snapshot ``dt``; False when a concurrent commit removed
        one of its files first (Delta's conflict check)."""
        from deltalake import CommitProperties
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import RemoveAction

        now = int(time.time() * 1000)
        # data_change: Delta's conflict check compares only such removes with a concurrent
        # commit's, and two compactions (or a compaction and a replace) that remove the same
        # file must conflict, or the loser would add its rows a second time
        removes = [RemoveAction(path=f.path, data_change=True, deletion_timestamp=now, size=f.size,
                                partition_values={PARTITION: str(f.label)}) for f in moved]
        schema = pl.DataFrame(schema=self.stored_schema).to_arrow().schema
        try:
            dt.create_write_transaction([*adds, *removes], "append", schema, partition_by=[PARTITION],
                                        commit_properties=CommitProperties(custom_metadata=COMPACT_META))
        except CommitFailedError:
            return False
        return True

    # -- history and vacuum ---------------------------------------------------------------
    def history(self) -> list[TableVersion]:
        """Every version whose commit the log still holds, oldest first, with its row counts
        and what wrote it.

        Totals count back from the newest version's files (a commit records the rows it
        added and, a replace, removed; a compaction moves rows), so they stay right when the
        log's oldest commits expire.
        """
        dt = self._load()
        commits = sorted(dt.history(), key=lambda c: int(c["version"]))
        added = [rows_of(c) for c in commits]
        removed = [removed_of(c) for c in commits]
        total = sum(f.rows for f in lake_files.data_files(dt, string_columns=())) - sum(added) + sum(removed)
        out = []
        for c, n, r in zip(commits, added, removed):
            total += n - r
            shard = meta_of(c, "shard")
            own = meta_of(c, "operation")
            out.append(TableVersion(
                version=int(c["version"]), timestamp=datetime.fromtimestamp(int(c["timestamp"]) / 1000, tz=UTC),
                operation=own.upper() if own in ("compact", "replace") else str(c.get("operation")),
                rows_added=n, total_rows=total, rows_removed=r,
                run_id=meta_of(c, "run_id"), task_id=meta_of(c, "task_id"), code_version=meta_of(c, "code_version"),
                params_hash=meta_of(c, "params_hash"), shard=int(shard) if shard and shard.isdigit() else None,
            ))
        return out

    def kept_versions(self, *, retain_versions: int = DEFAULT_RETAIN_VERSIONS,
                      retention_hours: int = DEFAULT_RETENTION_HOURS, now: datetime | None = None) -> list[int]:
        """The versions :meth:`vacuum` keeps readable: the newest ``retain_versions``, and
        every version written in the ``retention_hours`` before ``now`` (default: now)."""
        if isinstance(retain_versions, bool) or not isinstance(retain_versions, int) or retain_versions < 1:
            raise ParameterError(f"retain_versions must be an int >= 1, got {retain_versions!r}")
        if isinstance(retention_hours, bool) or not isinstance(retention_hours, int) or retention_hours < 0:
            raise ParameterError(f"retention_hours must be an int >= 0, got {retention_hours!r}")
        versions = self.history()
        latest = versions[-1].version
        since = (now or datetime.now(UTC)) - timedelta(hours=retention_hours)
        return [v.version for v in versions if v.version > latest - retain_versions or v.timestamp >= since]

    def referenced_object_keys(self, *, retain_versions: int = DEFAULT_RETAIN_VERSIONS,
                               retention_hours: int = DEFAULT_RETENTION_HOURS, now: datetime | None = None) -> set[str]:
        """The shard object keys the kept versions' rows name (by :meth:`kept_versions`'s
        rule): a shard object outside this set is referenced by no kept version."""
        kept = self.kept_versions(retain_versions=retain_versions, retention_hours=retention_hours, now=now)
        seen: dict[str, lake_files.DataFile] = {}
        for v in kept:
            for f in lake_files.data_files(self._load(v), string_columns=()):
                seen.setdefault(f.path, f)
        keys: set[str] = set()
        for df in self._read(list(seen.values())):
            keys.update(df["object_key"].unique().to_list())
        return keys

    def vacuum(self, *, retain_versions: int = DEFAULT_RETAIN_VERSIONS,
               retention_hours: int = DEFAULT_RETENTION_HOURS, dry_run: bool = False) -> VacuumReport:
        """Delete the data files no kept version references, and that no version has
        referenced for ``retention_hours``; return what was (or, ``dry_run``, would be) deleted.

        Only files that a commit removed (a compaction's inputs) are candidates: a file a kept
        version references is never deleted, so every kept version stays readable, and a
        file no commit ever named (a shard task's files before its commit, or those of a
        task killed before it) is left alone.
        """
        from deltalake.exceptions import DeltaError

        kept = self.kept_versions(retain_versions=retain_versions, retention_hours=retention_hours)
        dt = self._load()
        try:
            deleted = dt.vacuum(retention_hours=retention_hours, dry_run=dry_run, enforce_retention_duration=False,
                                keep_versions=kept, full=False)
        except (DeltaError, OSError) as exc:
            raise StoreError(f"cannot vacuum {self.uri} ({first_line(exc)})") from exc
        return VacuumReport(kept_versions=tuple(kept), deleted=tuple(sorted(str(p) for p in deleted)))
