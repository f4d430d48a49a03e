"""Ingest: catalog a dataset's audio folder and write the catalog and split tables into a store root."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import polars as pl

from feature_store import catalog as _catalog
from feature_store import splits as _splits
from feature_store.engine.plugins import DEFAULT_DATASET, get_dataset, register_ingest
from feature_store.engine.store import CATALOG_FILE, SPLITS_FILE
from feature_store.errors import ParameterError
from feature_store.tables import label_order, write_audio_source


@dataclasses.dataclass
class IngestResult:
    """Tables and paths written by :func:`ingest`."""

    catalog: pl.DataFrame
    splits: pl.DataFrame
    catalog_path: Path
    splits_path: Path
    layout: str
    genre_root: Path
    dataset: str = DEFAULT_DATASET
    labels: tuple[str, ...] = ()

    @property
    def quarantined(self) -> pl.DataFrame:
        return self.catalog.filter(pl.col("status") == "quarantined").select("song_id", "path", "reason")


@dataclasses.dataclass(frozen=True)
class Cataloged:
    """What :func:`catalog_audio` wrote: the catalog, the folder, its layout, dataset and labels."""

    catalog: pl.DataFrame
    catalog_path: Path
    genre_root: Path
    layout: str
    dataset: str
    labels: tuple[str, ...]


def catalog_audio(
    audio_root: str | os.PathLike[str],
    store_root: str | os.PathLike[str],
    *,
    dataset: str = DEFAULT_DATASET,
    labels_file: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Cataloged:
    """Catalog ``audio_root`` as ``dataset`` and write ``catalog.parquet`` and the record of the
    folder, dataset and label set (``audio_source.json``) into ``store_root``: the first half of
    :func:`ingest`, and the ``audio_catalog`` asset.

    Raises
    ------
    feature_store.errors.ParameterError
        If ``audio_root`` is missing or holds no audio, the dataset is unknown, or its labels
        file is missing, bad, or given to a dataset that takes none.
    """
    ds = get_dataset(dataset)
    if ds.needs_labels_file and labels_file is None:
        raise ParameterError(f"the {ds.name} dataset needs its labels file: --labels FILE")
    if not ds.needs_labels_file and labels_file is not None:
        raise ParameterError(f"the {ds.name} dataset takes no labels file (--labels is for the csv dataset)")
    genre_root, layout = ds.find_root(audio_root)
    cat = ds.catalog(genre_root, progress=progress, labels_file=labels_file)
    labels = tuple(ds.labels or label_order(cat.filter(pl.col("status") == "ok")["genre"]))
    store_root = Path(store_root)
    store_root.mkdir(parents=True, exist_ok=True)
    cpath = _catalog.write_catalog(cat, store_root / CATALOG_FILE)
    write_audio_source(store_root, genre_root, dataset=ds.name, labels=labels, labels_file=labels_file)
    return Cataloged(cat, cpath, genre_root, layout, ds.name, labels)


def split_catalog(
    store_root: str | os.PathLike[str],
    catalog: pl.DataFrame,
    *,
    dataset: str = DEFAULT_DATASET,
    labels_file: str | os.PathLike[str] | None = None,
    genre_root: Path | None = None,
    k: int = 5,
    seed: int = 0,
) -> tuple[pl.DataFrame, Path]:
    """The split table of ``catalog``, made by ``dataset`` (the csv dataset reads the ``split``
    column of ``labels_file``, relative to ``genre_root``), written to the store's
    ``splits.parquet``: the second half of :func:`ingest`, and the ``song_splits`` asset.

    Returns
    -------
    (polars.DataFrame, Path)
        The split table and where it was written.
    """
    ds = get_dataset(dataset)
    spl = ds.splits(catalog, k=k, seed=seed, labels_file=labels_file, root=genre_root)
    return spl, _splits.write_splits(spl, Path(store_root) / SPLITS_FILE)


def ingest(
    audio_root: str | os.PathLike[str],
    store_root: str | os.PathLike[str],
    *,
    k: int = 5,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    dataset: str = DEFAULT_DATASET,
    labels_file: str | os.PathLike[str] | None = None,
) -> IngestResult:
    """Catalog ``audio_root`` and write ``catalog.parquet``, ``splits.parquet`` and the record
    of the folder, dataset and label set they were made from (``audio_source.json``, which
    builds and repairs read): :func:`catalog_audio`, then :func:`split_catalog`.

    Parameters
    ----------
    audio_root : path
        The dataset's audio folder (for ``gtzan``: a copy in either layout, or its genres folder).
    store_root : path
        Where the tables are written (atomically).
    k, seed : int
        Folds and seed of the ``stratified`` scheme.
    progress : callable(done, total), optional
    dataset : str
        A registered dataset (:mod:`feature_store.datasets`); default ``gtzan``.
    labels_file : path, optional
        The labels file of a dataset that needs one (``csv``).

    Raises
    ------
    feature_store.errors.ParameterError
        If ``audio_root`` is missing or holds no audio, the dataset is unknown, or its labels
        file is missing or bad.
    """
    done = catalog_audio(audio_root, store_root, dataset=dataset, labels_file=labels_file, progress=progress)
    spl, spath = split_catalog(store_root, done.catalog, dataset=done.dataset, labels_file=labels_file,
                               genre_root=done.genre_root, k=k, seed=seed)
    return IngestResult(done.catalog, spl, done.catalog_path, spath, done.layout, done.genre_root, done.dataset,
                        done.labels)


register_ingest(ingest)
