"""The feature views as training and prediction read them: the one adapter to the feature store.

Every model family trains from a view of the store and predicts from the same view's features
of raw audio. This module is the only place that knows how each view is stored and computed:

* :func:`get_view` names a view (``mel``, ``embeddings``) with its options;
* :meth:`View.store` opens its store at a root, :meth:`View.tensors` reads named arrays of
  selected clips (``x`` [shape=(clips, n_mels, frames)] for ``mel``, the arrays side by side
  [shape=(clips, features)] for vector views);
* :func:`file_windows` computes the features of windows of one clip length slid over a whole
  audio file, for prediction.

It stands in for the feature-view engine's ``get_view(name, options)``,
``ViewStore(root, view).tensors(arrays=...)`` and ``view.file_windows(...)``
(``notes/engine-api.md``); when those land, these become calls of them and the model families
do not change. Until then a new view (``timbre``) is one more :class:`View` subclass here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from feature_store.errors import ParameterError
from feature_store.params import FeatureParams, validate_clip_seconds


class Tensors(NamedTuple):
    """Arrays of selected clips: ``x``, int64 labels ``y`` and the index rows of ``x``."""

    x: np.ndarray
    y: np.ndarray
    index: Any


class FileWindows(NamedTuple):
    """The features of the windows of one audio file (see :func:`file_windows`).

    Attributes
    ----------
    x : np.ndarray
        One row per window: [shape=(windows, n_mels, frames)] for ``mel`` (dB, rounded to the
        store's dtype), [shape=(windows, features)] for vector views.
    starts_seconds : np.ndarray [shape=(windows,)]
    duration : float
        Seconds of audio in the file.
    padded_seconds : float
        Silence added because the file is shorter than one window (0 if none).
    source_sr, source_channels : int
    """

    x: np.ndarray
    starts_seconds: np.ndarray
    duration: float
    padded_seconds: float
    source_sr: int
    source_channels: int


class View:
    """One feature view with its parameters: how to open, read and compute it.

    Attributes
    ----------
    name : str
    params : FeatureParams
        The clip definitions (sample rate, hop, mode, dtype) every view shares.
    options : dict
        What else picks the view's store (``embedding_model``).
    sample_rate : int
        Rate at which the view decodes audio.
    hop_length : int
        Samples between the frames of its time-frequency input.
    """

    name = ""
    sample_rate = 0
    hop_length = 0

    def __init__(self, params: FeatureParams, options: Mapping[str, Any]) -> None:
        self.params = params
        self.options = dict(options)

    def store(self, root: str | os.PathLike[str]) -> Any:
        """The view's store at ``root`` (it need not be built yet)."""
        raise NotImplementedError

    def tensors(self, store: Any, *, clip_seconds: int, split: Any = None, scheme: str = "seed",
                song_ids: Sequence[str] | None = None, arrays: Sequence[str] | None = None) -> Tensors:
        """The arrays of the clips that ``store.clips`` selects, in ``hdf5_row`` order."""
        raise NotImplementedError

    def clip_frames(self, clip_seconds: int) -> int:
        """Frames of the view's time-frequency input in one clip."""
        raise NotImplementedError

    def extraction_ms_per_clip(self, store: Any, clip_seconds: int) -> float | None:
        """The store's recorded cost of computing one clip's features, where it records one."""
        return None

    def provenance(self, store: Any, arrays: Sequence[str]) -> dict[str, Any] | None:
        """What a run record should say about where its features came from (``embedding``)."""
        return None

    def prepare(self) -> None:
        """Load what :func:`file_windows` needs, so that a missing piece fails before any file."""

    def frame_features(self, y: np.ndarray) -> tuple[np.ndarray, int]:
        """Time-frequency features of a whole mono signal, and their number of frames."""
        raise NotImplementedError

    def window_features(self, feats: np.ndarray, *, starts: list[int], frames: int,
                        arrays: Sequence[str] | None) -> np.ndarray:
        """The model inputs of the windows starting at ``starts`` of ``frames`` frames."""
        raise NotImplementedError


class MelView(View):
    """Log-power mel spectrograms (:class:`feature_store.store.FeatureStore`)."""

    name = "mel"

    def __init__(self, params: FeatureParams, options: Mapping[str, Any]) -> None:
        super().__init__(params, options)
        self.sample_rate, self.hop_length = params.sr, params.hop_length

    def store(self, root: str | os.PathLike[str]) -> Any:
        from feature_store.store import FeatureStore

        return FeatureStore(root, params=self.params)

    def tensors(self, store: Any, *, clip_seconds: int, split: Any = None, scheme: str = "seed",
                song_ids: Sequence[str] | None = None, arrays: Sequence[str] | None = None) -> Tensors:
        t = store.tensors(clip_seconds=clip_seconds, split=split, scheme=scheme, song_ids=song_ids)
        return Tensors(t.x, t.y, t.index)

    def clip_frames(self, clip_seconds: int) -> int:
        return self.params.clip_frames(clip_seconds)

    def frame_features(self, y: np.ndarray) -> tuple[np.ndarray, int]:
        from feature_store.features import mel_spectrogram

        mel = mel_spectrogram(y, params=self.params)  # in blocks: bounded memory for any length
        # the stores may hold float16: round as the training data was rounded
        mel = mel.astype(self.params.dtype).astype(np.float32)
        return mel, mel.shape[1]

    def window_features(self, feats: np.ndarray, *, starts: list[int], frames: int,
                        arrays: Sequence[str] | None) -> np.ndarray:
        return np.stack([feats[:, s : s + frames] for s in starts])


class EmbeddingsView(View):
    """Pretrained musicnn clip embeddings (:class:`feature_store.embeddings.EmbeddingStore`)."""

    name = "embeddings"

    def __init__(self, params: FeatureParams, options: Mapping[str, Any]) -> None:
        from feature_store.embeddings import musicnn as mn

        super().__init__(params, {"embedding_model": "MSD_musicnn", **options})
        self.model = mn.validate_model(self.options["embedding_model"])
        self.sample_rate, self.hop_length = mn.SR, mn.HOP_LENGTH

    def store(self, root: str | os.PathLike[str]) -> Any:
        from feature_store.embeddings.store import EmbeddingStore

        return EmbeddingStore(root, model=self.model, params=self.params)

    def tensors(self, store: Any, *, clip_seconds: int, split: Any = None, scheme: str = "seed",
                song_ids: Sequence[str] | None = None, arrays: Sequence[str] | None = None) -> Tensors:
        from feature_store.embeddings.store import DEFAULT_LAYERS

        t = store.tensors(clip_seconds=clip_seconds, split=split, scheme=scheme, song_ids=song_ids,
                          layers=arrays or DEFAULT_LAYERS)
        return Tensors(t.x, t.y, t.index)

    def clip_frames(self, clip_seconds: int) -> int:
        from feature_store.embeddings import musicnn as mn

        return mn.clip_frames(clip_seconds)

    def extraction_ms_per_clip(self, store: Any, clip_seconds: int) -> float | None:
        ms = (store.describe()["clip_lengths"].get(str(clip_seconds)) or {}).get("embed_ms_per_clip")
        return float(ms) if ms is not None else float("nan")

    def provenance(self, store: Any, arrays: Sequence[str]) -> dict[str, Any] | None:
        from feature_store.embeddings.musicnn import LAYERS

        return {
            "model": self.model,
            "weights_sha256": store.describe().get("weights_sha256"),
            "embedding_hash": store.hash(),
            "layers": list(arrays),
            "features": int(sum(LAYERS[n] for n in arrays)),
        }

    def prepare(self) -> None:
        from feature_store.embeddings import musicnn as mn

        mn.shared_embedder(self.model)  # MusicnnWeightsError, naming the install command, if absent

    def frame_features(self, y: np.ndarray) -> tuple[np.ndarray, int]:
        from feature_store.embeddings import musicnn as mn

        mel = mn.log_mel(y, block_frames=mn.LOG_MEL_BLOCK_FRAMES)  # bounded memory, any length
        return mel, mel.shape[0]

    def window_features(self, feats: np.ndarray, *, starts: list[int], frames: int,
                        arrays: Sequence[str] | None) -> np.ndarray:
        from feature_store.embeddings import musicnn as mn
        from feature_store.embeddings.store import DEFAULT_LAYERS

        out = mn.shared_embedder(self.model).embed_clips(feats, starts=starts, frames=frames)
        return np.concatenate([out[name] for name in (arrays or DEFAULT_LAYERS)], axis=1)


#: The views training reads, by name.
VIEWS: dict[str, type[View]] = {"mel": MelView, "embeddings": EmbeddingsView}


def get_view(name: str, *, params: FeatureParams | None = None, options: Mapping[str, Any] | None = None) -> View:
    """The view ``name`` on the clips of ``params`` (default ``FeatureParams()``).

    Raises
    ------
    ParameterError
        Unknown view (the message names the valid ones) or option value.
    """
    if name not in VIEWS:
        raise ParameterError(f"unknown feature view {name!r}; valid views are {sorted(VIEWS)}")
    return VIEWS[name](params or FeatureParams(), options or {})


# ---------------------------------------------------------------------------------------
# windows of a whole file, for prediction
# ---------------------------------------------------------------------------------------
def window_starts(*, total_frames: int, frames: int, hop_frames: float) -> list[int]:
    """Start frames of the windows that cover features of ``total_frames`` frames.

    Windows start at ``floor(k * hop_frames)``; when the last whole window leaves more
    than ``1 - MIN_CLIP_COVERAGE`` of a window uncovered, one more window ends at the
    last frame.

    Parameters
    ----------
    total_frames : int >= frames
    frames : int > 0
        Frames per window.
    hop_frames : float > 0
        Frames between window starts (may be fractional: clip seconds times frame rate).

    Returns
    -------
    list of int
        Increasing start frames; ``start + frames <= total_frames`` for each.
    """
    from feature_store.features import MIN_CLIP_COVERAGE

    if frames < 1 or total_frames < frames:
        raise ParameterError(f"need total_frames >= frames >= 1, got {total_frames} and {frames}")
    if not hop_frames > 0:
        raise ParameterError(f"hop_frames must be positive, got {hop_frames!r}")
    starts: list[int] = []
    k = 0
    while True:
        s = int(math.floor(k * hop_frames + 1e-9))
        if s + frames > total_frames:
            break
        if not starts or s > starts[-1]:
            starts.append(s)
        k += 1
    uncovered = total_frames - (starts[-1] + frames)
    if uncovered > (1 - MIN_CLIP_COVERAGE) * frames:
        starts.append(total_frames - frames)
    return starts


def file_windows(
    view: View,
    path_or_audio: str | os.PathLike[str] | np.ndarray,
    *,
    clip_seconds: int,
    hop_seconds: float | None = None,
    arrays: Sequence[str] | None = None,
) -> FileWindows:
    """The view's features of windows of ``clip_seconds`` slid over one whole file.

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

    Returns
    -------
    FileWindows

    Raises
    ------
    AudioError
        The file cannot be decoded.
    """
    c = validate_clip_seconds(clip_seconds)
    hop_seconds = float(c if hop_seconds is None else hop_seconds)
    if not hop_seconds > 0:
        raise ParameterError(f"hop_seconds must be positive, got {hop_seconds!r}")
    sr = view.sample_rate
    if isinstance(path_or_audio, np.ndarray):
        y = np.asarray(path_or_audio, dtype=np.float32)
        duration, source_sr, channels = y.size / sr, sr, 1
    else:
        from feature_store.audio import decode

        audio = decode(path_or_audio, sr=sr, nominal_seconds=None)
        y, duration, source_sr, channels = audio.y, audio.duration, audio.source_sr, audio.source_channels
    need = c * sr
    padded = max(0, need - y.size)
    y = np.pad(y, (0, padded)) if padded else y
    feats, total = view.frame_features(y)
    frames = view.clip_frames(c)
    starts = window_starts(total_frames=total, frames=frames, hop_frames=hop_seconds * sr / view.hop_length)
    x = view.window_features(feats, starts=starts, frames=frames, arrays=arrays)
    return FileWindows(x=x, starts_seconds=np.asarray(starts, dtype=np.float64) * view.hop_length / sr,
                       duration=float(duration), padded_seconds=padded / sr, source_sr=int(source_sr),
                       source_channels=int(channels))
