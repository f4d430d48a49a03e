"""Opening audio files: what counts as audio, and two decoders read a block at a time.

The layer under :mod:`feature_store.audio` (use that module's :func:`~feature_store.audio.probe`,
:func:`~feature_store.audio.decode` and :func:`~feature_store.audio_stream.stream`):

* :func:`accept` is the one definition of a usable file, applied to every header read;
* :func:`open_source` opens a file with dr_flac (16/24-bit FLAC, read straight into NumPy
  arrays) or libsndfile, behind one interface that reads mono float32 frames into arrays
  the caller sized, mixing channels a block at a time;
* :func:`read_mono`, :func:`count_present` and :func:`declared_frames` read the start of a
  file, count what it really holds and tell what a WAV/AU header promised.

Nothing here allocates from a header's claim: sizes come from the caller's limits or from
the data actually decoded.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from feature_store.errors import AudioError

#: Lowest and highest sample rates accepted (Hz). A header outside claims a duration that
#: has nothing to do with the bytes (1 Hz makes 40 KB last 5 hours) or is not music.
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 384000
#: float32 values read at a time when channels are mixed down.
MIX_BLOCK_SAMPLES = 1 << 18
#: Frames decoded at the claimed end of a long file to check that they are there.
END_CHECK_FRAMES = 4096
#: Seconds of audio per block when a file is read to its end without a limit.
BLOCK_SECONDS = 10.0
#: libsndfile's frame count for a stream of unknown length (SF_COUNT_MAX).
_UNKNOWN_FRAMES = 1 << 62


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, once :func:`accept` has accepted it (see
    :func:`feature_store.audio.probe`).

    Attributes
    ----------
    format : str
        libsndfile's major format, lower case: ``'wav'``, ``'flac'``, ``'au'``, ``'ogg'``...
    subtype : str
        libsndfile's subtype: ``'PCM_16'``, ``'FLOAT'``, ``'VORBIS'``...
    sample_rate : int
        In ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE``.
    channels : int >= 1
    frames : int or None
        Frames the header declares (libsndfile already shortens a WAV or AU whose data
        chunk promises more than the file holds; see :func:`declared_frames`); ``None``
        when the header does not say (a FLAC written as a stream). A compressed file may
        hold fewer: :func:`feature_store.audio.count_frames` checks.
    """

    format: str
    subtype: str
    sample_rate: int
    channels: int
    frames: int | None

    @property
    def duration(self) -> float | None:
        """Seconds that the header declares, or None when it does not say."""
        return None if self.frames is None else self.frames / self.sample_rate


def accept(info: AudioInfo) -> AudioInfo:
    """Raise the one-line reason why ``info`` is not usable audio, or return it."""
    if info.format == "raw":
        raise AudioError("no audio header: libsndfile could only guess header-less raw data")
    if not MIN_SAMPLE_RATE <= info.sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"sample rate {info.sample_rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")
    if info.channels < 1:
        raise AudioError("no audio channels")
    if info.frames == 0:
        raise AudioError("holds no audio samples")
    return info


