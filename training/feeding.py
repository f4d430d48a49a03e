"""Feeding Keras: clips by position from memory or the HDF5 store, in seeded, augmented batches.

Batches come from a ``tf.data`` pipeline fed by a seeded NumPy generator: from memory when
the training clips fit comfortably, streamed from the HDF5 store otherwise. Augmentations
(random crops, gain, frequency shift, SpecAugment masks, mixup) are drawn from the same
seeded generator, so a seed gives the same run every time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl

from feature_store.errors import ParameterError, StoreError
from feature_store.quiet_tf import import_tensorflow
from training.config import TrainConfig
from training.models import to_layout
from training.normalizer import BandNormalizer


class ClipSource:
    """The clips of one selection, read by position, from memory or from the store.

    Parameters
    ----------
    index : pl.DataFrame
        Index rows (with ``hdf5_row``, ``label``, ``song_id``), in the order of positions.
    x : np.ndarray [shape=(clips, n_mels, frames)], optional
        The clips in memory; when omitted they are read through ``reader`` on demand.
    reader : feature_store.engine.read.RowReader, optional
        The store's rows (``ViewStore.rows``): each row is checked against its checksum as it
        is read.
    """

    def __init__(self, index: pl.DataFrame, *, x: np.ndarray | None = None, reader: Any = None) -> None:
        if (x is None) == (reader is None):
            raise ParameterError("give exactly one of x and reader")
        self.index = index
        self.x = x
        self.reader = reader
        self.rows = index["hdf5_row"].to_numpy()
        self.y = index["label"].to_numpy().astype(np.int64)
        self.song_ids = index["song_id"].to_list()
        if reader is not None:
            self._check_rows()

    def __len__(self) -> int:
        return int(self.rows.size)

    @property
    def streamed(self) -> bool:
        return self.x is None

    def read(self, positions: np.ndarray) -> np.ndarray:
        """Clips at ``positions`` (any order), as float32 (n, n_mels, frames)."""
        positions = np.asarray(positions, dtype=np.int64)
        if self.x is not None:
            return np.asarray(self.x[positions], dtype=np.float32)
        if self.reader is None:
            raise StoreError("the clips of this source were released (ClipSource.release)")
        return np.asarray(self.reader.read(self.rows[positions]), dtype=np.float32)

    def _check_rows(self) -> None:
        """The reader's rows must be the clips of our index (not a store rebuilt meanwhile)."""
        source = self.reader.index
        ok = not self.rows.size or (self.rows.min() >= 0 and self.rows.max() < source.height)
        if not ok or source["clip_id"].to_numpy()[self.rows].tolist() != self.index["clip_id"].to_list():
            self.reader.close()
            raise StoreError(f"the store at {self.reader.gen} was rebuilt while the run read it; try again")

    def chunks(self, positions: np.ndarray, size: int = 256) -> Iterator[np.ndarray]:
        for i in range(0, len(positions), size):
            yield self.read(positions[i : i + size])

    def close(self) -> None:
        """Close the store's file (it is opened again if the source is read again)."""
        if self.reader is not None:
            self.reader.close()

    def release(self) -> None:
        """Close the file and drop the clips held in memory: the source cannot be read again.

        A ``tf.data`` dataset made by :meth:`Feeder.dataset` keeps its generator, and so this
        source, alive in TensorFlow's registry of Python functions after training; released,
        what stays behind is a few bytes, not the clips of every run of a process.
        """
        self.close()
        self.x = self.reader = None

    def __enter__(self) -> ClipSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclasses.dataclass
