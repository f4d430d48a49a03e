"""Ingest: catalog a GTZAN folder and write the catalog and split tables into a store root."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import polars as pl

from feature_store import catalog as _catalog
from feature_store import splits as _splits
from feature_store.store import CATALOG_FILE, SPLITS_FILE


@dataclasses.dataclass
class IngestResult:
    """Tables and paths written by :func:`ingest`."""

    catalog: pl.DataFrame
    splits: pl.DataFrame
    catalog_path: Path
    splits_path: Path
    layout: str
    genre_root: Path

    @property
    def quarantined(self) -> pl.DataFrame:
        return self.catalog.filter(pl.col("status") == "quarantined").select("song_id", "path", "reason")


def ingest(
    audio_root: str | os.PathLike[str],
    store_root: str | os.PathLike[str],
    *,
    k: int = 5,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> IngestResult:
    """Catalog ``audio_root`` and write ``catalog.parquet``, ``splits.parquet`` and the record
    of the genres folder they were made from (``audio_source.json``, which repairs read).

    Parameters
    ----------
    audio_root : path
        A GTZAN copy in either layout, or its genres folder.
    store_root : path
        Where the tables are written (atomically).
    k, seed : int
        Folds and seed of the ``stratified`` scheme.
    progress : callable(done, total), optional

    Raises
    ------
    feature_store.errors.ParameterError
        If ``audio_root`` is missing or holds no audio.
    """
    genre_root, layout = _catalog.find_genre_root(audio_root)
    cat = _catalog.scan(genre_root, progress=progress)
    spl = _splits.make_splits(cat, k=k, seed=seed)
    store_root = Path(store_root)
    store_root.mkdir(parents=True, exist_ok=True)
    cpath = _catalog.write_catalog(cat, store_root / CATALOG_FILE)
    spath = _splits.write_splits(spl, store_root / SPLITS_FILE)
    _catalog.write_audio_source(store_root, genre_root)
    return IngestResult(cat, spl, cpath, spath, layout, genre_root)
