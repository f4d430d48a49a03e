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
  whole file (:func:`decode`); long files are read block by block (:func:`stream`);
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
from collections.abc import Iterator
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
    "STREAM_BLOCK_SECONDS", "AudioInfo", "AudioStream", "AudioTooLongError", "DecodedAudio", "count_frames",
    "declared_frames", "decode", "fit_length", "probe", "stream",
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
    _check_rate(sr)
    if nominal_seconds is not None:
        _check_seconds("nominal_seconds", nominal_seconds)
    if max_seconds is not None:
        _check_seconds("max_seconds", max_seconds)
    try:
        return _decode(path, sr=sr, nominal_seconds=nominal_seconds, data=data, max_seconds=max_seconds)
    except Exception as exc:  # AudioError, MemoryError, LibsndfileError, RuntimeError, soxr's ValueError...
        raise _failure(path, exc) from exc


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
        raise AudioTooLongError(_too_long(path, max_seconds))
    y, non_finite, clipped = _clean_samples(y)
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
        raise AudioTooLongError(_too_long(path, max_seconds, info.duration))
    return allowed + 1


def _too_long(path: Path, max_seconds: float, seconds: float | None = None) -> str:
    lasts = f"lasts {seconds:.1f} s" if seconds is not None else "holds more audio"
    return f"{path.name} {lasts}, more than the maximum of {max_seconds:g} s"


def _failure(path: Path, exc: BaseException) -> AudioError:
    """The AudioError that reading ``path`` ends with, whatever went wrong: the reason
    (as :func:`probe` gives it, or the decoder's message) after ``cannot decode <name>:``."""
    if isinstance(exc, AudioTooLongError):
        return exc
    if isinstance(exc, MemoryError):
        return AudioError(f"cannot decode {path.name}: out of memory")
    return AudioError(f"cannot decode {path.name}: {clean_message(exc)}")


def _clean_samples(y: np.ndarray) -> tuple[np.ndarray, int, int]:
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
        raise _failure(path, exc) from exc


