"""The typed records and the row schema of an index table (:mod:`feature_store.engine.lake`).

Digests: an xxh3-64 row digest is an unsigned 64-bit integer, and neither Delta Lake nor
Parquet's logical types have an unsigned 64-bit column that every reader honours. The table
stores each digest column as **int64, bit-reinterpreted from uint64** (two's complement: a
digest of ``2**63`` or more is stored negative); :func:`to_stored` and :func:`from_stored`
convert, and the table's API speaks uint64 only, so no caller ever sees the stored form.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from feature_store.errors import ParameterError
from feature_store.integrity import DIGEST_PREFIX, digest_column

#: The partition column: one folder of data files per label, so that a query on a label
#: reads that label's files only.
PARTITION = "label"
#: Columns a shard task gives, before its split columns and digests (see :func:`row_schema`).
ID_COLUMNS: dict[str, pl.DataType] = {
    "song_id": pl.String(), "clip_id": pl.String(), "genre": pl.String(), PARTITION: pl.Int64(),
}
#: Where a row's arrays are: the shard's object and the row within it.
OBJECT_COLUMNS: dict[str, pl.DataType] = {"object_key": pl.String(), "object_row": pl.Int64()}
#: Lineage columns the table adds to every row of a commit.
LINEAGE_COLUMNS: dict[str, pl.DataType] = {
    "params_hash": pl.String(), "code_version": pl.String(), "run_id": pl.String(),
    "task_id": pl.String(), "shard": pl.Int64(),
}
#: Prefix of the commit metadata keys the table writes (its own, beside the library's).
META_PREFIX = "gtzan."
#: Task ids: what a Dagster run id, a step key and a partition key are made of.
_TASK_ID = re.compile(r"[A-Za-z0-9_.:|/@=+-]{1,200}")


@dataclass(frozen=True)
class Lineage:
    """What wrote a commit: the view's parameter hash, the code version and the run id."""

    params_hash: str
    code_version: str
    run_id: str

    def __post_init__(self) -> None:
        for name in ("params_hash", "code_version", "run_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or len(value) > 200 or "\n" in value:
                raise ParameterError(f"lineage {name} must be a one-line string of 1 to 200 characters, "
                                     f"got {value!r}")


@dataclass(frozen=True)
class CommitResult:
    """What :meth:`IndexTable.commit_shard` did.

    Attributes
    ----------
    version : int
        The version that holds the task's rows (its own commit, or the earlier one).
    committed : bool
        False when an earlier try of the same task had already committed (nothing added).
    rows : int
        Rows the task's commit holds (0 when ``committed`` is False).
    retries : int
        Commits lost to a concurrent writer before this one succeeded.
    removed : int
        Rows of the shard the commit removed (a replace; 0 for an append).
    note : str
        Why nothing was committed, when nothing was and it was not a retry of the same task
        (the shard already holds these rows, or a concurrent commit changed it).
    """

    version: int
    committed: bool
    rows: int
    retries: int
    removed: int = 0
    note: str = ""


@dataclass(frozen=True)
class TableVersion:
    """One version of an index table, from its commit log (:meth:`IndexTable.history`)."""

    version: int
    timestamp: datetime
    operation: str
    rows_added: int
    total_rows: int
    run_id: str | None
    task_id: str | None
    code_version: str | None
    params_hash: str | None
    shard: int | None
    rows_removed: int = 0


@dataclass(frozen=True)
class VacuumReport:
    """What :meth:`IndexTable.vacuum` kept and deleted (table-relative data file paths)."""

    kept_versions: tuple[int, ...]
    deleted: tuple[str, ...]


def digest_columns(arrays: Sequence[str]) -> list[str]:
    """The digest columns of ``arrays``: ``xxh3_<array>``."""
    return [digest_column(a) for a in arrays]


def input_schema(schemes: Sequence[str], arrays: Sequence[str]) -> dict[str, pl.DataType]:
    """The exact columns and types of the rows a shard task commits (digests as uint64)."""
    return {**ID_COLUMNS, **{s: pl.String() for s in schemes}, **OBJECT_COLUMNS,
            **{c: pl.UInt64() for c in digest_columns(arrays)}}


def row_schema(schemes: Sequence[str], arrays: Sequence[str]) -> dict[str, pl.DataType]:
    """The columns and types of a row read back: the input's, then the lineage columns."""
    return {**input_schema(schemes, arrays), **LINEAGE_COLUMNS}


def stored_schema(schemes: Sequence[str], arrays: Sequence[str]) -> dict[str, pl.DataType]:
    """The columns and types the table stores: :func:`row_schema` with int64 digests."""
    return {k: (pl.Int64() if k.startswith(DIGEST_PREFIX) else v) for k, v in row_schema(schemes, arrays).items()}


def to_stored(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with its uint64 digest columns bit-reinterpreted as int64 (as the table stores them)."""
    return df.with_columns(pl.col(c).reinterpret(signed=True) for c in df.columns if c.startswith(DIGEST_PREFIX))


def from_stored(df: pl.DataFrame) -> pl.DataFrame:
    """The inverse of :func:`to_stored`: int64 digest columns back to the uint64 digests."""
    return df.with_columns(pl.col(c).reinterpret(signed=False) for c in df.columns if c.startswith(DIGEST_PREFIX))


def check_rows(rows: pl.DataFrame, schema: dict[str, pl.DataType]) -> None:
    """Refuse rows of other columns or types, or with nulls, in one line."""
    if not isinstance(rows, pl.DataFrame):
        raise ParameterError(f"rows must be a polars DataFrame, got {type(rows).__name__}")
    got = dict(rows.schema)
    if got != schema:
        odd = sorted(set(got) ^ set(schema)) or [k for k in schema if got[k] != schema[k]]
        raise ParameterError(f"rows do not have the index table's columns and types (first differences: "
                             f"{odd[:3]}); expected {[f'{k}:{v}' for k, v in schema.items()]}")
    nulls = [c for c, n in zip(rows.columns, rows.null_count().row(0)) if n]
    if nulls:
        raise ParameterError(f"rows have nulls in {nulls[:3]}; every column of an index row is required")


def check_task(*, shard: int, task_id: str, lineage: Lineage) -> None:
    """Refuse a bad shard number, task id or lineage in one line."""
    if isinstance(shard, bool) or not isinstance(shard, int) or shard < 0:
        raise ParameterError(f"shard must be an int >= 0, got {shard!r}")
    if not isinstance(task_id, str) or not _TASK_ID.fullmatch(task_id):
        raise ParameterError(f"task_id must be 1 to 200 characters of letters, digits and _.:|/@=+-, got {task_id!r}")
    if not isinstance(lineage, Lineage):
        raise ParameterError(f"lineage must be a Lineage, got {type(lineage).__name__}")


def commit_metadata(*, shard: int, task_id: str, lineage: Lineage, rows: int, removed: int | None = None
                    ) -> dict[str, str]:
    """The custom metadata of a shard's commit (read back by :func:`meta_of`); ``removed``:
    the rows of the shard a replace removed (None: an append)."""
    meta = {f"{META_PREFIX}rows": str(rows), f"{META_PREFIX}run_id": lineage.run_id, f"{META_PREFIX}task_id": task_id,
            f"{META_PREFIX}code_version": lineage.code_version, f"{META_PREFIX}params_hash": lineage.params_hash,
            f"{META_PREFIX}shard": str(shard)}
    if removed is not None:
        meta.update({f"{META_PREFIX}operation": "replace", f"{META_PREFIX}removed": str(removed)})
    return meta


def meta_of(commit: dict[str, object], key: str) -> str | None:
    """One of :func:`commit_metadata`'s values in a commit of the log, or None."""
    value = commit.get(f"{META_PREFIX}{key}")
    return value if isinstance(value, str) else None


def rows_of(commit: dict[str, object]) -> int:
    """Rows a commit of the log added: a shard commit's own count, or delta-rs's metrics of
    its writes (a compaction, a vacuum: none)."""
    if commit.get("operation") != "WRITE" or meta_of(commit, "operation") == "compact":
        return 0
    own = meta_of(commit, "rows")
    if own is not None and own.isdigit():
        return int(own)
    metrics = commit.get("operationMetrics")
    return int(metrics.get("num_added_rows", 0) or 0) if isinstance(metrics, dict) else 0


def removed_of(commit: dict[str, object]) -> int:
    """Rows of a shard a commit of the log removed (a replace's), else 0."""
    own = meta_of(commit, "removed")
    return int(own) if own is not None and own.isdigit() else 0


#: Columns of a row that are not what a shard holds but where and by whom it was written.
PLACEMENT_COLUMNS = ("object_key", "object_row", "code_version", "run_id", "task_id", "shard")


def content_digest(rows: pl.DataFrame) -> str:
    """sha256 hex of a shard's rows without where and by whom they were written
    (:data:`PLACEMENT_COLUMNS`), in clip order: two builds of the same songs with the same
    parameters give the same digest, whatever objects and tasks hold them."""
    import hashlib

    cols = sorted(c for c in rows.columns if c not in PLACEMENT_COLUMNS)
    df = rows.select(cols).sort("clip_id")
    h = hashlib.sha256("\x1f".join(cols).encode())
    text = df.select(pl.concat_str([pl.col(c).cast(pl.String) for c in cols], separator="\x1f").alias("r"))
    for chunk in text.iter_slices(65536):
        h.update(("\n" + "\n".join(chunk["r"].to_list())).encode())
    return h.hexdigest()
