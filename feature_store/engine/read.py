"""Reading a published generation: its index and HDF5 rows, checked to belong together.

A generation never changes once published, so a reader may keep its index in memory and its
HDF5 file open until ``current`` moves on (:class:`OpenGenerations`). When a generation is
opened, the HDF5 file's ``clip_id`` rows must match the index (the writer records a digest of
them; older files are compared row by row), else the store is torn.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from feature_store import h5 as h5lib
from feature_store import integrity
from feature_store.engine.index import ids_digest, index_schema, read_index
from feature_store.engine.view import BLOCK_ROWS, ArraySpec, FeatureView
from feature_store.errors import StoreError
from feature_store.integrity import IntegrityError


def read_rows(ds: Any, rows: np.ndarray) -> np.ndarray:
    """Read sorted rows of an HDF5 dataset, one low-level read per contiguous run.

    Parameters
    ----------
    ds : h5py.Dataset
    rows : np.ndarray [shape=(n,), dtype=int64]
        Increasing row numbers.

    Returns
    -------
    np.ndarray [shape=(n, *ds.shape[1:]), dtype=ds.dtype]
    """
    out = np.empty((rows.size, *ds.shape[1:]), dtype=ds.dtype)
    if rows.size == 0:
        return out
    from h5py import h5s

    breaks = np.nonzero(np.diff(rows) != 1)[0] + 1
    fspace = ds.id.get_space()
    tail = tuple(ds.shape[1:])
    pos = 0
    # h5py's low-level read straight into the output: its slicing machinery costs more than
    # reading a few chunks
    for run in np.split(rows, breaks):
        fspace.select_hyperslab((int(run[0]),) + (0,) * len(tail), (run.size, *tail))
        ds.id.read(h5s.create_simple((run.size, *tail)), fspace, out[pos: pos + run.size])
        pos += run.size
    return out


def open_checked(gen: Path, view: FeatureView, clip_seconds: int) -> tuple[pl.DataFrame, Any]:
    """The index (in row order) and the open HDF5 file of generation ``gen`` of ``view``, checked.

    Raises
    ------
    StoreError
        If the HDF5 rows do not match the index (a torn store).
    FileNotFoundError, OSError
        If the generation was collected meanwhile (the caller retries).
    """
    h5 = open_h5(gen / view.data_file)
    try:
        source = read_index(gen, index_schema(view, clip_seconds))
        in_order = np.array_equal(source["hdf5_row"].to_numpy(), np.arange(source.height))
        if not in_order:
            source = source.sort("hdf5_row")  # the writer stores rows in order; older stores too
        ids = source["clip_id"].to_list()
        with damaged_h5(gen / view.data_file):
            digest = h5.attrs.get("index_sha256")
            same = digest == ids_digest(ids) if digest is not None else list(h5["clip_id"].asstr()[:]) == ids
            for spec in view.array_specs(clip_seconds):
                if spec.hdf5 and spec.name in h5:  # opening each dataset checks its object header
                    check_dataset(h5[spec.name], spec, source.height)
        if not same or not np.array_equal(source["hdf5_row"].to_numpy(), np.arange(source.height)):
            raise IntegrityError(f"torn store at {gen}: the rows of {view.data_file} do not match index.parquet; "
                                 f"{integrity.REPAIR_FEATURES}")
    except BaseException:
        h5.close()
        raise
    return source, h5


def check_dataset(ds: Any, spec: ArraySpec, rows: int) -> None:
    """Refuse a dataset whose shape, dtype or chunks are not those the index and the view say.

    Checked before any row is read: a crafted file claiming a huge shape or chunk would
    otherwise make the reader allocate what it claims.

    Raises
    ------
    IntegrityError
        Naming the file and what it claims.
    """
    want = (rows, *spec.shape)
    chunks = ds.chunks or ()
    bounded = len(chunks) == len(want) and chunks[0] <= max(BLOCK_ROWS, 1) and all(
        c <= w for c, w in zip(chunks[1:], want[1:], strict=True))
    if tuple(ds.shape) != want or ds.dtype != np.dtype(spec.dtype) or (rows and not bounded):
        raise IntegrityError(f"{ds.file.filename}: {spec.name} claims shape {tuple(ds.shape)} {ds.dtype} in chunks "
                             f"{chunks}, not {want} {spec.dtype} as the index and the view say: the file is damaged; "
                             f"{integrity.REPAIR_FEATURES}")


def open_h5(path: Path) -> Any:
    """Open an HDF5 file for reading; a damaged one is an :class:`IntegrityError` naming it."""
    if not path.exists():
        raise FileNotFoundError(2, "No such file", str(path))
    with damaged_h5(path):
        return h5lib.h5py().File(path, "r")


@contextlib.contextmanager
def damaged_h5(path: Path) -> Iterator[None]:
    """Turn what h5py raises on a damaged file (OSError, KeyError when HDF5's own metadata
    checksums fail...) into an :class:`IntegrityError` naming the file."""
    try:
        yield
    except (OSError, KeyError, RuntimeError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError) or not path.exists():
            raise
        raise IntegrityError(f"{path} cannot be read ({integrity.first_line(exc)}): the file is damaged; "
                             f"{integrity.REPAIR_FEATURES}") from exc


def read_checked(ds: Any, rows: np.ndarray, index: pl.DataFrame, array: str) -> np.ndarray:
    """:func:`read_rows`, each row checked against its digest in ``index`` (rows in index order).

    A chunk that does not decompress, or a row whose digest does not match, is an
    :class:`IntegrityError` naming the file and the clip. An index without digests (a store
    written before they existed) is read unchecked.
    """
    path = Path(ds.file.filename)
    with damaged_h5(path):
        values = read_rows(ds, rows)
    col = integrity.digest_column(array)
    if col in index.columns:
        integrity.check_rows(values, index[col].to_numpy(), path=path, array=array, clip_ids=index["clip_id"].to_list())
    return values


class OpenGenerations:
    """The generation a reader last opened per clip length, with its index and HDF5 file."""

    def __init__(self, view: FeatureView) -> None:
        self.view = view
        self._open: dict[str, tuple[Path, pl.DataFrame, Any]] = {}

    def get(self, gen: Path, clip_seconds: int) -> tuple[pl.DataFrame, Any]:
        """Index and HDF5 file of ``gen`` (a generation of ``clip_seconds``), opened (and checked) once."""
        key = gen.parent.name
        hit = self._open.get(key)
        if hit is not None and hit[0] == gen:
            return hit[1], hit[2]
        self.close(hit[0] if hit else None)
        source, h5 = open_checked(gen, self.view, clip_seconds)
        self._open[key] = (gen, source, h5)
        return source, h5

    def close(self, gen: Path | None = None) -> None:
        """Close ``gen`` (every generation when None)."""
        for key, (g, _, h5) in list(self._open.items()):
            if gen is None or g == gen:
                with contextlib.suppress(Exception):
                    h5.close()
                del self._open[key]


class RowReader:
    """Rows of one array of one generation, read on demand (streaming training).

    Parameters
    ----------
    gen : path
        A published generation of ``view`` at ``clip_seconds``.
    view : FeatureView
    clip_seconds : int
    array : str
        The HDF5 dataset.
    """

    def __init__(self, gen: Path, view: FeatureView, clip_seconds: int, array: str) -> None:
        self.gen, self.view, self.clip_seconds, self.array = gen, view, clip_seconds, array
        self._h5: Any = None
        self._open()

    def _open(self) -> None:
        self.index, self._h5 = open_checked(self.gen, self.view, self.clip_seconds)
        if self.array not in self._h5:
            self.close()
            raise StoreError(f"{self.gen / self.view.data_file} has no array {self.array!r}")
        self.ds = self._h5[self.array]

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The rows ``rows`` (any order, repeats allowed), in that order, in the stored dtype,
        each checked against its digest. A closed reader opens its generation again."""
        if self._h5 is None:
            self._open()
        rows = np.asarray(rows, dtype=np.int64)
        uniq, inverse = np.unique(rows, return_inverse=True)
        return read_checked(self.ds, uniq, self.index[uniq], self.array)[inverse]

    def close(self) -> None:
        if self._h5 is not None:
            with contextlib.suppress(Exception):
                self._h5.close()
            self._h5 = None

    def __enter__(self) -> RowReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
