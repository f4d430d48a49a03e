"""Mel spectrograms: one STFT per song, every clip sliced from it.

The study computed a separate mel for each clip length. Here each song is decoded and
transformed once, at its full nominal length; a clip of N seconds is the frame slice
``mel[:, start : start + clip_frames(N)]``. Compared with a separate STFT of the clip's
audio, the frames are identical except the last ``n_fft // (2 * hop_length)`` (2 at the
defaults), which see the audio after the cut instead of padding, and values at the
``top_db`` floor, which is set by the song's peak rather than the clip's.
"""

from __future__ import annotations

import numpy as np

from feature_store.errors import ParameterError
from feature_store.params import FeatureParams, validate_clip_seconds

#: A clip is made only where at least this share of it is real audio, not padding.
MIN_CLIP_COVERAGE: float = 0.95


def mel_spectrogram(y: np.ndarray, *, params: FeatureParams) -> np.ndarray:
    """Log-power mel spectrogram with the study's librosa calls.

    ``librosa.feature.melspectrogram`` then ``librosa.power_to_db(S, ref=1.0, top_db)``.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio at ``params.sr``.
    params : FeatureParams

    Returns
    -------
    np.ndarray [shape=(params.n_mels, 1 + n // params.hop_length), dtype=float32]
        dB values; finite for any finite input, silence included (floor -100 dB).
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ParameterError(f"y must be mono with shape (n,), got shape {y.shape}")
    if y.size == 0:
        raise ParameterError("y holds no samples")
    if not np.all(np.isfinite(y)):
        raise ParameterError("y holds NaN or infinite samples; decode() replaces them")
    S = librosa.feature.melspectrogram(
        y=y,
        sr=params.sr,
        n_fft=params.n_fft,
        hop_length=params.hop_length,
        n_mels=params.n_mels,
        fmin=params.fmin,
        fmax=params.fmax,
        power=params.power,
    )
    return librosa.power_to_db(S, ref=1.0, top_db=params.top_db).astype(np.float32)


def clip_starts(*, params: FeatureParams, clip_seconds: int, duration: float) -> list[tuple[int, int]]:
    """Segments and start frames of the clips one song yields.

    Parameters
    ----------
    params : FeatureParams
        Its ``mode`` decides between the first clip and every whole segment.
    clip_seconds : int
        One of :data:`feature_store.params.CLIP_SECONDS`.
    duration : float
        Seconds of real audio in the song; clips that are less than
        :data:`MIN_CLIP_COVERAGE` real audio are dropped, so a 4 s song yields 1 s clips
        only.

    Returns
    -------
    list of (segment, start_frame)
    """
    clip_seconds = validate_clip_seconds(clip_seconds)
    out = []
    for k, start in enumerate(params.segment_starts(clip_seconds)):
        t0 = start * params.hop_length / params.sr
        real = min(duration, t0 + clip_seconds) - t0
        if real >= MIN_CLIP_COVERAGE * clip_seconds:
            out.append((k, start))
    return out


def slice_clips(mel: np.ndarray, starts: list[int], frames: int) -> np.ndarray:
    """Stack ``mel[:, s : s + frames]`` for each start.

    Returns
    -------
    np.ndarray [shape=(len(starts), n_mels, frames)]
    """
    if any(s < 0 or s + frames > mel.shape[1] for s in starts):
        raise ParameterError(f"a clip of {frames} frames at {starts} exceeds the mel's {mel.shape[1]} frames")
    if not starts:
        return np.empty((0, mel.shape[0], frames), dtype=mel.dtype)
    return np.stack([mel[:, s : s + frames] for s in starts])


def band_summary(clips: np.ndarray) -> np.ndarray:
    """Per-band mean and standard deviation over time.

    Parameters
    ----------
    clips : np.ndarray [shape=(n, n_mels, frames)]

    Returns
    -------
    np.ndarray [shape=(n, 2 * n_mels), dtype=float32]
        Means of bands 0..n_mels-1, then their standard deviations.
    """
    clips = np.asarray(clips, dtype=np.float32)
    return np.concatenate([clips.mean(axis=2), clips.std(axis=2)], axis=1).astype(np.float32)