# ---------------------------------------------------------------------------------------
# streaming a long file (predict)
# ---------------------------------------------------------------------------------------
class AudioStream:
    """Mono float32 blocks of a file at a target rate, in bounded memory; see :func:`stream`.

    Iterate once; the counters are final when the iteration ends. Use it as a context
    manager (or call :meth:`close`) to release the file early.

    Attributes
    ----------
    info : AudioInfo
        What the header claims (checked as by :func:`probe`).
    sr : int
        Rate of the blocks.
    frames : int
        Source frames read so far.
    non_finite : int
        NaN and infinite samples set to 0 so far.
    clipped : int
        Samples at full scale so far.
    capped : bool
        Whether reading stopped at ``max_seconds`` with more audio in the file.
    truncated : bool
        Whether the FLAC decoder found fewer frames than the header declares (the frames
        present are used).
    """

    def __init__(
        self, path: Path, *, sr: int, block_seconds: float, max_seconds: float | None, over: str, data: bytes | None
    ) -> None:
        self.path, self.sr = path, sr
        self._src = open_source(path, data)
        self.info = self._src.info
        self._max_seconds, self._over = max_seconds, over
        self._max = None if max_seconds is None else int(math.floor(max_seconds * self.info.sample_rate))
        if self._max is not None and over == "error" and self.info.frames is not None and self.info.frames > self._max:
            self.close()
            raise AudioTooLongError(_too_long(path, max_seconds, self.info.duration))
        self._block = max(1, int(round(block_seconds * self.info.sample_rate)))
        self.frames = self.non_finite = self.clipped = 0
        self.capped = self.truncated = False
        self._started = False

    @property
    def duration(self) -> float:
        """Seconds of source audio read so far."""
        return self.frames / self.info.sample_rate

    @property
    def clipped_fraction(self) -> float:
        return self.clipped / self.frames if self.frames else 0.0

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._started:
            raise ParameterError("an AudioStream can be iterated once; call stream() again")
        self._started = True
        return self._blocks()

    def _blocks(self) -> Iterator[np.ndarray]:
        try:
            yield from self._resampled(self._mono_blocks())
        except Exception as exc:  # LibsndfileError mid-file, soxr errors, MemoryError
            raise _failure(self.path, exc) from exc
        finally:
            self.close()

    def _mono_blocks(self) -> Iterator[np.ndarray]:
        declared = self.info.frames
        while True:
            n = self._block
            if self._max is not None:
                n = min(n, self._max + 1 - self.frames)  # one frame past the cap tells more is there
            y = np.empty(n, dtype=np.float32)
            got = self._src.read_mono(y)
            y = y[:got]
            if self._max is not None and self.frames + got > self._max:
                if self._over == "error":
                    raise AudioTooLongError(_too_long(self.path, self._max_seconds or 0.0))
                y, self.capped = y[: self._max - self.frames], True
            y, non_finite, clipped = _clean_samples(y)
            self.frames += y.size
            self.non_finite += non_finite
            self.clipped += clipped
            if y.size:
                yield y
            if self.capped or got < n:
                if declared is not None and self.frames < declared and not self.capped:
                    self.truncated = self._src.decoder == "dr_flac"  # libsndfile raises instead
                return

    def _resampled(self, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        if self.info.sample_rate == self.sr:
            yield from blocks
            return
        import soxr

        rs = soxr.ResampleStream(self.info.sample_rate, self.sr, 1, dtype="float32", quality="HQ")
        for y in blocks:
            out = rs.resample_chunk(y, last=False)
            if out.size:
                yield out
        out = rs.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        if out.size:
            yield out

    def close(self) -> None:
        """Release the file (iteration ends)."""
        self._src.close()

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stream(
    path: str | Path,
    *,
    sr: int,
    block_seconds: float = STREAM_BLOCK_SECONDS,
    max_seconds: float | None = None,
    over: str = "error",
    data: bytes | None = None,
) -> AudioStream:
    """Read a whole file as mono float32 blocks at ``sr``, in memory bounded by one block.

    Blocks hold about ``block_seconds`` of audio (the resampler's delay shifts where they
    end); their concatenation equals ``decode(path, sr=sr, nominal_seconds=None).y``
    (soxr's streaming resampler gives the one-shot samples; tests check it within
    ``1e-6``). Memory is one block plus the resampler's state, whatever the file's
    length, channels or claims, and the time is linear in its length.

    Parameters
    ----------
    path : str or Path
        Any file that :func:`probe` accepts.
    sr : int > 0
        Rate of the blocks.
    block_seconds : float > 0
        Seconds of source audio per block.
    max_seconds : float > 0, optional
        The most audio to read.
    over : {'error', 'crop'}
        What to do with a longer file: ``'error'`` raises AudioError (at once when the
        header declares more; during the iteration when the file holds more than its
        header says); ``'crop'`` stops after ``max_seconds`` and sets ``capped``.
    data : bytes, optional
        The file's content, already read.

    Returns
    -------
    AudioStream
        An iterable of np.ndarray [shape=(n,), dtype=float32] blocks, with ``info`` and
        counters (``frames``, ``duration``, ``non_finite``, ``clipped_fraction``,
        ``capped``, ``truncated``).

    Raises
    ------
    AudioError
        ``cannot decode <name>: <reason>``: at once if :func:`probe` would refuse the
        file; during the iteration, if decoding fails or memory runs out.
    AudioTooLongError
        With ``over='error'``: at once when the header declares more than
        ``max_seconds``, during the iteration when the file holds more than it declares.
    ParameterError
        If ``sr``, ``block_seconds`` or ``max_seconds`` is not positive, or ``over`` is
        not one of the two choices.
    """
    _check_rate(sr)
    _check_seconds("block_seconds", block_seconds)
    if max_seconds is not None:
        _check_seconds("max_seconds", max_seconds)
    if over not in ("error", "crop"):
        raise ParameterError(f"over must be 'error' or 'crop', got {over!r}")
    path = Path(path)
    try:
        return AudioStream(path, sr=sr, block_seconds=block_seconds, max_seconds=max_seconds, over=over, data=data)
    except Exception as exc:
        raise _failure(path, exc) from exc


# ---------------------------------------------------------------------------------------
# headers and helpers
# ---------------------------------------------------------------------------------------
def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad or crop ``y`` to exactly ``n`` samples."""
    if y.shape[0] >= n:
        return y[:n]
    return np.pad(y, (0, n - y.shape[0]))


def _check_rate(sr: int) -> None:
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ParameterError(f"sr must be a positive integer, got {sr!r}")


def _check_seconds(name: str, value: float) -> None:
    number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if not number or not value > 0 or not math.isfinite(value):
        raise ParameterError(f"{name} must be a positive number of seconds, got {value!r}")
