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
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from feature_store.errors import ParameterError
from feature_store.features import MIN_CLIP_COVERAGE
from feature_store.params import MIN_HOP_SECONDS, validate_clip_seconds

if TYPE_CHECKING:  # pragma: no cover
    from feature_store.engine.view import FeatureView


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
    """The window features of mono audio ``y`` at ``view.sample_rate``, all at once.

    Returns
    -------
    x : np.ndarray
    starts_seconds : np.ndarray [shape=(windows,)]
    padded_seconds : float
    """
    c = validate_clip_seconds(clip_seconds)
    hop = _hop(c, hop_seconds)
    y = np.asarray(y, dtype=np.float32)
    need = c * view.sample_rate
    padded = 0.0
    if y.size < need:
        padded = (need - y.size) / view.sample_rate
        y = np.pad(y, (0, need - y.size))
    entry = view.prepare(y, whole_file=True)
    starts = window_starts(total_frames=view.entry_frames(entry), frames=view.clip_frames(c),
                           hop_frames=hop * view.frame_rate)
    x = _features(view, entry, starts, c, arrays)
    return x, np.asarray(starts, np.float64) / view.frame_rate, padded


def _hop(clip_seconds: int, hop_seconds: float | None) -> float:
    hop = float(clip_seconds if hop_seconds is None else hop_seconds)
    if not (math.isfinite(hop) and hop >= MIN_HOP_SECONDS):
        raise ParameterError(f"hop_seconds must be a finite number >= {MIN_HOP_SECONDS}, got {hop_seconds!r}")
    return hop


def _features(view: FeatureView, frames: np.ndarray, starts: Sequence[int], clip_seconds: int,
              arrays: Sequence[str] | None) -> np.ndarray:
    """The named arrays of the windows at ``starts`` (frames of ``frames``), through the stored dtype."""
    from feature_store.engine.arrays import assemble

    rows = view.clip_rows(frames, {clip_seconds: list(starts)})[clip_seconds]
    specs = {s.name: s for s in view.array_specs(clip_seconds)}
    names = tuple(arrays or view.default_arrays)
    # round through the stored dtype: a float16 store's model was trained on float16 values
    parts = [np.stack(rows[n]).astype(specs[n].dtype).astype(np.float32) if len(rows[n])
             else np.zeros((0, *specs[n].shape), np.float32) for n in names]
    return assemble(parts, names)


@dataclasses.dataclass
class WindowBatch:
    """Some consecutive windows of a file: their features ``x`` and start times."""

    x: np.ndarray
    starts_seconds: np.ndarray


