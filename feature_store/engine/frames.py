"""A view's frames of a long audio stream, computed piece by piece in bounded memory.

Every view frames audio like librosa's centred STFT: frame ``t`` covers the samples
``[t * hop - n_fft // 2, t * hop + n_fft // 2)``, zero outside the signal, and a signal of
``n`` samples has ``1 + n // hop`` frames. :func:`framed` turns a stream of audio blocks into
consecutive stretches of padded samples, each covering a run of whole frames, so that a view
computes its frames stretch by stretch (:meth:`~feature_store.engine.view.FeatureView.
frame_chunk`) and gets the frames of the whole signal, value for value, holding one stretch.

A view whose values depend on the whole signal (the mel's ``top_db`` floor is taken from the
loudest frame) reports that statistic per stretch (``frame_peak``) and finishes each stretch
with the statistic of the whole signal (``finish_frames``), which a first pass over the
stream has measured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

import numpy as np

#: Frames per stretch handed to a view (about 95 s at hop 512 and 22050 Hz).
CHUNK_FRAMES = 4096


@dataclasses.dataclass(frozen=True)
class FrameSpec:
    """How a view frames audio: its rate, FFT length and hop (librosa's centred framing)."""

    sr: int
    n_fft: int
    hop: int

    def frames(self, samples: int) -> int:
        """Frames of a signal of ``samples`` samples."""
        return 1 + samples // self.hop


def framed(blocks: Iterable[np.ndarray], spec: FrameSpec, *, min_samples: int = 0,
           chunk_frames: int = CHUNK_FRAMES) -> Iterator[tuple[np.ndarray, int]]:
    """Consecutive stretches of padded samples covering the frames of a stream.

    Parameters
    ----------
    blocks : iterable of np.ndarray [shape=(n,), dtype=float32]
        The signal, block by block, at ``spec.sr``.
    spec : FrameSpec
    min_samples : int
        Pad the signal with zeros to at least this many samples (a file shorter than one
        clip is padded to one clip).
    chunk_frames : int > 0
        Frames per stretch (the last one may have fewer).

    Yields
    ------
    segment : np.ndarray [shape=((k - 1) * hop + n_fft,), dtype=float32]
        The samples that the next ``k`` frames cover.
    k : int
    """
    half, hop, n_fft = spec.n_fft // 2, spec.hop, spec.n_fft
    state = {"buf": np.zeros(half, dtype=np.float32), "start": -half, "t": 0}  # buf[0] is signal sample start

    def take(k: int) -> np.ndarray:
        """The samples of frames t .. t + k - 1; the buffer keeps what the next frame needs."""
        lo = state["t"] * hop - half - state["start"]
        segment = state["buf"][lo: lo + (k - 1) * hop + n_fft]
        state["buf"] = state["buf"][lo + k * hop:]
        state["start"] += lo + k * hop
        state["t"] += k
        return segment

    seen = 0
    for block in blocks:
        block = np.asarray(block, dtype=np.float32)
        seen += block.size
        state["buf"] = np.concatenate([state["buf"], block])
        while True:
            end = state["start"] + state["buf"].size  # first signal sample not yet held
            ready = (end - (state["t"] * hop - half) - n_fft) // hop + 1
            if ready < chunk_frames:
                break
            yield take(chunk_frames), chunk_frames
    tail = np.zeros(max(0, min_samples - seen) + half + n_fft, np.float32)  # short files, then the end pad
    state["buf"] = np.concatenate([state["buf"], tail])
    total = spec.frames(max(seen, min_samples))
    while state["t"] < total:
        k = min(chunk_frames, total - state["t"])
        yield take(k), k
