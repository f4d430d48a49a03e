"""Checksums written with everything the stores hold, and checked when it is read.

* **HDF5 rows.** Every row of every HDF5 array carries an xxh3-64 digest of its stored bytes
  (the values in the stored dtype, after decompression), recorded in the generation's
  ``index.parquet`` as the column ``xxh3_<array>``; readers check each row they serve. Files
  are written in HDF5's newest format, whose own metadata (object headers, chunk indexes,
  heaps) carries checksums that the library checks.
* **Parquet** files (index, tables, catalog, splits) are written with page checksums
  (CRC32) and read with their verification on, without schema metadata that a damaged byte
  could silently rename; readers also check the columns they need are there.
* **JSON** files (registry, model records, manifests) carry a ``checksum`` of their own
  content; a file without one is refused (never taken for an older file).
* **Cache** entries: ``.npy`` files end with a digest of their data; ``.npz`` files are zip
  archives, whose CRC32 is checked by the zip reader.
* **Manifests** (``manifest.json``) list the sha256 and size of every file of a published
  generation (:mod:`feature_store.manifest`).

Every reader here bounds what it reads by the file's size on disk, or by what an archive's
directory or a header says, *before* it parses or allocates (:data:`MAX_JSON_BYTES`,
:data:`MAX_NPZ_BYTES`, :data:`MAX_PARQUET_BYTES`, :data:`MAX_PARQUET_ROWS`): memory never
depends on what a crafted file claims.

A mismatch raises :class:`IntegrityError`: one line naming the file, the clip where there is
one, and what to do. NumPy, pyarrow and xxhash only (workers import this module).
"""

from __future__ import annotations

import hashlib
import json
import math
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
#: Largest JSON file read back (records and registries are a few hundred KB at most).
MAX_JSON_BYTES = 4 << 20
#: Largest ``.npz`` archive read back: each member and all of them, uncompressed.
MAX_NPZ_BYTES = 512 << 20
#: Members of an ``.npz`` archive read back at most.
MAX_NPZ_MEMBERS = 256
#: Largest Parquet file read back, and its largest row count and uncompressed size.
MAX_PARQUET_BYTES = 512 << 20
MAX_PARQUET_ROWS = 20_000_000
MAX_PARQUET_UNCOMPRESSED = 2 << 30


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
                 optional: Iterable[str] = (), remedy: str = REPAIR_FEATURES,
                 listed: tuple[Mapping[str, Any], str] | None = None) -> Any:
    """Read a Parquet file into polars, verifying its page checksums.

    Parameters
    ----------
    listed : (entry, listing), optional
        The file's entry in a manifest (``{"bytes": int, "sha256": hex}``) and the name of that
        manifest for messages. The file is then read into memory once, its size and sha256
        checked, and those same bytes parsed: no second read, and no moment between the check
        and the parse in which the file could be swapped.
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

    import stat

    path = Path(path)
    st = os.stat(path)  # one stat: FileNotFoundError when there is no such file
    if not stat.S_ISREG(st.st_mode):
        raise FileNotFoundError(2, "No such file", str(path))
    if st.st_size > MAX_PARQUET_BYTES:
        raise IntegrityError(f"{path} is {st.st_size} bytes, more than the {MAX_PARQUET_BYTES} a table may "
                             f"have: the file is damaged; {remedy}")
    source: Any = str(path) if listed is None else pa.BufferReader(_listed_bytes(path, *listed, remedy=remedy))
    try:
        # ParquetFile.read on one thread: read_table's dataset machinery and thread pool cost
        # twice the read itself on an index of a few hundred rows
        with pq.ParquetFile(source, page_checksum_verification=True) as pf:
            _parquet_bounds(path, pf, remedy)
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


def _listed_bytes(path: Path, entry: Mapping[str, Any], listing: str, *, remedy: str) -> bytes:
    """The bytes of ``path``, read once, if their size and sha256 are those of its ``entry``."""
    import hashlib

    size = int(entry["bytes"])
    with open(path, "rb") as fh:
        data = fh.read(min(size, MAX_PARQUET_BYTES) + 1)  # one byte more tells a grown file
        actual = os.fstat(fh.fileno()).st_size
    if len(data) != size:
        raise IntegrityError(f"{path} is {actual} bytes, not the {size} listed in {listing}: the file was changed or "
                             f"damaged; {remedy}")
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise IntegrityError(f"{path} does not match its sha256 in {listing}: the file was changed or damaged; "
                             f"{remedy}")
    return data


def _parquet_bounds(path: Path, pf: Any, remedy: str) -> None:
    """Refuse a Parquet file whose footer claims more rows or bytes than any the project writes."""
    meta = pf.metadata
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if meta.num_rows > MAX_PARQUET_ROWS or size > MAX_PARQUET_UNCOMPRESSED:
        raise IntegrityError(f"{path} claims {meta.num_rows} rows of {size} bytes, more than a table may hold: "
                             f"the file is damaged; {remedy}")


# ---------------------------------------------------------------------------------------
# bounded reads
# ---------------------------------------------------------------------------------------
def read_bounded(path: str | os.PathLike[str], *, limit: int, what: str = "file",
                 remedy: str = REPAIR_FEATURES) -> bytes:
    """The bytes of the regular file ``path``, refused unread when it holds more than ``limit``.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    IntegrityError
        If it is not a regular file, or larger than ``limit`` bytes.
    """
    import stat

    path = Path(path)
    # O_NONBLOCK: a FIFO planted in the file's place must not hang the reader
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IntegrityError(f"{path} is not a regular file: {remedy}")
        if st.st_size > limit:
            raise IntegrityError(f"{path} is {st.st_size} bytes, more than the {limit} a {what} may have: the file "
                                 f"is damaged; {remedy}")
        data = fh.read(limit + 1)
    if len(data) > limit:  # it grew while read
        raise IntegrityError(f"{path} is more than the {limit} bytes a {what} may have: the file is damaged; {remedy}")
    return data


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


def read_json(path: str | os.PathLike[str], *, remedy: str = REPAIR_FEATURES,
              max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """Read a JSON object of at most ``max_bytes``, checking its ``checksum``.

    A file without a checksum is refused like a damaged one: a file the project writes
    always has one, and deleting it must not turn the check off.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    IntegrityError
        If it is too large, not a JSON object, has no checksum or fails it.
    """
    path = Path(path)
    try:
        obj = json.loads(read_bounded(path, limit=max_bytes, what="JSON file", remedy=remedy))
    except (FileNotFoundError, IntegrityError):
        raise
    except (OSError, ValueError, RecursionError) as exc:
        raise IntegrityError(f"{path} cannot be read ({first_line(exc)}): the file is damaged; {remedy}") from exc
    if not isinstance(obj, dict):
        raise IntegrityError(f"{path} does not hold a JSON object: the file is damaged; {remedy}")
    stored = obj.get(JSON_CHECKSUM_KEY)
    if stored is None:
        if any(_one_off(k, JSON_CHECKSUM_KEY) for k in obj):
            # a file written with a checksum whose key a flipped byte renamed
            raise IntegrityError(f"{path} fails its checksum: the file is damaged; {remedy}")
        raise IntegrityError(f"{path} has no checksum (edited, or written by an older version): it cannot be "
                             f"trusted; {remedy}")
    if stored != "sha256:" + hashlib.sha256(_canonical(obj)).hexdigest():
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
def _nonempty_file(path: str | os.PathLike[str], remedy: str) -> Path:
    """``path`` as a Path, or FileNotFoundError / IntegrityError (empty: the file is damaged)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "No such file", str(path))
    if path.stat().st_size == 0:
        raise IntegrityError(f"{path} is empty (0 bytes): the file is damaged; {remedy}")
    return path


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

    path = _nonempty_file(path, remedy)
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except Exception as exc:  # noqa: BLE001 - zipfile raises anything from a damaged header (NotImplementedError...)
        raise IntegrityError(f"{path} is not a readable archive ({first_line(exc)}): the file is damaged; "
                             f"{remedy}") from exc
    if bad is not None:
        raise IntegrityError(f"{path}: its member {bad} fails its CRC, the file is damaged; {remedy}")