class WindowStream:
    """The window features of one audio file, batch by batch, in memory that does not grow with
    the file's length; iterate once.

    The file is streamed (:func:`feature_store.audio_stream.stream`) and framed piece by piece
    (:mod:`feature_store.engine.frames`); a view whose values depend on the whole signal (the
    mel's dB floor) reads the file twice, first for that statistic. The windows and their
    values are those of :func:`audio_windows` on the whole decoded file. A view that cannot
    stream is decoded whole (``max_seconds`` bounds it).

    After the iteration: ``duration`` (seconds of audio), ``padded_seconds``, ``source_sr``,
    ``source_channels`` and ``windows`` (how many).

    Raises
    ------
    AudioError
        If the file cannot be decoded (``AudioTooLongError`` past ``max_seconds``).
    """

    def __init__(self, view: FeatureView, path: str | os.PathLike[str], *, clip_seconds: int,
                 hop_seconds: float | None = None, arrays: Sequence[str] | None = None, batch: int = 64,
                 max_seconds: float | None = None) -> None:
        self.view, self.path = view, path
        self.clip_seconds = validate_clip_seconds(clip_seconds)
        self.hop = _hop(self.clip_seconds, hop_seconds)
        if not (isinstance(batch, int) and batch > 0):
            raise ParameterError(f"batch must be a positive integer, got {batch!r}")
        self.arrays, self.batch, self.max_seconds = arrays, batch, max_seconds
        self.duration = self.padded_seconds = 0.0
        self.source_sr = self.source_channels = self.windows = self._samples = 0

    def __iter__(self) -> Iterator[WindowBatch]:
        if self.view.frame_spec is None:
            return self._whole()
        return self._streamed()

    def _open(self) -> Any:
        from feature_store.audio_stream import stream

        st = stream(self.path, sr=self.view.sample_rate, max_seconds=self.max_seconds)
        self.source_sr, self.source_channels = int(st.info.sample_rate), int(st.info.channels)
        return st

    def _whole(self) -> Iterator[WindowBatch]:
        from feature_store.audio import decode

        audio = decode(self.path, sr=self.view.sample_rate, nominal_seconds=None, max_seconds=self.max_seconds)
        self.duration, self.source_sr, self.source_channels = audio.duration, audio.source_sr, audio.source_channels
        x, starts, self.padded_seconds = audio_windows(self.view, audio.y, clip_seconds=self.clip_seconds,
                                                       hop_seconds=self.hop, arrays=self.arrays)
        self.windows = len(starts)
        for i in range(0, len(starts), self.batch):
            yield WindowBatch(x[i: i + self.batch], starts[i: i + self.batch])

    def _frames(self, *, finish: bool, peak: float | None = None) -> Iterator[np.ndarray]:
        """The frames of the file (finished with ``peak``, or raw), stretch by stretch: one pass."""
        from feature_store.engine.frames import framed

        need = self.clip_seconds * self.view.sample_rate
        with self._open() as st:
            state = None
            for segment, _ in framed(_counted(st, self), self.view.frame_spec, min_samples=need):
                raw, state = self.view.frame_chunk(segment, state)
                yield self.view.finish_frames(raw, peak) if finish else raw
            self.duration = st.duration
        self.padded_seconds = max(0, need - self._samples) / self.view.sample_rate

    def _streamed(self) -> Iterator[WindowBatch]:
        view, c = self.view, self.clip_seconds
        peak = None
        if view.needs_peak:
            peak = max((view.frame_peak(raw) for raw in self._frames(finish=False)), default=float("-inf"))
        width, hop_frames = view.clip_frames(c), self.hop * view.frame_rate
        buf, offset, k, last = None, 0, 0, None
        pending_x: list[np.ndarray] = []
        pending_starts: list[np.ndarray] = []

        def due(end: int) -> list[int]:
            nonlocal k, last
            out = []
            while (s := int(math.floor(k * hop_frames + 1e-9))) + width <= end:
                if last is None or s > last:
                    out.append(s)
                    last = s
                k += 1
            return out

        for frames in self._frames(finish=True, peak=peak):
            buf = frames if buf is None else np.concatenate([buf, frames], axis=1)
            starts = due(offset + buf.shape[1])
            if starts:
                pending_x.append(_features(view, buf, [s - offset for s in starts], c, self.arrays))
                pending_starts.append(np.asarray(starts, np.float64))
            # keep what the next window, or a last window ending with the file, may need
            keep = max(offset, min(int(math.floor(k * hop_frames + 1e-9)), offset + buf.shape[1] - width))
            buf, offset = buf[:, keep - offset:], keep
            yield from self._flush(pending_x, pending_starts, final=False)
        total = offset + buf.shape[1]
        if last is not None and total - (last + width) > (1 - MIN_CLIP_COVERAGE) * width:
            pending_x.append(_features(view, buf, [total - width - offset], c, self.arrays))
            pending_starts.append(np.asarray([total - width], np.float64))
        yield from self._flush(pending_x, pending_starts, final=True)

    def _flush(self, xs: list[np.ndarray], starts: list[np.ndarray], *, final: bool) -> Iterator[WindowBatch]:
        """Yield full batches (every window left when ``final``)."""
        while xs and (final or sum(len(s) for s in starts) >= self.batch):
            x, st = np.concatenate(xs), np.concatenate(starts)
            xs.clear()
            starts.clear()
            n = len(st) if final else (len(st) // self.batch) * self.batch
            for i in range(0, n, self.batch):
                self.windows += len(st[i: i + self.batch])
                yield WindowBatch(x[i: i + self.batch], st[i: i + self.batch] / self.view.frame_rate)
            if n < len(st):
                xs.append(x[n:])
                starts.append(st[n:])
            if final:
                return


def _counted(blocks: Any, owner: WindowStream) -> Iterator[np.ndarray]:
    owner._samples = 0
    for block in blocks:
        owner._samples += block.size
        yield block


def file_windows(view: FeatureView, path: str | os.PathLike[str], *, clip_seconds: int,
                 hop_seconds: float | None = None, arrays: Sequence[str] | None = None,
                 max_seconds: float | None = None) -> FileWindows:
    """Every window of :class:`WindowStream` at once (their features grow with the file).

    Raises
    ------
    AudioError
        If the file cannot be decoded.
    """
    ws = WindowStream(view, path, clip_seconds=clip_seconds, hop_seconds=hop_seconds, arrays=arrays,
                      max_seconds=max_seconds)
    batches = list(ws)
    x = np.concatenate([b.x for b in batches]) if batches else np.zeros((0,), np.float32)
    starts = np.concatenate([b.starts_seconds for b in batches]) if batches else np.zeros(0)
    return FileWindows(x=x, starts_seconds=starts, duration=ws.duration, padded_seconds=ws.padded_seconds,
                       source_sr=ws.source_sr, source_channels=ws.source_channels)
