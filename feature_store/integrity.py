"""Checksums written with everything the stores hold, and checked when it is read.

* **HDF5 rows.** Every row of every HDF5 array carries an xxh3-64 digest of its stored bytes
  (the values in the stored dtype, after decompression), recorded in the generation's
  ``index.parquet`` as the column ``xxh3_<array>``; readers check each row they serve. Files
  are written in HDF5's newest format, whose own metadata (object headers, chunk indexes,
  heaps) carries checksums that the library checks.
* **Parquet** files (index, tables, catalog, splits) are written with page checksums
  (CRC32) and read with their verification on, without schema metadata that a damaged byte
  could silently rename; readers also check the columns they need are there.
* **JSON** files (registry, model records) carry a ``checksum`` of their own content.
* **Cache** entries: ``.npy`` files end with a digest of their data; ``.npz`` files are zip
  archives, whose CRC32 is checked by the zip reader.

A mismatch raises :class:`IntegrityError`: one line naming the file, the clip where there is
one, and what to do. NumPy, pyarrow and xxhash only (workers import this module).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from feature_store.errors import StoreError

#: Index column prefix of the per-row digests of an HDF5 array.
DIGEST_PREFIX = "xxh3_"
#: Key of the checksum inside a checked JSON file.
JSON_CHECKSUM_KEY = "checksum"
#: What to do about damaged feature-store files.
REPAIR_FEATURES = "repair it with `gtzan features verify --repair`"


class IntegrityError(StoreError):
    """Stored bytes do not match the checksum written with them: the file is damaged."""


def digest(data: Any) -> int:
    """xxh3-64 of a contiguous buffer (bytes, memoryview, C-contiguous array)."""
    import xxhash

    return xxhash.xxh3_64_intdigest(memoryview(data).cast("B") if not isinstance(data, bytes) else data)


def row_digests(rows: np.ndarray | Sequence[np.ndarray], dtype: str | None = None) -> np.ndarray:
    """The digest of each row's bytes (in ``dtype``, default its own), as uint64.

    Parameters
    ----------
    rows : np.ndarray [shape=(n, ...)] or list of arrays
    dtype : str, optional
        The stored dtype: rows are converted first (as the HDF5 file stores them).
    """
    out = np.empty(len(rows), dtype=np.uint64)
    for i, row in enumerate(rows):
        out[i] = digest(np.ascontiguousarray(row, dtype=dtype))
    return out


def digest_column(array: str) -> str:
    """Index column of an array's row digests: ``xxh3_mel``."""
    return f"{DIGEST_PREFIX}{array}"


def check_rows(values: np.ndarray, expected: np.ndarray, *, path: Path, array: str,
               clip_ids: Sequence[str], remedy: str = REPAIR_FEATURES) -> None:
    """Raise :class:`IntegrityError` for the first row of ``values`` whose digest is not ``expected``."""
    for i in range(values.shape[0]):
        if digest(np.ascontiguousarray(values[i])) != int(expected[i]):
            raise IntegrityError(f"{path}: clip {clip_ids[i]} ({array}) fails its checksum, the stored data is "
                                 f"damaged; {remedy}")


# ---------------------------------------------------------------------------------------
# Parquet
# ---------------------------------------------------------------------------------------
def write_parquet(df: Any, path: str | os.PathLike[str], *, compression: str = "zstd",
                  use_dictionary: bool = True) -> Path:
    """Write a polars DataFrame to ``path`` with page checksums (not atomically).

    ``compression`` and ``use_dictionary`` are pyarrow's: zstd with dictionaries by default,
    the smallest files; lz4 without dictionaries for a file read more often than it is stored.
    """
    import pyarrow.parquet as pq

    pq.write_table(df.to_arrow(), str(path), compression=compression, use_dictionary=use_dictionary,
                   write_page_checksum=True, store_schema=False)
    return Path(path)


