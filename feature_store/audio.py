"""Decoding and normalising audio under one recorded policy, in memory bounded by design.

Policy (recorded in every store's registry as :data:`AUDIO_POLICY`):

* a file is audio when libsndfile reads its header as a real format (not a guess of
  header-less raw data), at a sample rate in ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE``, with at
  least one channel and one frame (:func:`probe`; ingest quarantines and predict refuses
  anything else, with the same one-line reason);
* decode as float32 with libsndfile; 16- and 24-bit FLAC goes through miniaudio (dr_flac)
  instead, which gives the same samples as libsndfile (tests check it on the real clips)
  in about 70% of the time, and leaves to libsndfile any file it does not decode cleanly;
* read only what is needed: the nominal 30 s plus :data:`READ_MARGIN_SECONDS`, never the
  whole file (:func:`decode`); long files are read block by block (:func:`stream`, in :mod:`feature_store.audio_stream`);
* mix down to mono by averaging channels, a block at a time;
* replace NaN and infinite samples by 0 and count them;
* resample to the feature rate with soxr (high quality);
* pad with zeros or crop to the nominal 30 s (GTZAN clips last 29.9-30.6 s).

Memory is that of the mono output plus one block, whatever the header claims: the frames
to read are capped before anything is allocated, channels are mixed down in blocks of
:data:`MIX_BLOCK_SAMPLES` values, and a ``MemoryError`` or any decoder failure becomes an
:class:`~feature_store.errors.AudioError` for that one file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from pathlib import Path

import numpy as np

from feature_store.decoders import (
    END_CHECK_FRAMES,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    MIX_BLOCK_SAMPLES,
    AudioInfo,
    ShortRead,
    SndSource,
    clean_message,
    count_present,
    declared_frames,
    open_source,
    read_mono,
)
from feature_store.errors import AudioError, ParameterError
from feature_store.params import NOMINAL_SECONDS

__all__ = [
    "AUDIO_POLICY", "MAX_SAMPLE_RATE", "MIN_SAMPLE_RATE", "MIX_BLOCK_SAMPLES", "READ_MARGIN_SECONDS",
    "STREAM_BLOCK_SECONDS", "AudioInfo", "AudioTooLongError", "DecodedAudio", "count_frames",
    "declared_frames", "decode", "fit_length", "probe",
]

#: Seconds read past the nominal length, so that the resampler's filter sees real audio
#: at the cut (GTZAN clips last up to 30.6 s: they are read whole).
READ_MARGIN_SECONDS = 1.0
#: Default seconds of source audio per block of :func:`stream`.
STREAM_BLOCK_SECONDS = 10.0

AUDIO_POLICY: dict[str, str] = {
    "accept": (
        f"a real libsndfile format (not guessed raw data), {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, "
        "at least one channel and one frame"
    ),
    "decode": "soundfile (libsndfile), float32; 16/24-bit FLAC via miniaudio (dr_flac), same samples",
    "read": f"at most the nominal length plus {READ_MARGIN_SECONDS:g} s; channels mixed in blocks",
    "channels": "mixed down to mono by the mean of channels",
    "non_finite": "NaN and +/-inf samples replaced by 0, count recorded",
    "resample": "soxr, quality HQ, to FeatureParams.sr",
    "length": f"zero-padded or cropped to the nominal {NOMINAL_SECONDS:g} s",
    "short_songs": "clips are made only where at least 95% of the clip is real audio",
}


class AudioTooLongError(AudioError):
    """The file lasts longer than the ``max_seconds`` that the caller allows."""


@dataclasses.dataclass(frozen=True)
class DecodedAudio:
    """Mono audio at the feature rate, with what the policy did to it.

    Attributes
    ----------
    y : np.ndarray [shape=(n,), dtype=float32]
        Mono samples at ``sr``; padded/cropped to the nominal length when requested.
    sr : int
        Sample rate of ``y``.
    source_sr : int
        Sample rate of the file.
    source_channels : int
        Channels of the file.
    duration : float
        Seconds of audio decoded from the file, before padding or cropping: the whole
        file, or its first ``nominal_seconds + READ_MARGIN_SECONDS`` when it is longer
        (then ``complete`` is False).
    non_finite : int
        Samples that were NaN or infinite and were set to 0 (in what was decoded).
    clipped_fraction : float
        Fraction of decoded samples at or beyond full scale (|x| >= 0.999).
    frames : int
        Frames decoded from the file, at ``source_sr``.
    complete : bool
        Whether decoding reached the end of the file.
    """

    y: np.ndarray
    sr: int
    source_sr: int
    source_channels: int
    duration: float
    non_finite: int
    clipped_fraction: float
    frames: int
    complete: bool


# ---------------------------------------------------------------------------------------
# the definition of audio, shared by ingest and predict
# ---------------------------------------------------------------------------------------
def probe(path: str | Path, *, data: bytes | None = None) -> AudioInfo:
    """Whether ``path`` is usable audio, and what its header claims; reads no samples.

    Ingest quarantines a file with the reason this raises, and predict refuses it with the
    same reason; :func:`decode` and :func:`stream` apply the same checks.

    Parameters
    ----------
    path : str or Path
    data : bytes, optional
        The file's content, already read (``path`` then only names the file).

    Returns
    -------
    AudioInfo

    Raises
    ------
    AudioError
        With a one-line reason: ``empty file (0 bytes)``; ``unreadable header: ...``;
        ``no audio header: ...`` (libsndfile could only guess header-less raw data, as for
        a text file named ``.au``); ``sample rate N Hz is outside 4000..384000 Hz``;
        ``no audio channels``; ``holds no audio samples``.
    """
    path = Path(path)
    if data is None:
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise AudioError(f"cannot read file: {exc.strerror or exc}") from exc
    else:
        size = len(data)
    if size == 0:
        raise AudioError("empty file (0 bytes)")
    with SndSource.open(path, data) as src:
        return src.info


# ---------------------------------------------------------------------------------------
# decoding the start of a file (ingest, build) or a whole short file
# ---------------------------------------------------------------------------------------
def decode(
    path: str | Path,
    *,
    sr: int,
    nominal_seconds: float | None = NOMINAL_SECONDS,
    data: bytes | None = None,
    max_seconds: float | None = None,
) -> DecodedAudio:
    """Decode ``path`` to mono float32 at ``sr`` under :data:`AUDIO_POLICY`.

    Only ``nominal_seconds + READ_MARGIN_SECONDS`` of the file are decoded (all of a GTZAN
    clip), so memory is bounded whatever the file claims or holds. For a whole long file,
    use :func:`stream`.

    Parameters
    ----------
    path : str or Path
        Any file that :func:`probe` accepts.
    sr : int > 0
        Target sample rate.
    nominal_seconds : float > 0 or None
        Pad or crop to this many seconds, and read no more than this plus
        :data:`READ_MARGIN_SECONDS`. ``None`` decodes the whole file and keeps its length.
    data : bytes, optional
        The file's content, already read: it is decoded instead of reading ``path`` again
        (``path`` then only names the file and its format). The store hashes a file and
        decodes the very bytes it hashed.
    max_seconds : float > 0, optional
        With ``nominal_seconds=None``: refuse a file that lasts longer, before decoding when
        its header says so, and after at most this much audio otherwise. Ignored with
        ``nominal_seconds``.

    Returns
    -------
    DecodedAudio

    Raises
    ------
    AudioError
        ``cannot decode <name>: <reason>``, where the reason is the one :func:`probe`
        gives, ``holds no audio samples``, ``out of memory`` or the decoder's message.
    AudioTooLongError
        ``<name> lasts N s, more than the maximum of M s`` (with ``max_seconds``).
    ParameterError
        If ``sr``, ``nominal_seconds`` or ``max_seconds`` is not positive.
    """
    path = Path(path)
    check_rate(sr)
    if nominal_seconds is not None:
        check_seconds("nominal_seconds", nominal_seconds)
    if max_seconds is not None:
        check_seconds("max_seconds", max_seconds)
    try:
        return _decode(path, sr=sr, nominal_seconds=nominal_seconds, data=data, max_seconds=max_seconds)
    except Exception as exc:  # AudioError, MemoryError, LibsndfileError, RuntimeError, soxr's ValueError...
        raise decode_failure(path, exc) from exc


def _decode(
    path: Path, *, sr: int, nominal_seconds: float | None, data: bytes | None, max_seconds: float | None
) -> DecodedAudio:
    with open_source(path, data) as src:
        info = src.info
        if nominal_seconds is not None:
            limit: int | None = math.ceil((nominal_seconds + READ_MARGIN_SECONDS) * info.sample_rate)
        elif max_seconds is not None:
            limit = _refuse_longer(path, info, max_seconds)
        else:
            limit = None
        try:
            y, complete = read_mono(src, limit)
        except ShortRead as short:
            y, complete = _libsndfile_or(short.y, path, data, limit)
    if y.size == 0:
        raise AudioError("holds no audio samples")
    if nominal_seconds is None and max_seconds is not None and not complete:
        raise AudioTooLongError(too_long_message(path, max_seconds))
    y, non_finite, clipped = clean_samples(y)
    frames, source_sr = int(y.size), info.sample_rate
    if source_sr != sr:
        import soxr

        y = soxr.resample(y, source_sr, sr, quality="HQ").astype(np.float32, copy=False)
    if nominal_seconds is not None:
        y = fit_length(y, int(round(nominal_seconds * sr)))
    return DecodedAudio(
        y=np.ascontiguousarray(y, dtype=np.float32),
        sr=sr,
        source_sr=int(source_sr),
        source_channels=int(info.channels),
        duration=frames / float(source_sr),
        non_finite=non_finite,
        clipped_fraction=clipped / frames,
        frames=frames,
        complete=bool(complete),
    )


def _libsndfile_or(partial: np.ndarray, path: Path, data: bytes | None, limit: int | None) -> tuple[np.ndarray, bool]:
    """A FLAC that dr_flac found shorter than declared: libsndfile's samples if it reads
    them, else the frames that dr_flac decoded (both decoders check every FLAC frame's CRC)."""
    try:
        with SndSource.open(path, data) as src:
            y, complete = read_mono(src, limit)
    except AudioError:
        raise
    except Exception:  # libsndfile fails on FLAC data that ends early ("psf_fseek() failed")
        return partial, True
    return (y, complete) if y.size >= partial.size else (partial, True)


def _refuse_longer(path: Path, info: AudioInfo, max_seconds: float) -> int:
    """Frames to read under ``max_seconds``: one more than allowed, to notice a file that
    holds more than its header says; AudioTooLongError when the header declares more."""
    allowed = int(math.floor(max_seconds * info.sample_rate))
    if info.frames is not None and info.frames > allowed:
        raise AudioTooLongError(too_long_message(path, max_seconds, info.duration))
    return allowed + 1


def too_long_message(path: Path, max_seconds: float, seconds: float | None = None) -> str:
    lasts = f"lasts {seconds:.1f} s" if seconds is not None else "holds more audio"
    return f"{path.name} {lasts}, more than the maximum of {max_seconds:g} s"


def decode_failure(path: Path, exc: BaseException) -> AudioError:
    """The AudioError that reading ``path`` ends with, whatever went wrong: the reason
    (as :func:`probe` gives it, or the decoder's message) after ``cannot decode <name>:``."""
    if isinstance(exc, AudioTooLongError):
        return exc
    if isinstance(exc, MemoryError):
        return AudioError(f"cannot decode {path.name}: out of memory")
    return AudioError(f"cannot decode {path.name}: {clean_message(exc)}")


def clean_samples(y: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``y`` with NaN and infinities set to 0 (in place), their count, and the count of
    samples at full scale."""
    non_finite = 0
    finite = np.isfinite(y)
    if not finite.all():
        non_finite = int(y.size - np.count_nonzero(finite))
        y[~finite] = 0.0
    clipped = int(np.count_nonzero(y >= 0.999) + np.count_nonzero(y <= -0.999))
    return y, non_finite, clipped


# ---------------------------------------------------------------------------------------
# how long a file really is
# ---------------------------------------------------------------------------------------
def count_frames(path: str | Path, *, data: bytes | None = None) -> int:
    """Frames the file really holds, without keeping its audio in memory.

    When the header declares a length and the last :data:`END_CHECK_FRAMES` frames before
    it decode, that length (a seek and one small read, however long the file). Otherwise
    (a header that promises more than the file holds, or says nothing) the frames are
    counted by decoding in blocks and dropping them: memory is one block, and the time is
    that of the audio actually present. libsndfile may stop a block early on a damaged
    compressed file; the count then ends at the last block it decoded.

    Raises
    ------
    AudioError
        ``cannot decode <name>: <reason>``, as :func:`decode`.
    """
    path = Path(path)
    try:
        with open_source(path, data) as src:
            n = src.info.frames
            if n is not None:
                k = min(n, END_CHECK_FRAMES)
                tail = np.empty((k, src.info.channels), dtype=np.float32)
                with contextlib.suppress(Exception):
                    if src.seek(n - k) and src.read_into(tail) == k:
                        return n
        with open_source(path, data) as src:
            return count_present(src)
    except Exception as exc:
        raise decode_failure(path, exc) from exc


# ---------------------------------------------------------------------------------------
# headers and helpers
# ---------------------------------------------------------------------------------------
def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad or crop ``y`` to exactly ``n`` samples."""
    if y.shape[0] >= n:
        return y[:n]
    return np.pad(y, (0, n - y.shape[0]))


def check_rate(sr: int) -> None:
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ParameterError(f"sr must be a positive integer, got {sr!r}")


def check_seconds(name: str, value: float) -> None:
    number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if not number or not value > 0 or not math.isfinite(value):
        raise ParameterError(f"{name} must be a positive number of seconds, got {value!r}")
