"""The feature views as training and prediction read them: one adapter to the store engine.

Every model family trains from a view of the store (:mod:`feature_store.views`) and predicts
from the same view's features of raw audio. A :class:`View` is the engine's view on the clips
of the model store's :class:`~feature_store.params.FeatureParams` (mode, dtype) with the
family's options (the embeddings' model), so any view the engine declares can be trained on:

* :meth:`View.store` opens its store at a root, :meth:`View.tensors` reads named arrays of
  selected clips (``x`` [shape=(clips, n_mels, frames)] for ``mel``, the arrays side by side
  [shape=(clips, features)] for vector views);
* :func:`file_windows` and :func:`window_stream` give the features of windows of one clip
  length slid over a whole audio file, for prediction (the stream in batches, in memory that
  does not grow with the file).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from feature_store.engine.windows import FileWindows, WindowStream, audio_windows, window_starts
from feature_store.params import FeatureParams

__all__ = ["FileWindows", "View", "file_windows", "training_view", "window_starts", "window_stream"]

class View:
    """One feature view on the clips of ``params``, with a family's options.

    Attributes
    ----------
    name : str
    params : FeatureParams
        The model store's parameters (the clips' mode; the mel's dtype).
    options : dict
        What else picks the view's store (``embedding_model``).
    engine : feature_store.engine.view.FeatureView
        The view itself.
    sample_rate : int
        Rate at which the view decodes audio.
    """

    def __init__(self, name: str, params: FeatureParams, options: Mapping[str, Any]) -> None:
        from feature_store.engine.view import ViewOptions
        from feature_store.views import get_view as engine_view

        self.name, self.params, self.options = name, params, dict(options)
        choice = ViewOptions(**{"mode": params.mode, "dtype": params.dtype, **self.options})
        self.engine = engine_view(name, choice)
        self.sample_rate = self.engine.sample_rate

    def store(self, root: str | os.PathLike[str]) -> Any:
        """The view's store at ``root`` (it need not be built yet)."""
        from feature_store.engine.store import ViewStore

        return ViewStore(root, self.engine)

    def tensors(self, store: Any, *, clip_seconds: int, split: Any = None, scheme: str = "seed",
                song_ids: Sequence[str] | None = None, arrays: Sequence[str] | None = None) -> Any:
        """The arrays of the clips that ``store.clips`` selects, in ``hdf5_row`` order: the store's
        own ``Tensors`` (``x``, ``y``, ``index``, ``arrays``; :meth:`ViewStore.tensors`)."""
        return store.tensors(clip_seconds=clip_seconds, split=split, scheme=scheme, song_ids=song_ids,
                             arrays=list(arrays) if arrays else None)

    def clip_frames(self, clip_seconds: int) -> int:
        """Frames of the view's time-frequency input in one clip."""
        return self.engine.clip_frames(clip_seconds)

    def extraction_ms_per_clip(self, store: Any, clip_seconds: int) -> float | None:
        """The store's recorded cost of computing one clip's features, where it records one."""
        if not self.engine.cost_name:
            return None
        ms = (store.describe()["clip_lengths"].get(str(clip_seconds)) or {}).get(self.engine.cost_name)
        return float(ms) if ms is not None else float("nan")

    def provenance(self, store: Any, arrays: Sequence[str]) -> dict[str, Any] | None:
        """What a run record says about where its features came from, for views made by
        something beyond their params (the embeddings' weights); None for the others."""
        if not self.engine.provenance():
            return None
        reg = store.describe()
        widths = {s.name: int(np.prod(s.shape)) for s in self.engine.array_specs(1)}
        model = getattr(self.engine.params, "model", None)
        return {
            **({"model": model} if model else {}),
            **{k: reg.get(k) for k in self.engine.provenance()},
            "embedding_hash": self.engine.hash(),
            "layers": list(arrays),
            "features": int(sum(widths[n] for n in arrays)),
        }

    def prepare(self) -> None:
        """Fail now, not at the first file, when the view cannot compute (weights missing)."""
        self.engine.provenance()


def training_view(name: str, *, params: FeatureParams | None = None,
                  options: Mapping[str, Any] | None = None) -> View:
    """The engine's view ``name`` as training reads it, on the clips of ``params`` (default ``FeatureParams()``).

    Any view the engine registers works here; nothing in this module names one.

    Raises
    ------
    ParameterError
        Unknown view (the message names the valid ones) or option value.
    """
    return View(name, params or FeatureParams(), options or {})


def window_stream(view: View, path: str | os.PathLike[str], *, clip_seconds: int, hop_seconds: float | None = None,
                  arrays: Sequence[str] | None = None, batch: int = 64, max_seconds: float | None = None
                  ) -> WindowStream:
    """The window features of one file in batches (:class:`feature_store.engine.windows.WindowStream`)."""
    return WindowStream(view.engine, path, clip_seconds=clip_seconds, hop_seconds=hop_seconds, arrays=arrays,
                        batch=batch, max_seconds=max_seconds)


def file_windows(
    view: View,
    path_or_audio: str | os.PathLike[str] | np.ndarray,
    *,
    clip_seconds: int,
    hop_seconds: float | None = None,
    arrays: Sequence[str] | None = None,
) -> FileWindows:
    """The view's features of every window of ``clip_seconds`` slid over one whole file.

    Windows start every ``hop_seconds`` (default: the clip length); one more window is aligned
    with the end of the file when the whole windows leave more than 5 % of a window uncovered;
    a file shorter than one window is padded with silence to one window.

    Parameters
    ----------
    view : View
    path_or_audio : path or np.ndarray [shape=(n,)]
        A file :func:`feature_store.audio.decode` reads, or mono audio at ``view.sample_rate``.
    clip_seconds : int
    hop_seconds : float > 0, optional
    arrays : list of str, optional
        For vector views, the arrays side by side (default: the view's default arrays).

    Raises
    ------
    AudioError
        The file cannot be decoded.
    """
    if isinstance(path_or_audio, np.ndarray):
        y = np.asarray(path_or_audio, dtype=np.float32)
        x, starts, padded = audio_windows(view.engine, y, clip_seconds=clip_seconds, hop_seconds=hop_seconds,
                                          arrays=arrays)
        return FileWindows(x=x, starts_seconds=starts, duration=y.size / view.sample_rate, padded_seconds=padded,
                           source_sr=view.sample_rate, source_channels=1)
    return view.engine.file_windows(path_or_audio, clip_seconds=clip_seconds, hop_seconds=hop_seconds, arrays=arrays)
