"""Mel spectrograms: one STFT per song, every clip sliced from it.

The study computed a separate mel for each clip length. Here each song is decoded and
transformed once, at its full nominal length; a clip of N seconds is the frame slice
``mel[:, start : start + clip_frames(N)]``. Compared with a separate STFT of the clip's
audio, the frames are identical except the last ``n_fft // (2 * hop_length)`` (2 at the
defaults), which see the audio after the cut instead of padding, and values at the
``top_db`` floor, which is set by the song's peak rather than the clip's.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from feature_store.errors import ParameterError
from feature_store.params import FeatureParams, validate_clip_seconds

#: A clip is made only where at least this share of it is real audio, not padding.
MIN_CLIP_COVERAGE: float = 0.95


#: STFT frames transformed per block: small enough that a block's frames, spectrum and
#: power stay in the CPU cache (64 frames x 2048 samples x 4 bytes = 512 KiB at the defaults).
STFT_BLOCK_FRAMES: int = 64


def mel_spectrogram(y: np.ndarray, *, params: FeatureParams, block_frames: int = STFT_BLOCK_FRAMES) -> np.ndarray:
    """Log-power mel spectrogram, equal to the study's librosa calls.

    ``librosa.power_to_db(librosa.feature.melspectrogram(y, ...), ref=1.0, top_db)`` with
    the parameters of ``params`` (Hann window, centred frames with zero padding, Slaney mel
    filters), computed by :func:`power_mel` and :func:`power_to_db` without librosa. Values
    agree with librosa within 2e-3 dB over the top 60 dB of the range (float32 sums in
    another order); tests check it. Memory beyond the output is one STFT block, so audio of
    any length (a whole file to predict) is fine; ``top_db`` is taken from its peak.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio at ``params.sr``.
    params : FeatureParams
    block_frames : int > 0
        Frames per STFT block.

    Returns
    -------
    np.ndarray [shape=(params.n_mels, 1 + n // params.hop_length), dtype=float32]
        dB values; finite for any finite input, silence included (floor -100 dB).

    Raises
    ------
    ParameterError
        If ``y`` is not 1-d, is empty, or holds NaN or infinite samples.
    """
    return power_to_db(power_mel(y, params=params, block_frames=block_frames), top_db=params.top_db)


def power_mel(y: np.ndarray, *, params: FeatureParams, block_frames: int = STFT_BLOCK_FRAMES,
              centered: bool = True) -> np.ndarray:
    """Mel-filtered power spectrogram, ``librosa.feature.melspectrogram`` computed in blocks.

    The centred STFT (zero padding of ``n_fft // 2`` at both ends, periodic Hann window)
    runs ``block_frames`` frames at a time with a real FFT (``scipy.fft``), and each block's
    ``|X| ** power`` goes straight through the sparse mel filterbank. Memory beyond the
    output is one block, whatever the length of ``y``, and no BLAS is involved, so the
    result is bit-identical in every process whatever its thread settings, and a frame's
    values do not depend on which block it is computed in.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio at ``params.sr``.
    params : FeatureParams
    block_frames : int > 0
        Frames per STFT block.
    centered : bool
        False: ``y`` is a stretch of already padded audio, and its frames start at its
        first sample, ``1 + (n - n_fft) // hop_length`` of them (a stream of a long file is
        transformed piece by piece this way).

    Returns
    -------
    np.ndarray [shape=(params.n_mels, frames), dtype=float32]
        ``frames = 1 + n // params.hop_length`` when centred.
    """
    import scipy.fft

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ParameterError(f"y must be mono with shape (n,), got shape {y.shape}")
    if y.size == 0:
        raise ParameterError("y holds no samples")
    if not isinstance(block_frames, int) or isinstance(block_frames, bool) or block_frames < 1:
        raise ParameterError(f"block_frames must be a positive integer, got {block_frames!r}")
    if not np.isfinite(y).all():
        raise ParameterError("y holds NaN or infinite samples; decode() replaces them")
    n_fft, hop = params.n_fft, params.hop_length
    window, basis = stft_filters(params.sr, n_fft, params.n_mels, params.fmin, params.fmax)
    if centered:
        total = 1 + y.size // hop
    elif y.size >= n_fft:
        total = 1 + (y.size - n_fft) // hop
    else:
        raise ParameterError(f"an uncentred stretch needs at least n_fft={n_fft} samples, got {y.size}")
    out = np.empty((params.n_mels, total), dtype=np.float32)
    buf = np.empty((min(block_frames, total), n_fft), dtype=np.float32)
    for f0 in range(0, total, block_frames):
        f1 = min(total, f0 + block_frames)
        frames = (_frames(y, f0, f1, n_fft=n_fft, hop=hop) if centered else
                  np.lib.stride_tricks.sliding_window_view(y[f0 * hop: (f1 - 1) * hop + n_fft], n_fft)[::hop])
        block = np.multiply(frames, window, out=buf[: f1 - f0])
        spec = scipy.fft.rfft(block, axis=-1)
        if params.power == 2.0:
            mag = np.square(spec.real)
            mag += np.square(spec.imag)
        else:
            mag = np.abs(spec) ** np.float32(params.power)
        out[:, f0:f1] = basis @ mag.T
    return out


def _frames(y: np.ndarray, f0: int, f1: int, *, n_fft: int, hop: int) -> np.ndarray:
    """Frames ``f0..f1-1`` of librosa's centred framing (``n_fft // 2`` zeros at both ends).

    A view into ``y`` where the frames lie inside it; near the ends, a view into a small
    zero-padded copy of just the samples they need (never a padded copy of all of ``y``).

    Returns
    -------
    np.ndarray [shape=(f1 - f0, n_fft)]
    """
    half = n_fft // 2
    start = f0 * hop - half
    stop = (f1 - 1) * hop - half + n_fft
    if start >= 0 and stop <= y.size:
        seg = y[start:stop]
    else:
        seg = np.zeros(stop - start, dtype=y.dtype)
        lo, hi = max(start, 0), min(stop, y.size)
        if hi > lo:
            seg[lo - start : hi - start] = y[lo:hi]
    return np.lib.stride_tricks.sliding_window_view(seg, n_fft)[::hop]


def power_to_db(S: np.ndarray, *, top_db: float | None = 80.0, amin: float = 1e-10,
                peak: float | None = None) -> np.ndarray:
    """``librosa.power_to_db(S, ref=1.0, amin=amin, top_db=top_db)``, in float32.

    Parameters
    ----------
    S : np.ndarray [shape=(..., n_mels, frames)]
        Non-negative power values; overwritten when it is already float32.
    top_db : float > 0 or None
        Values below ``max - top_db`` are raised to it.
    amin : float > 0
        Floor below the log (``-100 dB`` at the default).
    peak : float, optional
        The largest power of the whole signal that ``S`` is a part of (a long file
        transformed piece by piece): the ``top_db`` floor is taken from it, not from ``S``.

    Returns
    -------
    np.ndarray [shape=S.shape, dtype=float32]
    """
    S = np.asarray(S, dtype=np.float32)
    np.maximum(S, np.float32(amin), out=S)
    np.log10(S, out=S)
    S *= np.float32(10.0)
    if top_db is not None:
        if top_db < 0:
            raise ParameterError(f"top_db must be non-negative, got {top_db!r}")
        top = S.max() if peak is None else np.float32(10.0) * np.log10(np.maximum(np.float32(peak), np.float32(amin)))
        np.maximum(S, top - np.float32(top_db), out=S)
    return S


@functools.lru_cache(maxsize=8)
def stft_filters(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> tuple[np.ndarray, Any]:
    """The periodic Hann window and the Slaney mel filterbank as a sparse CSR matrix."""
    import scipy.sparse

    window = hann_window(n_fft)
    window.setflags(write=False)
    basis = mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    return window, scipy.sparse.csr_array(basis)


def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window, ``scipy.signal.get_window('hann', n, fftbins=True)``.

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
    """
    if not isinstance(n, int) or n < 1:
        raise ParameterError(f"window length must be a positive integer, got {n!r}")
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def mel_filterbank(*, sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Slaney-style mel filterbank, equal to ``librosa.filters.mel`` (htk=False, norm='slaney').

    Triangular filters on the Slaney mel scale (linear below 1 kHz, logarithmic above),
    each scaled to unit area (``2 / (f[i+2] - f[i])``). Written out here so that worker
    processes need not import librosa (and scipy.signal) to build it: a second of start-up
    per process.

    Parameters
    ----------
    sr : int > 0
    n_fft : int > 0
    n_mels : int > 0
    fmin, fmax : float
        Edges of the filterbank in Hz; ``fmax=None`` means ``sr / 2``.

    Returns
    -------
    np.ndarray [shape=(n_mels, 1 + n_fft // 2), dtype=float32]
    """
    fmax = float(sr) / 2 if fmax is None else float(fmax)
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(float(fmin)), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    return weights


#: Slaney's mel scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above.
_F_SP, _MIN_LOG_HZ, _LOGSTEP = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP


def _hz_to_mel(f: float) -> float:
    return _MIN_LOG_MEL + np.log(f / _MIN_LOG_HZ) / _LOGSTEP if f >= _MIN_LOG_HZ else f / _F_SP


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    freqs = _F_SP * mels
    log_t = mels >= _MIN_LOG_MEL
    freqs[log_t] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels[log_t] - _MIN_LOG_MEL))
    return freqs


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


def window_summaries(mel: np.ndarray, *, windows: list[tuple[int, int]]) -> dict[tuple[int, int], np.ndarray]:
    """:func:`band_summary` of many frame windows of one mel, in two passes over it.

    The windows' edges cut the mel into intervals; the per-band sums of values and squares
    over each interval are taken once (float64), and each window adds up its intervals.
    Nested windows (the ``first`` clips of every length) and disjoint ones (``segments``)
    cost the same as one pass, instead of a pass per window.

    Parameters
    ----------
    mel : np.ndarray [shape=(n_mels, frames)]
    windows : list of (start, length)
        Frame windows inside ``mel``, ``length > 0``.

    Returns
    -------
    dict
        ``(start, length) -> np.ndarray [shape=(2 * n_mels,), dtype=float32]``: band means,
        then band standard deviations (population), as :func:`band_summary` gives them
        (within float32 rounding).
    """
    if not windows:
        return {}
    if any(n < 1 or s < 0 or s + n > mel.shape[1] for s, n in windows):
        raise ParameterError(f"windows {windows} do not fit a mel of {mel.shape[1]} frames")
    bounds = sorted({s for s, _ in windows} | {s + n for s, n in windows})
    seg = mel[:, bounds[0] : bounds[-1]]
    cuts = np.asarray(bounds[:-1]) - bounds[0]
    zero = np.zeros((mel.shape[0], 1))
    c1 = np.concatenate([zero, np.cumsum(np.add.reduceat(seg, cuts, axis=1, dtype=np.float64), axis=1)], axis=1)
    c2 = np.concatenate([zero, np.cumsum(np.add.reduceat(np.square(seg, dtype=np.float64), cuts, axis=1), axis=1)],
                        axis=1)
    pos = {b: i for i, b in enumerate(bounds)}
    out = {}
    for s, n in windows:
        a, b = pos[s], pos[s + n]
        mean = (c1[:, b] - c1[:, a]) / n
        var = np.maximum((c2[:, b] - c2[:, a]) / n - mean * mean, 0.0)
        out[(s, n)] = np.concatenate([mean, np.sqrt(var)]).astype(np.float32)
    return out
