"""The mel feature store: the ``mel`` view on the generic store engine.

:class:`FeatureStore` is :class:`~feature_store.engine.store.ViewStore` with the mel view
(:mod:`feature_store.views.mel`) and the names this project has always used: ``params``,
``summary()``, ``cache_file()`` and a three-field :class:`Tensors`. Layout, builds and
queries are the engine's (see :mod:`feature_store.engine.store`)::

    cache/mel-<spectral hash>/<sha256>.npy   full-length mel of each song (float32)
    features/mel-<params hash>/
        registry.json
        clip-05s/current -> gen-<id>/{mel.h5, index.parquet, summary.parquet}
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl

from feature_store.engine.build import BuildReport
from feature_store.engine.registry import REGISTRY_FILE
from feature_store.engine.store import (
    CATALOG_FILE,
    DEFAULT_LOCK_TIMEOUT,
    SPLITS_FILE,
    ViewStore,
    clip_dirname,
)
from feature_store.errors import ParameterError
from feature_store.params import FeatureParams

__all__ = [
    "CATALOG_FILE", "DEFAULT_LOCK_TIMEOUT", "REGISTRY_FILE", "SPLITS_FILE", "BuildReport", "FeatureStore",
    "Tensors", "clip_dirname",
]


class Tensors(NamedTuple):
    """Result of :meth:`FeatureStore.tensors`.

    Attributes
    ----------
    x : np.ndarray [shape=(clips, n_mels, frames)]
    y : np.ndarray [shape=(clips,), dtype=int64]
        Labels: the position of each clip's label in the store's label set (recorded at ingest).
    index : pl.DataFrame
        The index rows of ``x``, in the same order.
    """

    x: np.ndarray
    y: np.ndarray
    index: pl.DataFrame


class FeatureStore(ViewStore):
    """Read and build the mel feature store under ``root`` for one set of parameters.

    Parameters
    ----------
    root : path
        Store root (holds ``catalog.parquet``, ``splits.parquet``, ``features/``).
    params : FeatureParams, optional
        Feature parameters; their hash selects the store folder.

    Examples
    --------
    >>> store = FeatureStore("data/store")                          # doctest: +SKIP
    >>> store.clips(clip_seconds=5, genre="jazz", split="test").collect()  # doctest: +SKIP
    >>> x, y, index = store.tensors(clip_seconds=5, split="train")  # doctest: +SKIP
    """

    build_hint = "`gtzan features build`"

    def __init__(self, root: str | os.PathLike[str], *, params: FeatureParams | None = None) -> None:
        from feature_store.views.mel import MelView

        params = params if params is not None else FeatureParams()
        if not isinstance(params, FeatureParams):
            raise ParameterError(f"params must be a FeatureParams, got {type(params).__name__}")
        super().__init__(root, MelView(params))

    @property
    def params(self) -> FeatureParams:
        return self.view.params

    @property
    def cache_dir(self) -> Path:
        """Folder of the per-song full-length mels (shared by every dtype and mode)."""
        return self.root / "cache" / self.view.cache_folder({})

    def cache_file(self, sha256: str) -> Path:
        """Cache file of the full-length mel of the audio with this content hash."""
        from feature_store.engine.cache import SongCache

        return SongCache(self.cache_dir).entry_path(sha256)

    def tensors(self, *, clip_seconds: int, genre: str | Sequence[str] | None = None,  # type: ignore[override]
                split: str | Sequence[str] | None = None, scheme: str = "seed",
                song_ids: Sequence[str] | None = None, dtype: str = "float32") -> Tensors:
        """Mel arrays and labels of the clips that :meth:`clips` selects.

        Returns
        -------
        Tensors
            ``x`` [shape=(clips, n_mels, frames)], ``y`` [shape=(clips,)] and the index.
        """
        t = super().tensors(clip_seconds=clip_seconds, genre=genre, split=split, scheme=scheme,
                            song_ids=song_ids, dtype=dtype)
        return Tensors(x=t.x, y=t.y, index=t.index)

    def summary(self, *, clip_seconds: int, genre: str | Sequence[str] | None = None,
                split: str | Sequence[str] | None = None, scheme: str = "seed",
                song_ids: Sequence[str] | None = None) -> pl.LazyFrame:
        """Per-band mean/std summary features (``mean_000``... ``std_127``) joined with the clip index."""
        return self.table("summary", clip_seconds=clip_seconds, genre=genre, split=split, scheme=scheme,
                          song_ids=song_ids)
