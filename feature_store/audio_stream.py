"""Streaming a long file (predict): mono float32 blocks at a target rate, in bounded memory.

The policy is :mod:`feature_store.audio`'s; this module reads a file block by block instead
of the nominal 30 s.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from feature_store.audio import (
    STREAM_BLOCK_SECONDS,
    AudioTooLongError,
    check_rate,
    check_seconds,
    clean_samples,
    decode_failure,
    too_long_message,
)
from feature_store.decoders import open_source
from feature_store.errors import ParameterError

__all__ = ["AudioStream", "stream"]


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
            raise AudioTooLongError(too_long_message(path, max_seconds, self.info.duration))
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
            raise decode_failure(self.path, exc) from exc
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
                    raise AudioTooLongError(too_long_message(self.path, self._max_seconds or 0.0))
                y, self.capped = y[: self._max - self.frames], True
            y, non_finite, clipped = clean_samples(y)
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
    check_rate(sr)
    check_seconds("block_seconds", block_seconds)
    if max_seconds is not None:
        check_seconds("max_seconds", max_seconds)
    if over not in ("error", "crop"):
        raise ParameterError(f"over must be 'error' or 'crop', got {over!r}")
    path = Path(path)
    try:
        return AudioStream(path, sr=sr, block_seconds=block_seconds, max_seconds=max_seconds, over=over, data=data)
    except Exception as exc:
        raise decode_failure(path, exc) from exc