def read_npz(path: str | os.PathLike[str], *, max_bytes: int = MAX_NPZ_BYTES,
             remedy: str = REPAIR_FEATURES) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive, bounded before anything is decompressed.

    The zip directory's member sizes (each and their total, at most ``max_bytes``) are checked
    first, then each member's ``.npy`` header must describe exactly the bytes the directory
    declares (the zip reader stops at the declared size and checks the CRC); no object arrays.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    IntegrityError
        If the archive is larger than allowed or damaged, naming the file.
    """
    import zipfile

    path = _nonempty_file(path, remedy)
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            total = sum(i.file_size for i in infos)
            if len(infos) > MAX_NPZ_MEMBERS or total > max_bytes:
                raise IntegrityError(f"{path} claims {len(infos)} arrays of {total} bytes uncompressed, more than the "
                                     f"{max_bytes} allowed: the file is damaged; {remedy}")
            out = {}
            for info in infos:
                _check_npy_header(z, info, path, remedy)
                with z.open(info) as fh:
                    out[info.filename.removesuffix(".npy")] = np.lib.format.read_array(fh, allow_pickle=False)
            return out
    except IntegrityError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile and numpy raise anything on a damaged archive
        raise IntegrityError(f"{path} cannot be read ({first_line(exc)}): the file is damaged; {remedy}") from exc


def _check_npy_header(z: Any, info: Any, path: Path, remedy: str) -> None:
    """Refuse a member whose ``.npy`` header claims other bytes than the zip directory declares."""
    fmt = np.lib.format
    with z.open(info) as fh:
        version = fmt.read_magic(fh)
        if version not in ((1, 0), (2, 0)):  # what np.save writes for plain numeric arrays
            raise IntegrityError(f"{path}: its member {info.filename} is in .npy format {version}, not one the "
                                 f"project writes: the file is damaged; {remedy}")
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read_header(fh)
        header = fh.tell()
    if dtype.hasobject or header + math.prod(shape) * dtype.itemsize != info.file_size:
        raise IntegrityError(f"{path}: its member {info.filename} is not the array its header describes: the file "
                             f"is damaged; {remedy}")
