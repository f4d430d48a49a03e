"""A view's features of windows slid over one audio file, for prediction.

The file is decoded under the store's audio policy at the view's rate, prepared as a whole
song is, and cut into windows of a clip length:

* windows start every ``hop_seconds`` (default: the clip length, so they do not overlap), as
  the ``segments`` sampling mode cuts a song;
* when the whole windows leave more than 5 % of a window uncovered at the end, one more
  window is aligned with the end of the file, so every second of the file is seen;
* a file shorter than one window is padded with silence to one window, as the store pads
  songs to their nominal length, and the result says by how much.

Values go through the store's dtype (a float16 store's model saw float16-rounded inputs).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

import numpy as np

from feature_store.engine.view import FeatureView
from feature_store.errors import ParameterError
from feature_store.features import MIN_CLIP_COVERAGE
from feature_store.params import validate_clip_seconds


def window_starts(*, total_frames: int, frames: int, hop_frames: float) -> list[int]:
    """Start frames of the windows that cover ``total_frames`` frames.

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
    if frames < 1 or total_frames < frames:
        raise ParameterError(f"need total_frames >= frames >= 1, got {total_frames} and {frames}")
    if not (math.isfinite(hop_frames) and hop_frames > 0):
        raise ParameterError(f"hop_frames must be positive and finite, got {hop_frames!r}")
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


@dataclasses.dataclass
class FileWindows:
    """The features of one file's windows.

    Attributes
    ----------
    x : np.ndarray
        ``(windows, *shape)`` for a view of one per-clip 2-d array (mel windows before any
        normalisation), else ``(windows, features)``.
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


def audio_windows(view: FeatureView, y: np.ndarray, *, clip_seconds: int, hop_seconds: float | None = None,
                  arrays: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """The window features of mono audio ``y`` at ``view.sample_rate``.

    Returns
    -------
    x : np.ndarray
    starts_seconds : np.ndarray [shape=(windows,)]
    padded_seconds : float
    """
    from feature_store.engine.store import assemble

    c = validate_clip_seconds(clip_seconds)
    hop = float(c if hop_seconds is None else hop_seconds)
    if not (math.isfinite(hop) and hop > 0):
        raise ParameterError(f"hop_seconds must be positive and finite, got {hop_seconds!r}")
    y = np.asarray(y, dtype=np.float32)
    need = c * view.sample_rate
    padded = 0.0
    if y.size < need:
        padded = (need - y.size) / view.sample_rate
        y = np.pad(y, (0, need - y.size))
    entry = view.prepare(y, whole_file=True)
    frames = view.clip_frames(c)
    starts = window_starts(total_frames=view.entry_frames(entry), frames=frames, hop_frames=hop * view.frame_rate)
    rows = view.clip_rows(entry, {c: starts})[c]
    specs = {s.name: s for s in view.array_specs(c)}
    names = tuple(arrays or view.default_arrays)
    # round through the stored dtype: a float16 store's model was trained on float16 values
    parts = [np.stack(rows[n]).astype(specs[n].dtype).astype(np.float32) if len(rows[n])
             else np.zeros((0, *specs[n].shape), np.float32) for n in names]
    return assemble(parts, names), np.asarray(starts, np.float64) / view.frame_rate, padded


def file_windows(view: FeatureView, path: str | os.PathLike[str], *, clip_seconds: int,
                 hop_seconds: float | None = None, arrays: Sequence[str] | None = None) -> FileWindows:
    """Decode ``path`` and return the window features of :func:`audio_windows`.

    Raises
    ------
    AudioError
        If the file cannot be decoded.
    """
    from feature_store.audio import decode

    audio = decode(path, sr=view.sample_rate, nominal_seconds=None)
    x, starts, padded = audio_windows(view, audio.y, clip_seconds=clip_seconds, hop_seconds=hop_seconds,
                                      arrays=arrays)
    return FileWindows(x=x, starts_seconds=starts, duration=audio.duration, padded_seconds=padded,
                       source_sr=audio.source_sr, source_channels=audio.source_channels)
