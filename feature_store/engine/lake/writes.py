"""The shard commits of an index table: append a shard's rows, or replace them, in one commit.

:class:`Writes` is a part of :class:`~feature_store.engine.lake.table.IndexTable` (its base
class), kept apart so that each module reads on its own.

Two guards make a shard's rows appear once, each carried by the commit itself as a Delta
application transaction (``txn``) beside the rows, so that Delta's own conflict check
decides between racing writers:

* the **task** id (``gtzan-shard-task:<task id>``): a task whose id the table already has
  commits nothing, and two tries of one task racing each other conflict;
* the **shard's state** (``gtzan-shard-state:<digest>``, of the shard number and the objects
  its rows name in the version the commit read): two commits that read the same state of a
  shard conflict whatever their task ids, so of two builds of a shard racing on two hosts
  exactly one commits. The loser, retrying, finds the shard changed since it read it: it
  commits nothing and says so (``already published`` when the winner holds the same rows).

Commits of other shards, and compactions, do not change a shard's state (a compaction moves
rows, their objects stay): a commit that loses only to those is retried.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Sequence
from typing import Any

import polars as pl

from feature_store.engine.lake import files as lake_files
from feature_store.engine.lake.records import (
    META_PREFIX, PARTITION, CommitResult, Lineage, check_rows, check_task, commit_metadata, content_digest,
    meta_of, to_stored,
)
from feature_store.engine.storage import Storage
from feature_store.errors import StoreError
from feature_store.integrity import first_line

#: Tries of one shard's commit against concurrent writers (each also retried by the library).
DEFAULT_COMMIT_TRIES = 20
#: Newest commits searched for the version a task just committed.
COMMIT_SEARCH = 64
#: Prefix of the application-transaction id of a shard task.
APP_PREFIX = "gtzan-shard-task:"
#: Prefix of the application-transaction id of a shard's state (see the module's docstring).
STATE_PREFIX = "gtzan-shard-state:"


@dataclasses.dataclass(frozen=True)
class _Held:
    """What one version holds of a shard: the files that may hold its rows, its rows, and
    the other shards' rows of those files (kept when the shard's rows are replaced)."""

    files: list[lake_files.DataFile]
    rows: pl.DataFrame
    others: pl.DataFrame

    @property
    def state(self) -> str:
        """The shard's state: the objects its rows name (a build's object is unique)."""
        return "\n".join(sorted(set(self.rows["object_key"].to_list())))

    def tasks(self) -> str:
        return ", ".join(sorted(set(self.rows["task_id"].to_list()))) or "none"


class Writes:
    """Shard commits of an :class:`IndexTable`: :meth:`commit_shard` and :meth:`replace_shard`."""

    uri: str
    schemes: tuple[str, ...]
    stored_schema: dict[str, pl.DataType]
    input_schema: dict[str, pl.DataType]
    storage: Storage

    def _load(self, version: int | None = None, *, create: bool = False) -> Any:
        raise NotImplementedError

    def _read(self, selected: Sequence[lake_files.DataFile]) -> list[pl.DataFrame]:
        raise NotImplementedError

    def commit_shard(self, rows: pl.DataFrame, *, shard: int, task_id: str, lineage: Lineage,
                     tries: int = DEFAULT_COMMIT_TRIES) -> CommitResult:
        """Append one shard task's rows in one atomic commit, once per ``task_id`` and once per
        shard.

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

        Returns
        -------
        CommitResult
            Not committed (with a ``note``) when the shard already holds these rows, or a
            concurrent commit published the shard first.

        Raises
        ------
        ParameterError
            If ``rows``, ``shard``, ``task_id`` or ``lineage`` is malformed.
        StoreError
            If the shard holds other rows already (replace them with :meth:`replace_shard`),
            or the commit fails (storage, or ``tries`` conflicts in a row).
        """
        return self._commit(rows, shard=shard, task_id=task_id, lineage=lineage, replace=False, tries=tries)

    def replace_shard(self, rows: pl.DataFrame, *, shard: int, task_id: str, lineage: Lineage,
                      tries: int = DEFAULT_COMMIT_TRIES) -> CommitResult:
        """Replace every row of ``shard`` with ``rows`` in one atomic commit, once per ``task_id``.

        The commit removes the files that hold the shard's rows and adds the new rows (and
        the other shards' rows of those files, rewritten) at once: no version holds both or
        neither. Earlier versions keep their files, so time travel still reads the old rows.
        Parameters, result and errors are :meth:`commit_shard`'s; a replace by rows equal to
        those the shard holds, in the same objects, adds nothing (in new objects, it replaces
        them: a damaged shard rebuilt).
        """
        return self._commit(rows, shard=shard, task_id=task_id, lineage=lineage, replace=True, tries=tries)

    def _commit(self, rows: pl.DataFrame, *, shard: int, task_id: str, lineage: Lineage, replace: bool,
                tries: int) -> CommitResult:
        """:meth:`commit_shard` or (``replace``) :meth:`replace_shard`."""
        check_task(shard=shard, task_id=task_id, lineage=lineage)
        check_rows(rows, self.input_schema)
        app_id = APP_PREFIX + task_id
        data = to_stored(rows.with_columns(
            pl.lit(lineage.params_hash).alias("params_hash"), pl.lit(lineage.code_version).alias("code_version"),
            pl.lit(lineage.run_id).alias("run_id"), pl.lit(task_id).alias("task_id"),
            pl.lit(shard, pl.Int64).alias("shard"),
        )).sort(PARTITION, *self.schemes, "clip_id")
        ours = content_digest(data)
        adds: list[Any] = []
        expected: str | None = None
        seen: dict[str, pl.DataFrame] = {}
        try:
            for attempt in range(max(1, tries)):
                dt = self._load(create=True)
                if dt.transaction_version(app_id) is not None:
                    return self._skip(adds, version=int(dt.version()), attempt=attempt)
                held = self._held(dt, shard, seen=seen)
                expected = held.state if expected is None else expected
                note = self._unchanged(held, ours=ours, shard=shard, replace=replace, raced=held.state != expected,
                                       objects="\n".join(sorted(set(data["object_key"].to_list()))))
                if note:
                    return self._skip(adds, version=int(dt.version()), attempt=attempt, note=note)
                adds = adds or self._write(data)
                if self._commit_once(dt, adds=adds, held=held, replace=replace, app_id=app_id,
                                     meta=commit_metadata(shard=shard, task_id=task_id, lineage=lineage,
                                                          rows=data.height,
                                                          removed=held.rows.height if replace else None)):
                    return CommitResult(version=self._version_of(dt, task_id), committed=True, rows=data.height,
                                        retries=attempt, removed=held.rows.height if replace else 0)
        except BaseException:
            self._discard(adds)
            raise
        self._discard(adds)
        raise StoreError(f"shard {shard} (task {task_id}) lost {tries} commits in a row to concurrent writers of "
                         f"{self.uri}; run the task again")

    def _unchanged(self, held: _Held, *, ours: str, shard: int, replace: bool, raced: bool, objects: str) -> str:
        """Why the shard's rows stay as they are ("" when the commit goes ahead).

        A replace by the same rows in other ``objects`` (a damaged shard rebuilt) goes ahead,
        unless it raced another commit of the shard.
        Raises StoreError for an append onto a shard that holds other rows."""
        if held.rows.is_empty() and not raced:
            return ""
        same = not held.rows.is_empty() and content_digest(held.rows) == ours
        same = same and (not replace or raced or held.state == objects)
        if same:
            return f"already published: shard {shard} holds these rows (task {held.tasks()}); nothing added"
        if raced:
            return (f"shard {shard} was changed by a concurrent commit (task {held.tasks()}) while this task ran; "
                    "nothing committed: run it again to replace its rows")
        if replace:
            return ""
        raise StoreError(f"shard {shard} of {self.uri} holds other rows (task {held.tasks()}): an append would add "
                         "the shard twice; replace its rows (replace_shard)")

    def _skip(self, adds: list[Any], *, version: int, attempt: int, note: str = "") -> CommitResult:
        """The result of a commit that adds nothing; the files written for it are deleted."""
        self._discard(adds)
        return CommitResult(version=version, committed=False, rows=0, retries=attempt, note=note)

    def _held(self, dt: Any, shard: int, *, seen: dict[str, pl.DataFrame]) -> _Held:
        """What the loaded version ``dt`` holds of ``shard`` (files skipped by their statistics);
        ``seen``: the files read by earlier tries, by path (a data file never changes)."""
        files = [f for f in lake_files.data_files(dt, string_columns=()) if f.may_hold(shard)]
        cols = list(self.stored_schema)
        new = [f for f in files if f.path not in seen]
        seen.update({f.path: df.select(cols) for f, df in zip(new, self._read(new))})
        mine = pl.col("shard") == shard
        pairs = [(f, seen[f.path]) for f in files if (seen[f.path]["shard"] == shard).any()]
        empty = pl.DataFrame(schema=self.stored_schema)
        return _Held(files=[f for f, _ in pairs],
                     rows=pl.concat([df.filter(mine) for _, df in pairs]) if pairs else empty,
                     others=pl.concat([df.filter(~mine) for _, df in pairs]) if pairs else empty)

    def _write(self, data: pl.DataFrame, *, data_change: bool = True, split_by: str | None = None) -> list[Any]:
        """Write ``data``'s files; their add actions (nothing written for no rows)."""
        if data.is_empty():
            return []
        return lake_files.write_files(storage=self.storage, data=data, data_change=data_change, split_by=split_by)

    def _commit_once(self, dt: Any, *, adds: list[Any], held: _Held, replace: bool, app_id: str,
                     meta: dict[str, str]) -> bool:
        """Commit ``adds`` on the loaded snapshot ``dt``, and for a ``replace`` remove the files
        of the shard's rows ``held``, their other rows rewritten; False when a concurrent commit won."""
        from deltalake import CommitProperties, Transaction
        from deltalake.exceptions import CommitFailedError, DeltaError
        from deltalake.transaction import RemoveAction

        now = int(time.time() * 1000)
        shard, task_id = meta[f"{META_PREFIX}shard"], meta[f"{META_PREFIX}task_id"]
        state = hashlib.sha256(f"{shard}\n{held.state}".encode()).hexdigest()[:40]
        txn = [Transaction(app_id=app_id, version=1, last_updated=now),
               Transaction(app_id=STATE_PREFIX + state, version=1, last_updated=now)]
        # the version it read: a commit with a later version was rebased over others
        props = CommitProperties(custom_metadata={**meta, f"{META_PREFIX}read_version": str(dt.version())},
                                 app_transactions=txn)
        moved = self._write(held.others) if replace else []
        removes = [RemoveAction(path=f.path, data_change=True, deletion_timestamp=now, size=f.size,
                                partition_values={PARTITION: str(f.label)}) for f in (held.files if replace else [])]
        schema = pl.DataFrame(schema=self.stored_schema).to_arrow().schema
        try:
            # the loaded snapshot is the commit's read version: a commit of the same task or
            # of the same shard state after it is a conflict the library detects
            dt.create_write_transaction([*adds, *moved, *removes], "append", schema, partition_by=[PARTITION],
                                        commit_properties=props)
        except CommitFailedError:
            self._discard(moved)
            return False
        except (DeltaError, OSError) as exc:
            self._discard(moved)
            raise StoreError(f"cannot commit shard {shard} (task {task_id}) to {self.uri} ({first_line(exc)}); "
                             "run the task again") from exc
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
        """Delete the files a commit wrote, unless the newest version references them (a
        commit reported failed that took effect); left for vacuum if that is unknown."""
        if not actions:
            return
        try:
            referenced = {f.path for f in lake_files.data_files(self._load(), string_columns=())}
        except (StoreError, OSError):
            return
        lake_files.discard(storage=self.storage, actions=actions, referenced=referenced)