# ---------------------------------------------------------------------------------------
# sources: an open file read as mono float32, a block at a time
# ---------------------------------------------------------------------------------------
class Source:
    """An open, accepted audio file; subclasses read interleaved float32 frames."""

    decoder = ""
    info: AudioInfo

    def read_into(self, out: np.ndarray) -> int:  # pragma: no cover - abstract
        """Read up to ``len(out)`` frames into ``out`` [shape=(n, channels)]; frames read."""
        raise NotImplementedError

    def seek(self, frame: int) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self) -> Source:
        return self

    def accepted(self) -> Source:
        """This source, if :func:`accept` takes its header; else closed, and the AudioError."""
        try:
            accept(self.info)
        except AudioError:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_mono(self, out: np.ndarray) -> int:
        """Fill ``out`` [shape=(n,), float32] with mono frames; fewer only at the end.

        Channels are averaged ``MIX_BLOCK_SAMPLES`` values at a time, so memory beyond
        ``out`` is one block whatever the channel count.
        """
        ch = self.info.channels
        if ch == 1:
            return self.read_into(out.reshape(-1, 1))
        step = max(1, MIX_BLOCK_SAMPLES // ch)
        scratch = np.empty((min(step, out.shape[0]), ch), dtype=np.float32)
        pos = 0
        while pos < out.shape[0]:
            n = min(step, out.shape[0] - pos)
            got = self.read_into(scratch[:n])
            np.mean(scratch[:got], axis=1, dtype=np.float32, out=out[pos : pos + got])
            pos += got
            if got < n:
                break
        return pos


class SndSource(Source):
    """libsndfile, through soundfile."""

    decoder = "libsndfile"

    def __init__(self, f: sf.SoundFile) -> None:
        self.f = f
        frames = int(f.frames)
        self.info = AudioInfo(
            format=str(f.format).lower(), subtype=str(f.subtype), sample_rate=int(f.samplerate),
            channels=int(f.channels), frames=None if frames >= _UNKNOWN_FRAMES else frames,
        )

    @classmethod
    def open(cls, path: Path, data: bytes | None) -> SndSource:
        try:
            f = sf.SoundFile(str(path) if data is None else io.BytesIO(data))
        except Exception as exc:  # LibsndfileError, RuntimeError, TypeError...
            raise AudioError(f"unreadable header: {clean_message(exc)}") from exc
        return cls(f).accepted()

    def read_into(self, out: np.ndarray) -> int:
        if out.shape[0] == 0:
            return 0
        # a 1-d view for mono: soundfile wants (n,) arrays for one channel
        return self.f.read(out.shape[0], dtype="float32", out=out[:, 0] if out.shape[1] == 1 else out).shape[0]

    def seek(self, frame: int) -> bool:
        try:
            self.f.seek(frame)
        except Exception:  # LibsndfileError: psf_fseek() failed past the data
            return False
        return True

    def close(self) -> None:
        self.f.close()


class FlacSource(Source):
    """16/24-bit FLAC through miniaudio's dr_flac, read straight into NumPy arrays.

    dr_flac scales samples as libsndfile does (``x / 2**15``, ``x / 2**23``), so the
    samples are identical. :meth:`open` gives None for anything else, for libsndfile.
    """

    decoder = "dr_flac"

    def __init__(self, lib: Any, ffi: Any, handle: Any, data: bytes | None) -> None:
        self._lib, self._ffi, self._h, self._data = lib, ffi, handle, data  # data: dr_flac reads it in place
        total = int(handle.totalPCMFrameCount)
        self.info = AudioInfo(
            format="flac", subtype="PCM_16" if handle.bitsPerSample // 8 == 2 else "PCM_24",
            sample_rate=int(handle.sampleRate), channels=int(handle.channels), frames=total or None,
        )

    @classmethod
    def open(cls, path: Path, data: bytes | None) -> FlacSource | None:
        try:
            from miniaudio import ffi, lib
        except ImportError:  # pragma: no cover - a dependency; libsndfile does the same work
            return None
        if data is None:
            handle = lib.ma_dr_flac_open_file(os.fsencode(path), ffi.NULL)
        else:
            handle = lib.ma_dr_flac_open_memory(data, len(data), ffi.NULL)
        if not handle:
            return None
        if handle.bitsPerSample // 8 not in (2, 3) or handle.channels < 1:
            lib.ma_dr_flac_close(handle)
            return None
        return cls(lib, ffi, handle, data).accepted()

    def read_into(self, out: np.ndarray) -> int:
        if out.shape[0] == 0:
            return 0
        buf = self._ffi.cast("float *", self._ffi.from_buffer(out, require_writable=True))
        return int(self._lib.ma_dr_flac_read_pcm_frames_f32(self._h, out.shape[0], buf))

    def seek(self, frame: int) -> bool:
        return bool(self._lib.ma_dr_flac_seek_to_pcm_frame(self._h, frame))

    def close(self) -> None:
        if self._h is not None:
            self._lib.ma_dr_flac_close(self._h)
            self._h = None


def open_source(path: Path, data: bytes | None = None, *, fast: bool = True) -> Source:
    """The file opened and accepted (:func:`accept`): dr_flac for 16/24-bit FLAC, else libsndfile.

    Raises
    ------
    AudioError
        ``unreadable header: ...`` or the reason :func:`accept` gives.
    """
    if fast and path.suffix.lower() == ".flac":
        src = FlacSource.open(path, data)
        if src is not None:
            return src
    return SndSource.open(path, data)


class ShortRead(Exception):
    """dr_flac decoded fewer frames than the header declares (``y``): libsndfile decides."""

    def __init__(self, y: np.ndarray) -> None:
        super().__init__("short read")
        self.y = y


def read_mono(src: Source, limit: int | None) -> tuple[np.ndarray, bool]:
    """Up to ``limit`` mono frames from the start (all when None), and whether the end
    of the file was reached.

    With a limit, one array of ``min(limit, declared frames)`` is filled; without one, or
    when the header does not say, blocks are read until the decoder stops, so memory
    follows the audio present, never the header's claim.
    """
    declared = src.info.frames
    if limit is None or declared is None:
        y, complete = _read_blocks(src, limit)
    else:
        want = min(limit, declared)
        y = np.empty(want, dtype=np.float32)
        got = src.read_mono(y)
        y, complete = y[:got], got < want or want == declared
    if src.decoder == "dr_flac" and declared is not None and y.size < min(declared, limit or declared):
        raise ShortRead(y)
    return y, complete


def _read_blocks(src: Source, limit: int | None) -> tuple[np.ndarray, bool]:
    """Blocks of :data:`BLOCK_SECONDS` until the decoder stops or ``limit`` frames."""
    step = int(BLOCK_SECONDS * src.info.sample_rate)
    parts: list[np.ndarray] = []
    total = 0
    while limit is None or total < limit:
        n = step if limit is None else min(step, limit - total)
        block = np.empty(n, dtype=np.float32)
        got = src.read_mono(block)
        parts.append(block[:got])
        total += got
        if got < n:
            return np.concatenate(parts), True
    return np.concatenate(parts), False


def count_present(src: Source) -> int:
    """Frames left in ``src``, counted by decoding them a block at a time and dropping them.

    A decoder error ends the count (libsndfile reports the end of damaged FLAC data that
    way); with libsndfile the blocks are small, so at most :data:`END_CHECK_FRAMES` frames
    go uncounted.
    """
    step = max(1, MIX_BLOCK_SAMPLES // src.info.channels)
    if src.decoder == "libsndfile":
        step = min(step, END_CHECK_FRAMES)  # a decoder error loses at most this much
    block = np.empty((step, src.info.channels), dtype=np.float32)
    total = 0
    while True:
        try:
            got = src.read_into(block)
        except Exception:  # LibsndfileError: "flac decoder lost sync", "psf_fseek() failed"
            return total
        total += got
        if got < step:
            return total


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


def clean_message(exc: BaseException) -> str:
    """An exception as one line of text."""
    text = str(exc).strip().replace("\n", " ")
    return text or type(exc).__name__