def read_parquet(path: str | os.PathLike[str], *, required: Iterable[str] = (), schema: Mapping[str, Any] | None = None,
                 optional: Iterable[str] = (), remedy: str = REPAIR_FEATURES) -> Any:
    """Read a Parquet file into polars, verifying its page checksums.

    Parameters
    ----------
    required : iterable of str
        Columns that must be there.
    schema : mapping of str to polars dtype, optional
        The exact columns and types the file must have (a damaged byte in the file's schema
        could otherwise rename or retype a column silently).
    optional : iterable of str
        Columns of ``schema`` that a file written by an older version may lack.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    IntegrityError
        If the file is damaged (a checksum, its structure, or its columns).
    """
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "No such file", str(path))
    try:
        # ParquetFile.read on one thread: read_table's dataset machinery and thread pool cost
        # twice the read itself on an index of a few hundred rows
        with pq.ParquetFile(str(path), page_checksum_verification=True) as pf:
            table = pf.read(use_threads=False)
        names = table.column_names
        df = pl.from_arrow(table)
    except (OSError, pa.ArrowException, ValueError, pl.exceptions.PolarsError) as exc:
        # UnicodeDecodeError (a damaged column name) is a ValueError
        raise IntegrityError(f"{path} cannot be read ({first_line(exc)}): the file is damaged; {remedy}") from exc
    missing = [c for c in required if c not in names]
    if missing:
        raise IntegrityError(f"{path} lacks the columns {missing}: the file is damaged; {remedy}")
    if schema is not None and dict(df.schema) != dict(schema):
        got = dict(df.schema)
        want = {k: v for k, v in schema.items() if k in got or k not in set(optional)}
        if got != want:
            odd = sorted(set(got) ^ set(want)) or [k for k in want if got[k] != want[k]]
            raise IntegrityError(f"{path} does not have the expected columns ({odd[:3]}): the file is damaged; "
                                 f"{remedy}")
    return df


# ---------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------
def _canonical(obj: dict[str, Any]) -> bytes:
    body = {k: v for k, v in obj.items() if k != JSON_CHECKSUM_KEY}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def with_checksum(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with a ``checksum`` (sha256 of its canonical JSON) added."""
    data = json.loads(json.dumps(obj, default=str))  # what a reader will load back
    data[JSON_CHECKSUM_KEY] = "sha256:" + hashlib.sha256(_canonical(data)).hexdigest()
    return data


def read_json(path: str | os.PathLike[str], *, remedy: str = REPAIR_FEATURES) -> dict[str, Any]:
    """Read a JSON object, checking its ``checksum`` when it has one (older files have none).

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    IntegrityError
        If it is not a JSON object or its checksum does not match.
    """
    path = Path(path)
    try:
        obj = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{path} cannot be read ({first_line(exc)}): the file is damaged; {remedy}") from exc
    if not isinstance(obj, dict):
        raise IntegrityError(f"{path} does not hold a JSON object: the file is damaged; {remedy}")
    stored = obj.get(JSON_CHECKSUM_KEY)
    if stored is None and any(_one_off(k, JSON_CHECKSUM_KEY) for k in obj):
        # a file written with a checksum whose key a flipped byte renamed, not an older file
        raise IntegrityError(f"{path} fails its checksum: the file is damaged; {remedy}")
    if stored is not None and stored != "sha256:" + hashlib.sha256(_canonical(obj)).hexdigest():
        raise IntegrityError(f"{path} fails its checksum: the file is damaged; {remedy}")
    return obj


def _one_off(a: str, b: str) -> bool:
    """Whether ``a`` differs from ``b`` in exactly one character (what one damaged byte does)."""
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (libraries' messages run over many lines)."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


# ---------------------------------------------------------------------------------------
# zip archives (.keras models, .npz arrays)
# ---------------------------------------------------------------------------------------
def check_archive(path: str | os.PathLike[str], *, remedy: str = REPAIR_FEATURES) -> None:
    """Check a zip archive (``.keras``, ``.npz``): not empty, a zip, every member's CRC32 intact.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    IntegrityError
        If it is empty, not an archive, or a member fails its CRC, naming the file.
    """
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "No such file", str(path))
    if path.stat().st_size == 0:
        raise IntegrityError(f"{path} is empty (0 bytes): the file is damaged; {remedy}")
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except Exception as exc:  # noqa: BLE001 - zipfile raises anything from a damaged header (NotImplementedError...)
        raise IntegrityError(f"{path} is not a readable archive ({first_line(exc)}): the file is damaged; "
                             f"{remedy}") from exc
    if bad is not None:
        raise IntegrityError(f"{path}: its member {bad} fails its CRC, the file is damaged; {remedy}")


