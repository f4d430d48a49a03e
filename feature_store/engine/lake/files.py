"""The data files of an index table: written with page checksums, read checked and bounded.

A local table's data files are written here, by the project's Parquet writer (page
checksums, CRC32), under a name that ends with the xxh3-128 of the file's bytes
(``part-<uuid>-<xxh3>.parquet``), and committed as Delta add actions; a reader checks the
bytes against the name before it parses them, which also covers the page headers and the
footer that page checksums leave out. delta-rs's own writer, used for tables in object
storage, writes neither.

A file's path comes from the table's commit log, which a hostile local user could edit: a
path is taken only when it is a plain relative path of the form the table writes, it must
resolve inside the table's folder, and its size must match the size the log recorded.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import xxhash

from feature_store import atomic, integrity
from feature_store.engine.lake.records import PARTITION
from feature_store.errors import StoreError

#: A data file path delta-rs writes (object storage): ``label=<int>/<name>.parquet``.
_DATA_PATH = re.compile(r"label=-?[0-9]{1,18}/[A-Za-z0-9_.-]{1,200}\.parquet")
#: A data file path a local table writes: ``label=<int>/part-<uuid>-<xxh3-128>.parquet``.
_LOCAL_PATH = re.compile(r"label=-?[0-9]{1,18}/part-[0-9a-f]{32}-(?P<digest>[0-9a-f]{32})\.parquet")
#: What to do about a damaged index table.
REPAIR_TABLE = "the index table is damaged; restore it or build the view again"


@dataclass(frozen=True)
class DataFile:
    """One data file of a table version: its table-relative path, size, rows and label.

    ``stats`` holds the file's min and max of each string column, as the log records them
    (``{column: (min, max)}``), for skipping files whose values a query cannot match.
    """

    path: str
    size: int
    rows: int
    label: int
    stats: dict[str, tuple[str, str]]


def data_files(dt: Any, *, string_columns: Sequence[str], local: bool) -> list[DataFile]:
    """Every data file of the loaded version ``dt`` (a ``deltalake.DeltaTable``); ``local``:
    of a local table, whose file names carry their digests."""
    import pyarrow as pa

    table = pa.table(dt.get_add_actions(flatten=True))
    cols = table.column_names
    pattern = _LOCAL_PATH if local else _DATA_PATH
    out = []
    for row in table.to_pylist():
        path = row["path"]
        if not isinstance(path, str) or not pattern.fullmatch(path) or ".." in path:
            raise StoreError(f"the log of {dt.table_uri} names the data file {str(path)[:80]!r}, which is not a path "
                             f"this table writes: {REPAIR_TABLE}")
        label = row[f"partition.{PARTITION}"]
        if label is None or not path.startswith(f"{PARTITION}={int(label)}/"):
            # rows hold no label: the log's partition value is the label of every row
            raise StoreError(f"the log of {dt.table_uri} gives the data file {path} the label {label!r}, not the "
                             f"label of its folder: {REPAIR_TABLE}")
        stats = {c: (row[f"min.{c}"], row[f"max.{c}"]) for c in string_columns
                 if f"min.{c}" in cols and f"max.{c}" in cols and row[f"min.{c}"] is not None}
        out.append(DataFile(path=path, size=int(row["size_bytes"]), rows=int(row["num_records"] or 0),
                            label=int(label), stats=stats))
    return out


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


def read_file(*, root: str, local: bool, f: DataFile, schema: dict[str, pl.DataType],
              storage_options: dict[str, str] | None) -> pl.DataFrame:
    """The rows of data file ``f`` of the table at ``root``, with its label column added.

    ``schema`` is the file's exact columns and types (the table's stored schema without the
    partition column). Local files are read by the project's bounded, checked Parquet reader.
    """
    if local:
        base = Path(root).resolve()
        path = (base / f.path).resolve()
        if not path.is_relative_to(base):
            raise StoreError(f"data file {f.path} of {root} resolves outside the table: {REPAIR_TABLE}")
        try:
            data = integrity.read_bounded(path, limit=integrity.MAX_PARQUET_BYTES, what="index table file",
                                          remedy=REPAIR_TABLE)
        except FileNotFoundError:
            raise StoreError(f"data file {f.path} of {root} is gone (vacuumed, or deleted by hand): that version "
                             "cannot be read; query a kept version") from None
        if len(data) != f.size:
            raise integrity.IntegrityError(f"data file {path} is {len(data)} bytes, the log says {f.size}: "
                                           f"{REPAIR_TABLE}")
        match = _LOCAL_PATH.fullmatch(f.path)
        if match is None or xxhash.xxh3_128_hexdigest(data) != match["digest"]:
            raise integrity.IntegrityError(f"data file {path} does not match the digest in its name: {REPAIR_TABLE}")
        df = _parse(data, path=path, schema=schema)
    else:
        df = _read_remote(root=root, f=f, schema=schema, storage_options=storage_options)
    if df.height != f.rows:
        raise integrity.IntegrityError(f"data file {f.path} of {root} has {df.height} rows, the log says {f.rows}: "
                                       f"{REPAIR_TABLE}")
    return df.with_columns(pl.lit(f.label, pl.Int64).alias(PARTITION))


def _parse(data: bytes, *, path: Path, schema: dict[str, pl.DataType]) -> pl.DataFrame:
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


def _read_remote(*, root: str, f: DataFile, schema: dict[str, pl.DataType],
                 storage_options: dict[str, str] | None) -> pl.DataFrame:
    """A data file in object storage, refused unread when the log gives it more than the bound."""
    if f.size > integrity.MAX_PARQUET_BYTES or f.rows > integrity.MAX_PARQUET_ROWS:
        raise integrity.IntegrityError(f"data file {f.path} of {root} is {f.size} bytes of {f.rows} rows by its "
                                       f"log, more than a table file may be: {REPAIR_TABLE}")
    try:
        df = pl.read_parquet(f"{root.rstrip('/')}/{f.path}", storage_options=storage_options)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise StoreError(f"data file {f.path} of {root} cannot be read ({integrity.first_line(exc)})") from exc
    if dict(df.schema) != schema:
        raise integrity.IntegrityError(f"data file {f.path} of {root} does not have the table's columns: "
                                       f"{REPAIR_TABLE}")
    return df


def write_local(*, root: str, data: pl.DataFrame, data_change: bool = True) -> list[Any]:
    """Write ``data`` (stored columns) as one checksummed file per label under the local
    table ``root``; return their add actions, to commit (until then no version has them).

    ``data_change`` is False for a compaction's files (the same rows, moved). Each file is
    written whole under a temporary name, then put in place under its digest's name and
    flushed to disk, so a commit never names a torn file.
    """
    from deltalake.transaction import AddAction

    actions = []
    for (label,), part in data.group_by(PARTITION, maintain_order=True):
        folder = Path(root) / f"{PARTITION}={int(label)}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = part.drop(PARTITION)
        tmp = atomic.tmp_name(folder / "part.parquet")
        try:
            integrity.write_parquet(rows, tmp)
            blob = integrity.read_bounded(tmp, limit=integrity.MAX_PARQUET_BYTES, what="index table file")
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        rel = f"{folder.name}/part-{uuid.uuid4().hex}-{xxhash.xxh3_128_hexdigest(blob)}.parquet"
        atomic.write_bytes_atomic(Path(root) / rel, blob)
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


def discard_local(*, root: str, actions: Sequence[Any], referenced: set[str]) -> None:
    """Delete the written files of ``actions`` that no version references (a commit lost)."""
    for a in actions:
        if a.path not in referenced:
            with contextlib.suppress(FileNotFoundError):
                (Path(root) / a.path).unlink()