class Feeder:
    """Seeded batches of (input, one-hot label, sample weight) for one set of positions."""

    source: ClipSource
    positions: np.ndarray
    normalizer: BandNormalizer
    layout: str
    n_classes: int
    batch_size: int
    seed: int
    weights: dict[int, float] | None = None
    config: TrainConfig | None = None  # augmentation settings; None: no augmentation
    crop_frames: int = 0
    shuffle: bool = False
    epoch: int = 0

    def batches(self, *, with_labels: bool = True) -> Iterator[Any]:
        rng = np.random.default_rng([self.seed, self.epoch, 7])
        self.epoch += 1
        order = rng.permutation(self.positions) if self.shuffle else self.positions
        for i in range(0, len(order), self.batch_size):
            pos = order[i : i + self.batch_size]
            yield self.finish(self.source.read(pos), self.source.y[pos], rng, with_labels=with_labels)

    def finish(self, x: np.ndarray, codes: np.ndarray, rng: np.random.Generator, *, with_labels: bool) -> Any:
        """One batch of raw clips ``x`` and their classes ``codes``, weighted, augmented and
        normalised: ``(x, y, w)``, or ``x`` alone without labels."""
        y = np.eye(self.n_classes, dtype=np.float32)[codes]
        w = (
            np.array([self.weights.get(int(c), 1.0) for c in codes], dtype=np.float32)
            if self.weights
            else np.ones(len(codes), dtype=np.float32)
        )
        if self.config is not None:
            x, y, w = augment_batch(x, y, w, config=self.config, crop_frames=self.crop_frames,
                                    normalizer=self.normalizer, rng=rng)
        else:
            x = self.normalizer.transform(x)
        x = to_layout(x, self.layout)
        return (x, y, w) if with_labels else x

    @property
    def n_batches(self) -> int:
        """Batches of one epoch."""
        return -(-len(self.positions) // self.batch_size)

    def dataset(self, input_shape: tuple, *, with_labels: bool = True) -> Any:
        """A ``tf.data.Dataset`` over :meth:`batches`, prefetching one batch ahead.

        The batch size of its signature is unknown (None), so that a short last batch runs
        the function traced for the others rather than a new trace.
        """
        tf = import_tensorflow()

        x_spec = tf.TensorSpec((None, *input_shape), tf.float32)
        if with_labels:
            sig = (x_spec, tf.TensorSpec((None, self.n_classes), tf.float32), tf.TensorSpec((None,), tf.float32))
        else:
            sig = x_spec
        ds = tf.data.Dataset.from_generator(lambda: self.batches(with_labels=with_labels), output_signature=sig)
        return ds.apply(tf.data.experimental.assert_cardinality(self.n_batches)).prefetch(1)


def augment_batch(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    *,
    config: TrainConfig,
    normalizer: BandNormalizer,
    rng: np.random.Generator,
    crop_frames: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Augment and normalise one training batch.

    Parameters
    ----------
    x : np.ndarray [shape=(n, n_mels, frames)]
        Raw dB clips.
    y : np.ndarray [shape=(n, classes)]
        One-hot labels.
    w : np.ndarray [shape=(n,)]
        Sample weights.
    config : TrainConfig
        ``crop_seconds`` (via ``crop_frames``), ``gain_db``, ``freq_shift``, ``spec_masks`` and
        ``mixup`` say what to do.
    normalizer : BandNormalizer
    rng : np.random.Generator
        The only source of randomness, so a seed gives the same batch every time.
    crop_frames : int
        Frames of each random crop (0: keep the whole clip).

    Returns
    -------
    x : np.ndarray [shape=(n, n_mels, crop_frames or frames), dtype=float32]
        Normalised clips.
    y, w : np.ndarray
        Labels and weights, mixed when mixup is on.
    """
    n, mels, frames = x.shape
    if crop_frames and crop_frames < frames:
        starts = rng.integers(0, frames - crop_frames + 1, size=n)
        x = np.stack([x[i, :, s : s + crop_frames] for i, s in enumerate(starts)])
    if config.gain_db:
        x = x + rng.uniform(-config.gain_db, config.gain_db, size=(n, 1, 1)).astype(np.float32)
    x = normalizer.transform(x)
    if config.freq_shift:
        shifts = rng.integers(-config.freq_shift, config.freq_shift + 1, size=n)
        for i, k in enumerate(shifts):
            if k > 0:
                x[i, k:] = x[i, :-k].copy()
                x[i, :k] = x[i, k]
            elif k < 0:
                x[i, :k] = x[i, -k:].copy()
                x[i, k:] = x[i, k - 1]
    if config.spec_masks:
        t_max, f_max = max(1, x.shape[2] // 10), max(1, mels // 10)
        for i in range(n):
            for _ in range(config.spec_masks):
                wt = int(rng.integers(0, t_max + 1))
                t0 = int(rng.integers(0, x.shape[2] - wt + 1))
                x[i, :, t0 : t0 + wt] = 0.0
                wf = int(rng.integers(0, f_max + 1))
                f0 = int(rng.integers(0, mels - wf + 1))
                x[i, f0 : f0 + wf, :] = 0.0
    if config.mixup and n > 1:
        lam = rng.beta(config.mixup, config.mixup, size=n).astype(np.float32)
        lam = np.maximum(lam, 1 - lam)  # the first clip dominates, so its label stays the argmax
        partner = rng.permutation(n)
        x = lam[:, None, None] * x + (1 - lam[:, None, None]) * x[partner]
        y = lam[:, None] * y + (1 - lam[:, None]) * y[partner]
        w = lam * w + (1 - lam) * w[partner]
    return x.astype(np.float32), y.astype(np.float32), w.astype(np.float32)


def make_source(view: Any, store: Any, index: pl.DataFrame, *, clip_seconds: int, stream: bool) -> ClipSource:
    """A :class:`ClipSource` over the clips of ``index``: streamed from the store, or read into memory."""
    if stream:
        # a table version streams object by object: its clips in object order, so that a pass
        # in order fetches each object once
        order = getattr(store, "stream_order", None)
        return ClipSource(index if order is None else order(index), reader=store.rows(clip_seconds=clip_seconds))
    t = view.tensors(store, clip_seconds=clip_seconds, song_ids=sorted(set(index["song_id"].to_list())))
    # tensors() returns rows in hdf5_row order; keep the clips our index selected
    keep = np.isin(t.index["clip_id"].to_numpy(), index["clip_id"].to_numpy())
    sub = t.index.filter(pl.Series(keep))
    if sub["clip_id"].to_list() != index["clip_id"].to_list():
        raise StoreError("the store changed while the run read it; try again")
    return ClipSource(index, x=t.x[keep])
