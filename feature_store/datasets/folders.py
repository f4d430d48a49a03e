"""A generic labelled corpus: ``DIR/<label>/<audio files>``, any labels.

Song ids are the files' paths under ``DIR`` (``<label>/<file name>``); the label set is the
folders' names, sorted. The ``seed`` and ``stratified`` schemes are computed per label;
``fault_filtered`` excludes every song.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from feature_store import catalog as _catalog
from feature_store import splits as _splits
from feature_store.engine.plugins import Dataset, register_dataset
from feature_store.errors import ParameterError

__all__ = ["DATASET", "find_root", "make_splits", "scan"]


def find_root(root: str | os.PathLike[str]) -> tuple[Path, str]:
    """``root`` itself once it holds a label folder; :class:`ParameterError` otherwise."""
    folder = _catalog.check_folder(root)
    if not any(p.is_dir() and not p.name.startswith(".") for p in folder.iterdir()):
        raise ParameterError(f"audio folder {str(root)!r} holds no label folders; expected DIR/<label>/<audio files>")
    return folder, "folders"


def scan(root: str | os.PathLike[str], *, progress: Callable[[int, int], None] | None = None,
         workers: int | None = None, labels_file: Any = None) -> pl.DataFrame:
    """Catalog every audio file of ``DIR/<label>/``."""
    return _catalog.scan(find_root(root)[0], progress=progress, workers=workers)


def make_splits(catalog: pl.DataFrame, *, k: int = 5, seed: int = 0, labels_file: Any = None,
                root: Any = None) -> pl.DataFrame:
    """The computed schemes (``fault_filtered``: every song excluded)."""
    return _splits.make_splits(catalog, k=k, seed=seed)


DATASET = register_dataset(Dataset(
    name="folders", summary="any labelled corpus: DIR/<label>/<audio files>",
    find_root=find_root, catalog=scan, splits=make_splits,
))
