"""Writing one clip length of a view as songs' rows arrive, in any order.

A :class:`ClipWriter` creates the generation's HDF5 file at a temporary path with one
dataset per array of the view (plus ``clip_id``), takes each song's rows as they come
(compressed ``row`` chunks go in with ``write_direct_chunk``; vectors are gathered and
written at the end), and :meth:`ClipWriter.finish` checks that every row was written before
it moves the file, and the view's Parquet tables, into the generation folder. A
:class:`Flusher` keeps flushing the files being written in a background thread, so that
publishing finds little left to fsync.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from feature_store import h5 as h5lib
from feature_store import integrity
from feature_store.engine import chunk_table as chunk_tables
from feature_store.engine.codec import EncodedRows, encode_rows
from feature_store.engine.index import ids_digest
from feature_store.engine.view import BLOCK_ROWS, ArraySpec, FeatureView, Rows
from feature_store.errors import StoreError
from feature_store.integrity import digest_column, row_digests

#: Seconds between background flushes of the HDF5 files a build is writing.
FLUSH_SECONDS = 1.0


class Flusher:
    """While a build streams rows, flush the writers' files to disk in a background thread.

    Publishing a generation fsyncs its files; the data of a large store would otherwise all
    reach the disk then, with every CPU idle. Flushing every :data:`FLUSH_SECONDS` while
    the workers compute moves that wait into time the build spends anyway. The thread only
    calls ``fdatasync`` (the kernel orders it against concurrent writes); it is stopped
    before any file is closed.
    """

    def __init__(self, writers: Mapping[int, ClipWriter]) -> None:
        self.writers = writers
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="gtzan-flush", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(FLUSH_SECONDS):
            for w in list(self.writers.values()):
                with contextlib.suppress(Exception):
                    os.fdatasync(w.fd)

    def __enter__(self) -> Flusher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


class ClipWriter:
    """Writes the rows of one clip length of a view into a temporary HDF5 file.

    Parameters
    ----------
    path : path
        The temporary file to create.
    target : pl.DataFrame
        The index the generation will have (``sha256``, ``segment``, ``start_frame``,
        ``hdf5_row``, ``clip_id``...).
    clip_seconds : int
    view : FeatureView
    provenance : dict
        Recorded in the file's attributes.
    chunk_table : bool
        Put the table of every chunk's byte range in the file's userblock
        (:mod:`feature_store.engine.chunk_table`): shard objects, read a few rows at a time.
    """

    def __init__(self, path: Path, target: pl.DataFrame, clip_seconds: int, view: FeatureView,
                 provenance: Mapping[str, Any], *, chunk_table: bool = False) -> None:
        h5py = h5lib.h5py()
        self.path, self.target, self.view, self.clip_seconds = path, target, view, clip_seconds
        self.specs = view.array_specs(clip_seconds)
        n = target.height
        self._rows: dict[str, list[tuple[int, int]]] = {}
        self._clips: dict[str, dict[int, int]] = {}
        for sha, row, seg, start in target.select("sha256", "hdf5_row", "segment", "start_frame").iter_rows():
            self._rows.setdefault(sha, []).append((row, seg))
            self._clips.setdefault(sha, {})[seg] = view.view_frame(start)
        self.written = np.zeros(n, dtype=bool)
        self.digests = {s.name: np.zeros(n, np.uint64) for s in self.specs if s.hdf5}
        # no chunk cache: each chunk is written once and never read back by the writer; the
        # newest file format checksums HDF5's own metadata (object headers, chunk indexes)
        steps = [1 if s.chunking == "row" else min(n, BLOCK_ROWS) for s in self.specs if s.hdf5]
        self.userblock = (chunk_tables.userblock_bytes(n, [chunk_tables.chunk_count(n, k) for k in steps])
                          if chunk_table and n else 0)
        self.file = h5py.File(path, "w", rdcc_nbytes=0, libver="latest", userblock_size=self.userblock)
        self.fd: int = self.file.id.get_vfd_handle()
        self.datasets = {s.name: self._create(s, n) for s in self.specs if s.hdf5}
        self.buffers = {s.name: np.zeros((n, *s.shape), np.float32) for s in self.specs
                        if not (s.hdf5 and s.chunking == "row")}
        self.file.create_dataset("clip_id", data=np.array(target["clip_id"].to_list(), dtype=object),
                                 dtype=h5py.string_dtype())
        attrs = {
            "view": view.name, "view_hash": view.hash(), "params": json.dumps(_params_dict(view), sort_keys=True),
            "params_hash": view.clip_params.hash(), "clip_seconds": clip_seconds,
            "compression": h5lib.COMPRESSION_NAME, "index_sha256": ids_digest(target["clip_id"].to_list()),
            **provenance, **view.hdf5_attrs(clip_seconds),
        }
        for k, v in attrs.items():
            self.file.attrs[k] = v

    def _create(self, spec: ArraySpec, n: int) -> Any:
        chunks = (1, *spec.shape) if spec.chunking == "row" else (min(n, BLOCK_ROWS), *spec.shape)
        return self.file.create_dataset(spec.name, shape=(n, *spec.shape), dtype=spec.dtype,
                                        chunks=chunks if n else None, **(h5lib.compression() if n else {}))

    def clips(self, sha256: str) -> list[tuple[int, int]]:
        """``(segment, view-grid start frame)`` of the song's clips, in segment order."""
        return sorted(self._clips.get(sha256, {}).items())

    def starts(self, sha256: str) -> list[int]:
        """The song's clips' start frames (view grid), in segment order."""
        return [start for _, start in self.clips(sha256)]

    def add(self, sha256: str, rows: Rows) -> int:
        """Write the song's rows (in the order of :meth:`clips`); returns how many rows."""
        return self.add_encoded(sha256, encode_rows(self.specs, rows))

    def add_encoded(self, sha256: str, enc: EncodedRows) -> int:
        """Write the song's rows from :func:`~feature_store.engine.codec.encode_rows` output."""
        rows = self._rows.get(sha256, ())
        position = {seg: i for i, (seg, _) in enumerate(self.clips(sha256))}
        payload = memoryview(enc.payload)
        for row, seg in rows:
            i = position[seg]
            for name, where in enc.chunks.items():
                offset, length = where[i]
                self.datasets[name].id.write_direct_chunk((row,) + (0,) * (self.datasets[name].ndim - 1),
                                                          payload[offset: offset + length])
                self.digests[name][row] = enc.digests[name][i]
            for name, values in enc.values.items():
                self.buffers[name][row] = values[i]
            self.written[row] = True
        return len(rows)

    def finish(self, dest: Path) -> pl.DataFrame:
        """Write the gathered arrays, close the file and move it and the tables into ``dest``.

        Returns the generation's index: the target with the rows' digests (``xxh3_<array>``).
        """
        if not self.written.all():
            missing = self.target.filter(pl.Series(~self.written))["clip_id"].head(3).to_list()
            raise StoreError(f"{int((~self.written).sum())} clips were never written, e.g. {missing}")
        for spec in self.specs:
            if spec.hdf5 and spec.chunking != "row":
                stored = self.buffers[spec.name].astype(spec.dtype, copy=False)
                self.digests[spec.name] = row_digests(stored)
                if self.target.height:
                    self.datasets[spec.name][...] = stored
        if self.userblock:
            chunk_tables.write_table(self.file, self.path, names=list(self.datasets), view_hash=self.view.hash(),
                                     clip_seconds=self.clip_seconds, clip_ids=self.target["clip_id"].to_list(),
                                     userblock=self.userblock)
        else:
            self.file.close()
        os.replace(self.path, dest / self.view.data_file)
        t = self.target
        for spec in self.specs:
            if spec.columns is not None:
                values = self.buffers[spec.name]
                cols: dict[str, Any] = {"clip_id": t["clip_id"], "song_id": t["song_id"], "genre": t["genre"]}
                cols.update({c: values[:, j] for j, c in enumerate(spec.columns)})
                integrity.write_parquet(pl.DataFrame(cols), dest / f"{spec.name}.parquet")
        return with_digests(t, self.digests)

    def abort(self) -> None:
        """Close and delete the temporary file (nothing when :meth:`finish` moved it)."""
        with contextlib.suppress(Exception):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _params_dict(view: FeatureView) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(view.params)


def with_digests(index: pl.DataFrame, digests: Mapping[str, np.ndarray]) -> pl.DataFrame:
    """``index`` with one ``xxh3_<array>`` column of row digests per HDF5 array."""
    return index.with_columns([pl.Series(digest_column(name), d, dtype=pl.UInt64) for name, d in digests.items()])
