"""The embeddings view's store: :class:`EmbeddingStore`, ``build_embeddings`` and ``embed_file``.

The view itself is declared in :mod:`feature_store.views.embeddings` (musicnn clip embeddings
of the same clips as every view); the store is the generic engine's
(:class:`~feature_store.engine.store.ViewStore`). This module keeps the names this project
has always used: an :class:`EmbeddingStore` built from a model name and the clips'
:class:`~feature_store.params.FeatureParams`, whose ``tensors()`` takes ``layers``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from feature_store import atomic  # noqa: F401  (tests patch atomic through this module)
from feature_store.embeddings import musicnn as mn
from feature_store.engine.build import BuildReport
from feature_store.engine.cache import SongCache
from feature_store.engine.store import ViewStore
from feature_store.errors import ParameterError, StoreError
from feature_store.params import CLIP_SECONDS, FeatureParams, validate_clip_seconds
from feature_store.views.embeddings import DEFAULT_LAYERS, EMBEDDING_CODE_VERSION, EmbeddingsView

__all__ = [
    "DEFAULT_LAYERS", "EMBEDDING_CODE_VERSION", "H5_FILE", "EmbeddingBuildReport", "EmbeddingStore",
    "EmbeddingTensors", "FileEmbeddings", "build_embeddings", "default_workers", "embed_file", "validate_layers",
]

H5_FILE = EmbeddingsView.data_file
#: What :meth:`EmbeddingStore.build` returns (``report.weights_sha256`` is its provenance).
EmbeddingBuildReport = BuildReport


def default_workers() -> int:
    """Decode processes of a build by default: a quarter of the CPU cores, at least 1."""
    return EmbeddingsView().default_workers()


def validate_layers(layers: str | Sequence[str]) -> tuple[str, ...]:
    """Return ``layers`` as a tuple, or raise :class:`ParameterError` naming the valid layers."""
    names = (layers,) if isinstance(layers, str) else tuple(layers)
    if not names:
        raise ParameterError(f"layers must name at least one of {list(mn.LAYERS)}")
    for name in names:
        if name not in mn.LAYERS:
            raise ParameterError(f"unknown embedding layer {name!r}; valid layers are {list(mn.LAYERS)}")
    if len(set(names)) != len(names):
        raise ParameterError(f"layers repeat a name: {list(names)}")
    return names


class EmbeddingTensors(NamedTuple):
    """Result of :meth:`EmbeddingStore.tensors`.

    Attributes
    ----------
    x : np.ndarray [shape=(clips, sum of the layers' widths), dtype=float32]
        The requested layers side by side, in the order asked for.
    y : np.ndarray [shape=(clips,), dtype=int64]
    index : pl.DataFrame
    layers : tuple of str
    """

    x: np.ndarray
    y: np.ndarray
    index: pl.DataFrame
    layers: tuple[str, ...]


class EmbeddingStore(ViewStore):
    """Build and query the musicnn embeddings view under ``root``.

    Parameters
    ----------
    root : path
        Store root (holds ``catalog.parquet``, ``splits.parquet``, ``features/``).
    model : {'MSD_musicnn', 'MTT_musicnn'}
        Which musicnn weights embed the clips.
    params : FeatureParams, optional
        Clip definitions: its ``mode``, ``sr`` and ``hop_length`` (the mel parameters
        proper do not matter here). Default ``FeatureParams()``: the first N seconds.

    Examples
    --------
    >>> store = EmbeddingStore("data/store", model="MSD_musicnn")            # doctest: +SKIP
    >>> store.build(audio_root="data/demo/genres_original", clip_seconds=[5])  # doctest: +SKIP
    >>> x, y, index, layers = store.tensors(clip_seconds=5, split="train")     # doctest: +SKIP
    """

    build_hint = "`gtzan features build --view embeddings`"

    def __init__(self, root: str | os.PathLike[str], *, model: str = "MSD_musicnn",
                 params: FeatureParams | None = None) -> None:
        self.params = params if params is not None else FeatureParams()
        super().__init__(root, EmbeddingsView.for_clips(mn.validate_model(model), self.params))

    @property
    def model(self) -> str:
        return self.view.model

    def hash(self) -> str:
        """Short hash of the model name, clip geometry, musicnn input and code version."""
        return self.view.hash()

    def cache_dir(self, weights_sha256: str) -> Path:
        """Cache folder of the per-song embeddings made with these weights."""
        return self.root / "cache" / self.view.cache_folder({"weights_sha256": weights_sha256})

    def cache_file(self, weights_sha256: str, sha256: str, clip_seconds: int) -> Path:
        """Cache file of one song's clip embeddings at one clip length."""
        return SongCache(self.cache_dir(weights_sha256)).rows_path(sha256, validate_clip_seconds(clip_seconds))

    def build(self, *, audio_root: str | os.PathLike[str], clip_seconds: Iterable[int] = CLIP_SECONDS,  # type: ignore[override]
              workers: int | None = None, threads: int | None = None, progress: bool = False,
              lock_timeout: float | None = None, on_wait: Any = None) -> BuildReport:
        """Embed what is missing and (re)write the stores of ``clip_seconds``.

        ``workers`` decode songs beside the network, which runs in this process on every
        core (default: a quarter of the cores); ``threads`` caps TensorFlow's threads. See
        :meth:`ViewStore.build` for the rest.
        """
        return super().build(audio_root=audio_root, clip_seconds=clip_seconds, workers=workers, progress=progress,
                             lock_timeout=lock_timeout, on_wait=on_wait, threads=threads)

    def tensors(self, *, clip_seconds: int, layers: str | Sequence[str] = DEFAULT_LAYERS,  # type: ignore[override]
                genre: str | Sequence[str] | None = None, split: str | Sequence[str] | None = None,
                scheme: str = "seed", song_ids: Sequence[str] | None = None) -> EmbeddingTensors:
        """Embeddings and labels of the clips that :meth:`clips` selects.

        Parameters
        ----------
        layers : str or list of str
            Layers of :data:`~feature_store.embeddings.musicnn.LAYERS` to concatenate.

        Returns
        -------
        EmbeddingTensors
            ``x`` [shape=(clips, sum of widths)], ``y`` [shape=(clips,)], the index, the layers.
        """
        names = validate_layers(layers)
        t = super().tensors(clip_seconds=clip_seconds, genre=genre, split=split, scheme=scheme, song_ids=song_ids,
                            arrays=names)
        return EmbeddingTensors(x=t.x, y=t.y, index=t.index, layers=names)


def build_embeddings(
    *,
    store_root: str | os.PathLike[str],
    audio_root: str | os.PathLike[str],
    clip_seconds: Iterable[int] = CLIP_SECONDS,
    model: str = "MSD_musicnn",
    params: FeatureParams | None = None,
    workers: int | None = None,
    threads: int | None = None,
    progress: bool = False,
    lock_timeout: float | None = None,
) -> BuildReport:
    """Build the embeddings view of ``store_root`` (ingest must have run there).

    One call per Dagster partition (``clip_seconds=[c]``) or for all clip lengths at once;
    see :meth:`EmbeddingStore.build` for the parameters.
    """
    return EmbeddingStore(store_root, model=model, params=params).build(
        audio_root=audio_root, clip_seconds=clip_seconds, workers=workers, threads=threads, progress=progress,
        lock_timeout=lock_timeout,
    )


class FileEmbeddings(NamedTuple):
    """Result of :func:`embed_file`.

    Attributes
    ----------
    x : np.ndarray [shape=(clips, sum of widths), dtype=float32]
    index : pl.DataFrame
        ``segment``, ``start_seconds`` of each clip.
    layers : tuple of str
    seconds : float
        Wall time of decode + log-mel + network (the embedding cost of this file).
    """

    x: np.ndarray
    index: pl.DataFrame
    layers: tuple[str, ...]
    seconds: float


def embed_file(
    path: str | os.PathLike[str],
    *,
    clip_seconds: int,
    params: FeatureParams | None = None,
    model: str = "MSD_musicnn",
    layers: str | Sequence[str] = DEFAULT_LAYERS,
    embedder: mn.MusicnnEmbedder | None = None,
) -> FileEmbeddings:
    """Embed the clips of one audio file as the store would (its clips, padded to 30 s).

    Raises
    ------
    AudioError
        If the file cannot be decoded.
    StoreError
        If the file is too short for one clip of ``clip_seconds``.
    """
    from feature_store.audio import decode
    from feature_store.features import clip_starts

    c = validate_clip_seconds(clip_seconds)
    names = validate_layers(layers)
    params = params or FeatureParams()
    view = EmbeddingsView.for_clips(model, params)
    if embedder is not None:
        view.use_embedder(embedder)
    t0 = time.perf_counter()
    audio = decode(path, sr=mn.SR)
    mel = view.prepare(audio.y)
    clips = clip_starts(params=params, clip_seconds=c, duration=audio.duration)
    if not clips:
        raise StoreError(f"{Path(path).name} lasts {audio.duration:.1f} s, too short for one {c} s clip")
    out = view.clip_rows(mel, {c: [view.view_frame(s) for _, s in clips]})[c]
    x = np.concatenate([out[n] for n in names], axis=1)
    index = pl.DataFrame(
        {"segment": [k for k, _ in clips], "start_seconds": [s * params.hop_length / params.sr for _, s in clips]},
        schema={"segment": pl.Int64, "start_seconds": pl.Float64},
    )
    return FileEmbeddings(x=x, index=index, layers=names, seconds=time.perf_counter() - t0)
