"""Decoding and normalising audio under one recorded policy.

Policy (recorded in every store's registry as :data:`AUDIO_POLICY`):

* decode any format that libsndfile reads (wav, au, flac, ogg, mp3, ...) as float32; 16- and
  24-bit FLAC goes through miniaudio (dr_flac) instead, which gives the same samples as
  libsndfile (tests check it on the real clips) in about 70% of the time, and falls back to
  libsndfile for anything it does not decode cleanly;
* mix down to mono by averaging channels;
* replace NaN and infinite samples by 0 and count them;
* resample to the feature rate with soxr (high quality);
* pad with zeros or crop to the nominal 30 s (GTZAN clips last 29.9-30.6 s).
"""

from __future__ import annotations

import dataclasses
import io
import struct
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from feature_store.errors import AudioError
from feature_store.params import NOMINAL_SECONDS

AUDIO_POLICY: dict[str, str] = {
    "decode": "soundfile (libsndfile), float32; 16/24-bit FLAC via miniaudio (dr_flac), same samples",
    "channels": "mixed down to mono by the mean of channels",
    "non_finite": "NaN and +/-inf samples replaced by 0, count recorded",
    "resample": "soxr, quality HQ, to FeatureParams.sr",
    "length": f"zero-padded or cropped to the nominal {NOMINAL_SECONDS:g} s",
    "short_songs": "clips are made only where at least 95% of the clip is real audio",
}


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
        Seconds of real audio in the file (before padding or cropping).
    non_finite : int
        Samples that were NaN or infinite and were set to 0.
    clipped_fraction : float
        Fraction of samples at or beyond full scale (|x| >= 0.999).
    """

    y: np.ndarray
    sr: int
    source_sr: int
    source_channels: int
    duration: float
    non_finite: int
    clipped_fraction: float


def decode(
    path: str | Path, *, sr: int, nominal_seconds: float | None = NOMINAL_SECONDS, data: bytes | None = None
) -> DecodedAudio:
    """Decode ``path`` to mono float32 at ``sr`` under :data:`AUDIO_POLICY`.

    Parameters
    ----------
    path : str or Path
        Any file libsndfile can read.
    sr : int > 0
        Target sample rate.
    nominal_seconds : float or None
        Pad or crop to this many seconds; ``None`` keeps the real length.
    data : bytes, optional
        The file's content, already read: it is decoded instead of reading ``path`` again
        (``path`` then only names the file and its format). The store hashes a file and
        decodes the very bytes it hashed.

    Returns
    -------
    DecodedAudio

    Raises
    ------
    AudioError
        If the file cannot be decoded or holds no samples.
    """
    path = Path(path)
    try:
        samples, source_sr = _read(path, data)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise AudioError(f"cannot decode {path.name}: {_clean(exc)}") from exc
    if samples.size == 0 or samples.shape[0] == 0:
        raise AudioError(f"{path.name} holds no audio samples")
    channels = samples.shape[1] if samples.ndim == 2 else 1
    y = samples.mean(axis=1, dtype=np.float32) if samples.ndim == 2 else samples
    if not np.isfinite(y).all():
        finite = np.isfinite(y)
        non_finite = int(y.size - np.count_nonzero(finite))
        y = np.where(finite, y, np.float32(0.0)).astype(np.float32)
    else:
        non_finite = 0
    clipped = np.count_nonzero(y >= 0.999) + np.count_nonzero(y <= -0.999)
    clipped = float(clipped) / y.size
    duration = y.size / float(source_sr)
    if source_sr != sr:
        import soxr

        y = soxr.resample(y, source_sr, sr, quality="HQ").astype(np.float32, copy=False)
    if nominal_seconds is not None:
        y = fit_length(y, int(round(nominal_seconds * sr)))
    return DecodedAudio(
        y=np.ascontiguousarray(y, dtype=np.float32),
        sr=sr,
        source_sr=int(source_sr),
        source_channels=int(channels),
        duration=float(duration),
        non_finite=non_finite,
        clipped_fraction=clipped,
    )


def _read(path: Path, data: bytes | None = None) -> tuple[np.ndarray, int]:
    """Samples (1-d for mono, else (frames, channels)) as float32, and the sample rate."""
    if path.suffix.lower() == ".flac":
        fast = _read_flac(path, data)
        if fast is not None:
            return fast
    # 1-d for mono files: a contiguous array, not a strided column of a 2-d one
    source: Any = str(path) if data is None else io.BytesIO(data)
    return sf.read(source, dtype="float32", always_2d=False)


def _read_flac(path: Path, data: bytes | None = None) -> tuple[np.ndarray, int] | None:
    """16- or 24-bit FLAC through miniaudio (dr_flac); None to leave the file to libsndfile.

    dr_flac scales samples as libsndfile does (``x / 2**15``, ``x / 2**23``), so the result
    is sample-identical. Anything unexpected (other bit depths, a decoder error, fewer
    frames than the stream header declares) returns None, and libsndfile decides.
    """
    try:
        import miniaudio
    except ImportError:  # pragma: no cover - a dependency; soundfile does the same work
        return None
    try:
        if data is None:
            info = miniaudio.flac_get_file_info(str(path))
        else:
            info = miniaudio.flac_get_info(data)
        if info.sample_width not in (2, 3):
            return None
        decoded = miniaudio.flac_read_file_f32(str(path)) if data is None else miniaudio.flac_read_f32(data)
    except Exception:  # miniaudio.DecodeError, FileNotFoundError...: soundfile reports it
        return None
    y = np.frombuffer(decoded.samples, dtype=np.float32)
    channels = decoded.nchannels
    if channels < 1 or decoded.num_frames != info.num_frames or y.size != decoded.num_frames * channels:
        return None
    return (y.reshape(-1, channels) if channels > 1 else y), int(decoded.sample_rate)


def declared_frames(path: str | Path) -> int | None:
    """Frames that a WAV or AU header promises, or None when it does not say.

    libsndfile silently shortens a file whose header promises more data than the file holds,
    so the catalog compares this number with the frames it decoded to record the truncation.
    Only uncompressed PCM/float WAV (RIFF) and Sun AU headers are read; anything else, or a
    header that declares an unknown length (streaming writers), gives None.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    int or None
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return None
    if head[:4] == b".snd" and len(head) >= 24:  # Sun AU, big-endian
        _off, size, encoding, _sr, channels = struct.unpack(">5I", head[4:24])
        width = _AU_BYTES.get(encoding)
        if size == 0xFFFFFFFF or not width or not channels:
            return None
        return size // (width * channels)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block_align = 12, 0
    while pos + 8 <= len(head):
        cid, size = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if cid == b"fmt " and pos + 22 <= len(head):
            tag, _ch, _sr, _rate, block_align = struct.unpack("<HHIIH", head[pos + 8 : pos + 22])
            if tag not in (1, 3, 0xFFFE):  # PCM, IEEE float, extensible; not compressed formats
                return None
        elif cid == b"data":
            if not block_align or size in (0, 0xFFFFFFFF):
                return None
            return size // block_align
        pos += 8 + size + (size & 1)
    return None


#: Bytes per sample of the Sun AU encodings libsndfile reads.
_AU_BYTES = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}


def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad or crop ``y`` to exactly ``n`` samples."""
    if y.shape[0] >= n:
        return y[:n]
    return np.pad(y, (0, n - y.shape[0]))


def _clean(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    return text or type(exc).__name__
