"""The data files of an index table: written with page checksums, read checked and bounded.

Every data file, local or in object storage, is written here, by the project's Parquet
writer (page checksums, CRC32), under a name that ends with the xxh3-128 of the file's
bytes (``label=<int>/part-<uuid>-<xxh3>.parquet``), put create-only through the table's
storage backend (:class:`~feature_store.engine.storage.Storage`), and committed as a Delta
add action; a reader fetches the bytes bounded and checks them against the name before it
parses them, which also covers the page headers and the footer that page checksums leave out.

A file's path comes from the table's commit log, which a hostile local user could edit: a
path is taken only when it is a plain relative path of the form the table writes, it must
resolve inside the table's folder, and its size must match the size the log recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import xxhash

from feature_store import integrity
from feature_store.engine.lake.records import PARTITION
from feature_store.engine.storage import LocalStorage, Storage
from feature_store.errors import StoreError

#: A data file path the table writes: ``label=<int>/part-<uuid>-<xxh3-128>.parquet``.
_DATA_PATH = re.compile(r"label=-?[0-9]{1,18}/part-[0-9a-f]{32}-(?P<digest>[0-9a-f]{32})\.parquet")
#: What to do about a damaged index table.
REPAIR_TABLE = "the index table is damaged; restore it or build the view again"


@dataclass(frozen=True)
class DataFile:
    """One data file of a table version: its table-relative path, size, rows and label.

    ``stats`` holds the file's min and max of each string column, as the log records them
    (``{column: (min, max)}``), for skipping files whose values a query cannot match;
    ``shards`` the min and max of its ``shard`` column (None where the log has none).
    """

    path: str
    size: int
    rows: int
    label: int
    stats: dict[str, tuple[str, str]]
    shards: tuple[int, int] | None = None

    def may_hold(self, shard: int) -> bool:
        """Whether the file may hold rows of ``shard`` (by its recorded statistics)."""
        return self.shards is None or self.shards[0] <= shard <= self.shards[1]


def data_files(dt: Any, *, string_columns: Sequence[str]) -> list[DataFile]:
    """Every data file of the loaded version ``dt`` (a ``deltalake.DeltaTable``)."""
    import pyarrow as pa

    table = pa.table(dt.get_add_actions(flatten=True))
    cols = table.column_names
    out = []
    for row in table.to_pylist():
        path = row["path"]
        if not isinstance(path, str) or not _DATA_PATH.fullmatch(path) or ".." in path:
            raise StoreError(f"the log of {dt.table_uri} names the data file {str(path)[:80]!r}, which is not a path "
                             f"this table writes: {REPAIR_TABLE}")
        label = row[f"partition.{PARTITION}"]
        if label is None or not path.startswith(f"{PARTITION}={int(label)}/"):
            # rows hold no label: the log's partition value is the label of every row
            raise StoreError(f"the log of {dt.table_uri} gives the data file {path} the label {label!r}, not the "
                             f"label of its folder: {REPAIR_TABLE}")
        stats = {c: (row[f"min.{c}"], row[f"max.{c}"]) for c in string_columns
                 if f"min.{c}" in cols and f"max.{c}" in cols and row[f"min.{c}"] is not None}
        lo, hi = row.get("min.shard"), row.get("max.shard")
        shards = (int(lo), int(hi)) if isinstance(lo, int) and isinstance(hi, int) else None
        out.append(DataFile(path=path, size=int(row["size_bytes"]), rows=int(row["num_records"] or 0),
                            label=int(label), stats=stats, shards=shards))
    return out


def settled(files: Sequence[DataFile], *, column: str | None) -> bool:
    """Whether a label's ``files`` are as a compaction leaves them: one file, or one file per
    value of ``column`` (each file's recorded minimum and maximum of it equal, no value twice)."""
    if column is None or any(column not in f.stats for f in files):
        return len(files) <= 1
    values = [f.stats[column] for f in files]
    return all(lo == hi for lo, hi in values) and len({lo for lo, _ in values}) == len(values)


def select(files: Sequence[DataFile], *, labels: Sequence[int] | None, column: str | None,
           values: Sequence[str] | None) -> list[DataFile]:
    """The files that may hold rows of ``labels`` whose ``column`` is one of ``values``.

    A file is skipped by its label (the partition) and by the min and max of ``column`` the
    log recorded for it; a file without recorded statistics is kept.
    """
    out = []
    for f in files:
        if labels is not None and f.label not in labels:
            continue
        if column is not None and values is not None and column in f.stats:
            lo, hi = f.stats[column]
            if not any(lo <= v <= hi for v in values):
                continue
        out.append(f)
    return out


def read_file(*, storage: Storage, f: DataFile, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """The rows of data file ``f`` of the table whose storage is ``storage``, with its label
    column added.

    ``schema`` is the file's exact columns and types (the table's stored schema without the
    partition column). The bytes are fetched bounded (refused unread when the log gives
    the file more than the bound), checked against the size the log recorded and the digest
    in the name, then parsed with page checksums verified.
    """
    root = storage.url
    if f.size > integrity.MAX_PARQUET_BYTES or f.rows > integrity.MAX_PARQUET_ROWS:
        raise integrity.IntegrityError(f"data file {f.path} of {root} is {f.size} bytes of {f.rows} rows by its "
                                       f"log, more than a table file may be: {REPAIR_TABLE}")
    if isinstance(storage, LocalStorage):  # no path out of the folder, through a symlink either
        base = Path(root).resolve()
        if not (base / f.path).resolve().is_relative_to(base):
            raise StoreError(f"data file {f.path} of {root} resolves outside the table: {REPAIR_TABLE}")
    try:
        data = storage.get(f.path, max_bytes=integrity.MAX_PARQUET_BYTES)
    except FileNotFoundError:
        raise StoreError(f"data file {f.path} of {root} is gone (vacuumed, or deleted by hand): that version "
                         "cannot be read; query a kept version") from None
    where = f"{root.rstrip('/')}/{f.path}"
    if len(data) != f.size:
        raise integrity.IntegrityError(f"data file {where} is {len(data)} bytes, the log says {f.size}: "
                                       f"{REPAIR_TABLE}")
    match = _DATA_PATH.fullmatch(f.path)
    if match is None or xxhash.xxh3_128_hexdigest(data) != match["digest"]:
        raise integrity.IntegrityError(f"data file {where} does not match the digest in its name: {REPAIR_TABLE}")
    df = _parse(data, path=where, schema=schema)
    if df.height != f.rows:
        raise integrity.IntegrityError(f"data file {where} has {df.height} rows, the log says {f.rows}: "
                                       f"{REPAIR_TABLE}")
    return df.with_columns(pl.lit(f.label, pl.Int64).alias(PARTITION))


def _parse(data: bytes, *, path: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Parse a data file's checked bytes: page checksums verified, bounded by its footer, and
    exactly the columns and types of ``schema``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True) as pf:
            meta = pf.metadata
            size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            if meta.num_rows > integrity.MAX_PARQUET_ROWS or size > integrity.MAX_PARQUET_UNCOMPRESSED:
                raise integrity.IntegrityError(f"{path} claims {meta.num_rows} rows of {size} bytes: {REPAIR_TABLE}")
            df = pl.from_arrow(pf.read(use_threads=False))
    except (OSError, pa.ArrowException, ValueError, pl.exceptions.PolarsError) as exc:
        raise integrity.IntegrityError(f"{path} cannot be read ({integrity.first_line(exc)}): {REPAIR_TABLE}") from exc
    if not isinstance(df, pl.DataFrame) or dict(df.schema) != schema:
        raise integrity.IntegrityError(f"{path} does not have the table's columns and types: {REPAIR_TABLE}")
    return df


def write_files(*, storage: Storage, data: pl.DataFrame, data_change: bool = True,
                split_by: str | None = None) -> list[Any]:
    """Write ``data`` (stored columns) as one checksummed file per label (and per value of the
    column ``split_by``, when given) into the table whose storage is ``storage``; return their
    add actions, to commit (until then no version has them).

    ``data_change`` is False for a compaction's files (the same rows, moved). Each file is
    written whole to a private temporary file, then put create-only under its digest's name
    (a local put is flushed to disk; an S3 put is whole or absent), so a commit never names
    a torn file.
    """
    from deltalake.transaction import AddAction

    actions = []
    for (label, *_), part in data.group_by(PARTITION, *([split_by] if split_by else []), maintain_order=True):
        rows = part.drop(PARTITION)
        fd, name = tempfile.mkstemp(prefix="gtzan-table-", suffix=".parquet")
        os.close(fd)
        try:
            integrity.write_parquet(rows, Path(name))
            blob = integrity.read_bounded(Path(name), limit=integrity.MAX_PARQUET_BYTES, what="index table file")
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
        rel = f"{PARTITION}={int(label)}/part-{uuid.uuid4().hex}-{xxhash.xxh3_128_hexdigest(blob)}.parquet"
        storage.put_new(rel, blob)
        actions.append(AddAction(path=rel, size=len(blob), partition_values={PARTITION: str(int(label))},
                                 modification_time=int(time.time() * 1000), data_change=data_change,
                                 stats=_stats(rows)))
    return actions


def _stats(rows: pl.DataFrame) -> str:
    """The Delta statistics of a file's rows: count, and min, max and nulls of each column."""
    cols = [c for c, t in rows.schema.items() if t in (pl.String, pl.Int64)]
    agg = rows.select(*(pl.col(c).min().alias(f"min.{c}") for c in cols), *(pl.col(c).max().alias(f"max.{c}")
                                                                             for c in cols)).row(0, named=True)
    return json.dumps({"numRecords": rows.height, "minValues": {c: agg[f"min.{c}"] for c in cols},
                       "maxValues": {c: agg[f"max.{c}"] for c in cols}, "nullCount": {c: 0 for c in cols}})


def discard(*, storage: Storage, actions: Sequence[Any], referenced: set[str]) -> None:
    """Delete the written files of ``actions`` that no version references (a commit lost)."""
    for a in actions:
        if a.path not in referenced:
            with contextlib.suppress(StoreError, FileNotFoundError):
                storage.delete(a.path)
