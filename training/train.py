"""Training from the feature store, with per-band normalisation fitted on training songs.

One call of :func:`train_model` trains one model on one clip length with one seed and
publishes a run folder in the model store::

    <models root>/mel-<params hash>/<model>/clip-05s/seed-0[--<variant>]/
        current -> gen-<id>/
            model.keras        the trained model (Keras 3 format, loaded with safe_mode)
            normalizer.json    per-band mean/std fitted on the training songs
            metrics.json       parameters, held-out metrics and costs

:func:`train_seeds` runs several seeds (3 by default: the study found single runs very
unstable). Runs are published atomically (see :func:`feature_store.atomic.new_generation`).

How a run uses the data
-----------------------
* The held-out part (``config.test_part`` of ``config.scheme``, or every song of
  ``test_store_root``) is never seen in training, validation or normalisation.
* Validation songs for early stopping are whole songs drawn from the training part.
* The per-band normaliser is fitted on the remaining training songs only.
* Batches come from a ``tf.data`` pipeline fed by a seeded NumPy generator: from memory when
  the training clips fit comfortably, streamed from the HDF5 store otherwise. Augmentations
  (random crops, gain, frequency shift, SpecAugment masks, mixup) are drawn from the same
  seeded generator, so a seed gives the same run every time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from feature_store import atomic
from feature_store.errors import ParameterError, StoreError
from feature_store.params import GENRES, FeatureParams, validate_clip_seconds
from feature_store.splits import EXCLUDED, validate_scheme
from feature_store.store import FeatureStore
from training.evaluate import evaluate
from training.models import ModelSpec, custom_objects, get_spec, to_layout

#: The augmentation set-up of our models on small corpora (see :class:`TrainConfig`): a random
#: gain of up to ±6 dB, a shift of up to ±4 mel bands, two SpecAugment time and frequency masks
#: per clip, and mixup with Beta(0.2, 0.2). ``TrainConfig(**AUGMENT)`` turns it on.
AUGMENT: dict[str, Any] = {"gain_db": 6.0, "freq_shift": 4, "spec_masks": 2, "mixup": 0.2}
#: Default seeds of :func:`train_seeds`.
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
_STREAM_CHOICES = ("auto", "memory", "stream")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run.

    Parameters
    ----------
    epochs : int > 0
        Epoch cap (default 2, quick on a small machine; the study trained 30); early stopping
        may end the run sooner. ``gtzan train``, ``gtzan run`` and the pipeline's run config
        all take their default from here.
    batch_size : int > 0
        The study used 32.
    learning_rate : float > 0
        Adam's learning rate.
    seed : int >= 0
        Seeds Keras, NumPy, Python and the batch generator, with op determinism.
    scheme : str
        Split scheme of the store (``seed``, ``stratified``, ``fault_filtered``).
    test_part : str
        The part of ``scheme`` held out for testing (``test``; ``fold0`` ... for
        ``stratified``). Every other part except ``excluded`` is training data. Ignored when
        :func:`train_model` is given a ``test_store_root``.
    validation_share : float in [0, 0.5)
        Share of the training songs of each genre kept for early stopping (0 disables it).
        A scheme with its own ``valid`` part (``fault_filtered``) uses that part instead.
    patience : int > 0
        Early-stopping patience in epochs (on validation loss; best weights are restored).
    class_weighting : bool
        Weight examples by inverse class frequency when the classes are unbalanced.
    label_smoothing : float in [0, 0.5)
    weight_decay : float >= 0
        AdamW's decoupled weight decay (0: plain Adam).
    crop_seconds : int >= 0
        Train on random crops of this many seconds of each training clip (a random time shift
        per example and epoch; each epoch draws ``clip // crop`` crops of every clip); validation
        and test use whole clips. 0 disables it. Needs a model that accepts any clip length
        (``cnn``, ``rnn``, ``crnn_small``).
    gain_db : float >= 0
        Add a random gain in [-gain_db, +gain_db] dB to each training clip.
    freq_shift : int >= 0
        Shift each training clip up or down by up to this many mel bands (a rough pitch shift).
    spec_masks : int >= 0
        SpecAugment: this many time masks and this many frequency masks per training clip, each
        up to 1/10 of its axis, set to the band mean.
    mixup : float >= 0
        Mixup's Beta(alpha, alpha) parameter (0 disables it); mixes labels and weights too.
    stream : {'auto', 'memory', 'stream'}
        Where batches come from: memory, the HDF5 store, or ``auto`` (stream when the training
        clips exceed ``stream_above_mb``).
    stream_above_mb : float > 0
    """

    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    scheme: str = "seed"
    validation_share: float = 0.1
    patience: int = 5
    test_part: str = "test"
    class_weighting: bool = True
    label_smoothing: float = 0.0
    weight_decay: float = 0.0
    crop_seconds: int = 0
    gain_db: float = 0.0
    freq_shift: int = 0
    spec_masks: int = 0
    mixup: float = 0.0
    stream: str = "auto"
    stream_above_mb: float = 2048.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ParameterError(f"{name} must be a positive integer, got {v!r}")
        for name in ("seed", "crop_seconds", "freq_shift", "spec_masks"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ParameterError(f"{name} must be a non-negative integer, got {v!r}")
        if not self.learning_rate > 0:
            raise ParameterError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if not 0 <= self.validation_share < 0.5:
            raise ParameterError(f"validation_share must be in [0, 0.5), got {self.validation_share!r}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ParameterError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing!r}")
        for name in ("weight_decay", "gain_db", "mixup"):
            if not getattr(self, name) >= 0:
                raise ParameterError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.stream not in _STREAM_CHOICES:
            raise ParameterError(f"stream must be one of {list(_STREAM_CHOICES)}, got {self.stream!r}")
        if not self.stream_above_mb > 0:
            raise ParameterError(f"stream_above_mb must be positive, got {self.stream_above_mb!r}")
        validate_scheme(self.scheme)

    @property
    def augments(self) -> bool:
        """Whether any training-time augmentation is on."""
        return bool(self.crop_seconds or self.gain_db or self.freq_shift or self.spec_masks or self.mixup)


@dataclasses.dataclass
class BandNormalizer:
    """Per-mel-band standardisation, fitted on training clips only.

    Attributes
    ----------
    mean, std : np.ndarray [shape=(n_mels,)]
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> BandNormalizer:
        """Fit on clips of shape (clips, n_mels, frames)."""
        return cls.fit_chunks([x])

    @classmethod
    def fit_chunks(cls, chunks: Any) -> BandNormalizer:
        """Fit on an iterable of clip arrays of shape (clips, n_mels, frames), in one pass.

        Sums are accumulated in float64, so the result equals :meth:`fit` on the concatenation
        up to rounding, without holding every clip in memory.
        """
        n, s, ss, mels = 0, None, None, None
        for x in chunks:
            x = np.asarray(x)
            if x.ndim != 3 or (mels is not None and x.shape[1] != mels):
                raise ParameterError(f"fit needs clips of shape (clips, n_mels, frames), got {x.shape}")
            if x.shape[0] == 0:
                continue
            mels = x.shape[1]
            x64 = x.astype(np.float64)
            cs, css = x64.sum(axis=(0, 2)), np.square(x64).sum(axis=(0, 2))
            s, ss = (cs, css) if s is None else (s + cs, ss + css)
            n += x.shape[0] * x.shape[2]
        if n == 0:
            raise ParameterError("fit needs at least one clip of shape (clips>0, n_mels, frames)")
        mean = s / n
        var = np.maximum(ss / n - mean**2, 0.0)
        return cls(mean=mean, std=np.maximum(np.sqrt(var), 1e-6))

    @classmethod
    def identity(cls, n_mels: int) -> BandNormalizer:
        """A normaliser that changes nothing (the baseline reads raw dB)."""
        return cls(mean=np.zeros(n_mels), std=np.ones(n_mels))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Standardise clips of shape (clips, n_mels, frames); returns float32."""
        return ((x - self.mean[None, :, None]) / self.std[None, :, None]).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BandNormalizer:
        return cls(mean=np.asarray(d["mean"], dtype=np.float64), std=np.asarray(d["std"], dtype=np.float64))


class ModelStore:
    """Where trained runs live; every path is confined to ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()

    def run_dir(
        self, *, params: FeatureParams, model: str, clip_seconds: int, seed: int, variant: str = ""
    ) -> Path:
        """Folder of one run: ``mel-<hash>/<model>/clip-NNs/seed-<seed>[--<variant>]``.

        ``variant`` names a training set-up other than the default (letters, digits, ``-``,
        ``_`` and ``.`` only), so that it does not overwrite the default run.
        """
        get_spec(model)
        c = validate_clip_seconds(clip_seconds)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ParameterError(f"seed must be a non-negative integer, got {seed!r}")
        validate_variant(variant)
        leaf = f"seed-{seed}" + (f"--{variant}" if variant else "")
        p = (self.root / f"mel-{params.hash()}" / model / f"clip-{c:02d}s" / leaf).resolve()
        if self.root not in p.parents:
            raise ParameterError(f"run folder {p} escapes the model store {self.root}")
        return p

    def current(self, **kwargs: Any) -> Path:
        """The published run folder; :class:`StoreError` if it was never trained."""
        run = self.run_dir(**kwargs)
        cur = atomic.resolve_current(run)
        if cur is None:
            raise StoreError(
                f"model {kwargs.get('model')!r} at {kwargs.get('clip_seconds')} s (seed {kwargs.get('seed')}) "
                "has not been trained yet; train it first (`gtzan train`)"
            )
        return cur

    def runs(self) -> list[dict[str, Any]]:
        """The metrics of every published run under the root, each with its ``run_dir``."""
        out = []
        for metrics in sorted(self.root.glob("mel-*/*/clip-*s/seed-*/current/metrics.json")):
            r = json.loads(metrics.read_text())
            r.setdefault("run_dir", str(metrics.parent.resolve()))
            out.append(r)
        return out


def validate_variant(variant: str) -> str:
    """Return ``variant`` if it is a safe folder suffix, else raise :class:`ParameterError`."""
    ok = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    if not isinstance(variant, str) or len(variant) > 64 or not set(variant) <= ok or variant.startswith("."):
        raise ParameterError(
            f"variant must be up to 64 letters, digits, '-', '_' or '.' (not leading), got {variant!r}"
        )
    return variant


def load_model(path: str | os.PathLike[str]) -> Any:
    """Load a ``.keras`` file with ``safe_mode=True`` (no arbitrary code, no pickle).

    The project's own custom layers (see :func:`training.models.custom_objects`) are passed in,
    so every model family of :data:`training.models.MODELS` loads.
    """
    import keras

    return keras.models.load_model(str(path), safe_mode=True, custom_objects=custom_objects())


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and turn on deterministic ops."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # already enabled, or not supported on this build
        pass


def split_validation(index: Any, *, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, valid) over ``index`` rows: whole songs per genre go to valid."""
    rng = np.random.default_rng(seed)
    valid_songs: set[str] = set()
    if share > 0:
        for genre in sorted(set(index["genre"].to_list())):
            songs = sorted(set(index.filter(index["genre"] == genre)["song_id"].to_list()))
            n = int(round(len(songs) * share))
            if len(songs) >= 3 and n == 0:
                n = 1
            if n and n < len(songs):
                valid_songs.update(rng.choice(songs, size=n, replace=False).tolist())
    v = np.array([s in valid_songs for s in index["song_id"].to_list()], dtype=bool)
    return ~v, v


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float] | None:
    """Balanced class weights, or None when the present classes are balanced."""
    counts = np.bincount(y, minlength=n_classes)
    present = counts[counts > 0]
    if present.size == 0 or present.min() == present.max():
        return None
    total = counts.sum()
    return {i: float(total / (present.size * c)) for i, c in enumerate(counts) if c > 0}


# ---------------------------------------------------------------------------------------
# memory: peak RSS of this process while a run lasts
# ---------------------------------------------------------------------------------------
class RssSampler:
    """Peak resident memory of this process between ``start`` and ``stop``.

    A daemon thread samples ``/proc/self/statm`` every ``interval`` seconds. Unlike
    ``ru_maxrss``, which only grows over the life of the process, this measures one run even
    when several runs share a process. Off Linux it falls back to ``ru_maxrss``.

    Examples
    --------
    >>> with RssSampler() as rss:          # doctest: +SKIP
    ...     work()
    >>> rss.peak_mb                        # doctest: +SKIP
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self.start_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _sample(self) -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * self._page
        except (OSError, ValueError, IndexError):
            return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_bytes = max(self.peak_bytes, self._sample())

    def start(self) -> RssSampler:
        self.start_bytes = self.peak_bytes = self._sample()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> RssSampler:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._sample())
        return self

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20

    @property
    def start_mb(self) -> float:
        return self.start_bytes / 2**20

    def __enter__(self) -> RssSampler:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------
# data: clips in memory or in the HDF5 store, and a seeded batch generator
# ---------------------------------------------------------------------------------------
class ClipSource:
    """The clips of one selection, read by position, from memory or from the HDF5 store.

    Parameters
    ----------
    index : pl.DataFrame
        Index rows (with ``hdf5_row``, ``label``, ``song_id``), in the order of positions.
    x : np.ndarray [shape=(clips, n_mels, frames)], optional
        The clips in memory; when omitted they are read from ``h5_path`` on demand.
    h5_path : path, optional
    """

    def __init__(self, index: pl.DataFrame, *, x: np.ndarray | None = None, h5_path: Path | None = None) -> None:
        if (x is None) == (h5_path is None):
            raise ParameterError("give exactly one of x and h5_path")
        self.index = index
        self.x = x
        self.h5_path = h5_path
        self.rows = index["hdf5_row"].to_numpy()
        self.y = index["label"].to_numpy().astype(np.int64)
        self.song_ids = index["song_id"].to_list()
        self._h5: Any = None

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
        if self._h5 is None:
            self._open()
        rows = self.rows[positions]
        order = np.argsort(rows, kind="stable")
        uniq, inverse = np.unique(rows[order], return_inverse=True)
        block = self._h5["mel"][uniq.tolist()] if uniq.size else np.empty((0,) + self._h5["mel"].shape[1:])
        out = np.empty((positions.size,) + block.shape[1:], dtype=np.float32)
        out[order] = block[inverse]
        return out

    def _open(self) -> None:
        """Open the HDF5 file and check that its rows are the clips of our index."""
        from feature_store.h5 import h5py

        h5 = h5py().File(self.h5_path, "r")
        n = h5["clip_id"].shape[0]
        rows_ok = not self.rows.size or (self.rows.min() >= 0 and self.rows.max() < n)
        ids = h5["clip_id"].asstr()[np.sort(self.rows).tolist()] if (self.rows.size and rows_ok) else []
        want = [cid for _, cid in sorted(zip(self.rows.tolist(), self.index["clip_id"].to_list(), strict=True))]
        if not rows_ok or list(ids) != want:
            h5.close()
            raise StoreError(f"the store at {self.h5_path} was rebuilt while the run read it; try again")
        self._h5 = h5

    def chunks(self, positions: np.ndarray, size: int = 256) -> Iterator[np.ndarray]:
        for i in range(0, len(positions), size):
            yield self.read(positions[i : i + size])

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None


@dataclasses.dataclass
class _Feeder:
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
            x = self.source.read(pos)
            y = np.eye(self.n_classes, dtype=np.float32)[self.source.y[pos]]
            w = (
                np.array([self.weights.get(int(c), 1.0) for c in self.source.y[pos]], dtype=np.float32)
                if self.weights
                else np.ones(len(pos), dtype=np.float32)
            )
            if self.config is not None:
                x, y, w = augment_batch(x, y, w, config=self.config, crop_frames=self.crop_frames,
                                        normalizer=self.normalizer, rng=rng)
            else:
                x = self.normalizer.transform(x)
            x = to_layout(x, self.layout)
            yield (x, y, w) if with_labels else x

    def dataset(self, input_shape: tuple, *, with_labels: bool = True) -> Any:
        """A ``tf.data.Dataset`` over :meth:`batches`, prefetching one batch ahead."""
        import tensorflow as tf

        x_spec = tf.TensorSpec((None, *input_shape), tf.float32)
        if with_labels:
            sig = (x_spec, tf.TensorSpec((None, self.n_classes), tf.float32), tf.TensorSpec((None,), tf.float32))
        else:
            sig = x_spec
        ds = tf.data.Dataset.from_generator(lambda: self.batches(with_labels=with_labels), output_signature=sig)
        n_batches = -(-len(self.positions) // self.batch_size)
        return ds.apply(tf.data.experimental.assert_cardinality(n_batches)).prefetch(1)


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


# ---------------------------------------------------------------------------------------
# selecting the data of a run
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Selection:
    train_index: pl.DataFrame
    test_index: pl.DataFrame
    train_store: FeatureStore
    test_store: FeatureStore
    valid_parts: list[str]
    train_parts: list[str]
    test_desc: str


def _parts(store: FeatureStore, clip_seconds: int, scheme: str) -> list[str]:
    col = store.clips(clip_seconds=clip_seconds).select(pl.col(scheme).unique()).collect()[scheme]
    return sorted(p for p in col.to_list() if p != EXCLUDED)


def _select(
    store: FeatureStore, test_store: FeatureStore | None, *, clip_seconds: int, config: TrainConfig
) -> _Selection:
    parts = _parts(store, clip_seconds, config.scheme)
    if test_store is not None:
        test_parts_ = _parts(test_store, clip_seconds, config.scheme)
        test_index = (
            test_store.clips(clip_seconds=clip_seconds, split=test_parts_, scheme=config.scheme).sort("hdf5_row").collect()
            if test_parts_ else None
        )
        train_parts, valid_parts = parts, []
        desc = f"every song of {test_store.root}"
    else:
        if config.test_part not in parts:
            raise ParameterError(
                f"test_part {config.test_part!r} is not a part of scheme {config.scheme!r} here; valid parts are {parts}"
            )
        test_index = (
            store.clips(clip_seconds=clip_seconds, split=config.test_part, scheme=config.scheme).sort("hdf5_row").collect()
        )
        rest = [p for p in parts if p != config.test_part]
        valid_parts = ["valid"] if ("valid" in rest and config.test_part == "test") else []
        train_parts = [p for p in rest if p not in valid_parts]
        desc = f"{config.scheme}:{config.test_part}"
    train_index = (
        store.clips(clip_seconds=clip_seconds, split=train_parts, scheme=config.scheme).sort("hdf5_row").collect()
        if train_parts else None
    )
    n_tr = 0 if train_index is None else train_index.height
    n_te = 0 if test_index is None else test_index.height
    if n_tr == 0 or n_te == 0:
        raise StoreError(
            f"the {config.scheme!r} split leaves {n_tr} training and {n_te} held-out clips at {clip_seconds} s "
            f"(held out: {desc}); need at least one of each"
        )
    return _Selection(train_index, test_index, store, test_store or store, valid_parts, train_parts, desc)


def _source(store: FeatureStore, index: pl.DataFrame, *, clip_seconds: int, stream: bool) -> ClipSource:
    if stream:
        return ClipSource(index, h5_path=store.generation(clip_seconds) / "mel.h5")
    t = store.tensors(clip_seconds=clip_seconds, song_ids=sorted(set(index["song_id"].to_list())))
    # tensors() returns rows in hdf5_row order; keep the clips our index selected
    keep = np.isin(t.index["clip_id"].to_numpy(), index["clip_id"].to_numpy())
    sub = t.index.filter(pl.Series(keep))
    if sub["clip_id"].to_list() != index["clip_id"].to_list():
        raise StoreError("the store changed while the run read it; try again")
    return ClipSource(index, x=t.x[keep])


# ---------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------
def train_model(
    *,
    store_root: str | os.PathLike[str],
    model_root: str | os.PathLike[str],
    model: str,
    clip_seconds: int,
    params: FeatureParams | None = None,
    config: TrainConfig | None = None,
    progress: bool = False,
    test_store_root: str | os.PathLike[str] | None = None,
    variant: str = "",
) -> dict[str, Any]:
    """Train ``model`` on one clip length and publish the run in the model store.

    Parameters
    ----------
    store_root : path
        Feature store root.
    model_root : path
        Model store root.
    model : str
        A name in :data:`training.models.MODELS`.
    clip_seconds : int
    params : FeatureParams, optional
        Which feature store to read (default parameters when omitted).
    config : TrainConfig, optional
    progress : bool
        Print a Keras progress bar per epoch.
    test_store_root : path, optional
        Another feature store (same ``params``) to test on, e.g. songs by other artists. Then
        every song of ``store_root`` is training data and every song of ``test_store_root`` is
        held out; ``config.test_part`` is ignored.
    variant : str
        Suffix of the run folder (see :meth:`ModelStore.run_dir`) for set-ups other than the
        default, recorded in ``metrics.json``.

    Returns
    -------
    dict
        The run's ``metrics.json`` (model, clip_seconds, seed, config, feature_params, layout,
        frames, genres, data sizes, held-out ``metrics``, ``costs``, ``history``) plus
        ``model_path`` and ``run_dir``.

    Raises
    ------
    ParameterError
        Unknown model, clip length, scheme or part; augmentation the model cannot take.
    StoreError
        The feature store for these params and clip length has not been built, or the split
        leaves no training or held-out songs.
    """
    spec = get_spec(model)
    clip_seconds = validate_clip_seconds(clip_seconds)
    params = params or FeatureParams()
    config = config or TrainConfig()
    validate_variant(variant)
    store = FeatureStore(store_root, params=params)
    test_store = FeatureStore(test_store_root, params=params) if test_store_root is not None else None
    models = ModelStore(model_root)
    run_dir = models.run_dir(params=params, model=model, clip_seconds=clip_seconds, seed=config.seed, variant=variant)
    frames = params.clip_frames(clip_seconds)
    if config.crop_seconds and config.crop_seconds >= clip_seconds:
        raise ParameterError(f"crop_seconds ({config.crop_seconds}) must be shorter than the clips ({clip_seconds} s)")

    rss = RssSampler().start()
    try:
        sel = _select(store, test_store, clip_seconds=clip_seconds, config=config)
        if spec.trainer == "summary_logreg":
            fit = _fit_logreg(spec, sel, params=params, clip_seconds=clip_seconds, config=config)
        else:
            fit = _fit_keras(spec, sel, params=params, clip_seconds=clip_seconds, config=config, progress=progress)
        net, normalizer, tr_index, va_index, history, train_seconds, epochs_run, best_epoch, streamed = fit

        test_src = _source(sel.test_store, sel.test_index, clip_seconds=clip_seconds, stream=streamed)
        probs, infer_ms = _predict(net, test_src, normalizer=normalizer, layout=spec.layout, n_classes=len(GENRES))
        test_src.close()
        metrics = evaluate(probs, test_src.y, test_src.song_ids, n_classes=len(GENRES))
        rss.stop()
        with atomic.new_generation(run_dir) as tmp:
            net.save(tmp / "model.keras")
            atomic.write_json_atomic(tmp / "normalizer.json", normalizer.to_json())
            result = {
                "model": model,
                "variant": variant,
                "trainer": spec.trainer,
                "clip_seconds": clip_seconds,
                "seed": config.seed,
                "config": dataclasses.asdict(config),
                "feature_params": params.to_dict(),
                "params_hash": params.hash(),
                "layout": spec.layout,
                "frames": frames,
                "genres": list(GENRES),
                "store_root": str(store.root),
                "test_store_root": str(test_store.root) if test_store is not None else None,
                "held_out": sel.test_desc,
                "train_clips": int(tr_index.height),
                "train_songs": int(tr_index["song_id"].n_unique()),
                "valid_clips": int(0 if va_index is None else va_index.height),
                "valid_songs": int(0 if va_index is None else va_index["song_id"].n_unique()),
                "test_clips": int(sel.test_index.height),
                "test_songs": int(sel.test_index["song_id"].n_unique()),
                "streamed": streamed,
                "songs": {
                    "train": sorted(set(tr_index["song_id"].to_list())),
                    "valid": [] if va_index is None else sorted(set(va_index["song_id"].to_list())),
                    "test": sorted(set(sel.test_index["song_id"].to_list())),
                },
                "metrics": metrics,
                "history": history,
                "costs": {
                    "parameters": int(net.count_params()),
                    "model_mb": (tmp / "model.keras").stat().st_size / 1e6,
                    "train_seconds": train_seconds,
                    "seconds_per_epoch": train_seconds / max(1, epochs_run),
                    # the first epoch also builds the graph; this is the median of the others
                    "steady_seconds_per_epoch": _steady(history.get("epoch_seconds"), train_seconds / max(1, epochs_run)),
                    "epochs_run": epochs_run,
                    "best_epoch": best_epoch,
                    "peak_rss_mb": rss.peak_mb,
                    "rss_at_start_mb": rss.start_mb,
                    "inference_ms_per_clip": infer_ms,
                },
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            atomic.write_json_atomic(tmp / "metrics.json", result)
    finally:
        rss.stop()
    published = atomic.resolve_current(run_dir)
    result["model_path"] = str(published / "model.keras")
    result["run_dir"] = str(published)
    return result


def _steady(epoch_seconds: list[float] | None, fallback: float) -> float:
    if not epoch_seconds:
        return fallback
    rest = epoch_seconds[1:] or epoch_seconds
    return float(np.median(rest))


def train_seeds(
    *,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    config: TrainConfig | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Run :func:`train_model` once per seed (default 0, 1, 2) and return every result.

    Parameters
    ----------
    seeds : sequence of int
        One run each; ``config.seed`` is replaced by each of them.
    config : TrainConfig, optional
    **kwargs
        Passed on to :func:`train_model` (``store_root``, ``model_root``, ``model``,
        ``clip_seconds``, ``params``, ``test_store_root``, ``variant``, ``progress``).

    Returns
    -------
    list of dict
        One ``metrics.json`` per seed; :func:`training.evaluate.summarize_runs` gives mean ± std.
    """
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ParameterError(f"seeds must be a non-empty list of distinct integers, got {seeds!r}")
    config = config or TrainConfig()
    return [train_model(config=dataclasses.replace(config, seed=int(s)), **kwargs) for s in seeds]


def _fit_keras(spec: ModelSpec, sel: _Selection, *, params: FeatureParams, clip_seconds: int,
               config: TrainConfig, progress: bool) -> tuple:
    import keras

    n_classes = len(GENRES)
    frames = params.clip_frames(clip_seconds)
    pool = sel.train_index
    if sel.valid_parts:
        va_index = sel.train_store.clips(clip_seconds=clip_seconds, split=sel.valid_parts, scheme=config.scheme) \
            .sort("hdf5_row").collect()
        tr_index = pool
    else:
        tr_mask, va_mask = split_validation(pool, share=config.validation_share, seed=config.seed)
        tr_index, va_index = pool.filter(pl.Series(tr_mask)), pool.filter(pl.Series(va_mask))
    if va_index.height == 0:
        va_index = None
    bytes_needed = pool.height * params.n_mels * frames * 4
    streamed = config.stream == "stream" or (config.stream == "auto" and bytes_needed > config.stream_above_mb * 2**20)
    tr_src = _source(sel.train_store, tr_index, clip_seconds=clip_seconds, stream=streamed)
    va_src = _source(sel.train_store, va_index, clip_seconds=clip_seconds, stream=streamed) if va_index is not None else None
    all_pos = np.arange(len(tr_src))
    normalizer = BandNormalizer.fit_chunks(tr_src.chunks(all_pos))

    set_determinism(config.seed)
    net = spec.factory(n_mels=params.n_mels, frames=frames, n_classes=n_classes)
    crop_frames = 0
    if config.crop_seconds:
        if net.input_shape[1 if spec.layout == "frames_mels" else 2] is not None:
            raise ParameterError(
                f"crop_seconds needs a model that accepts any clip length; {spec.name!r} takes exactly {frames} frames"
            )
        crop_frames = params.clip_frames(config.crop_seconds)
    optimizer = (
        keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay)
        if config.weight_decay else keras.optimizers.Adam(config.learning_rate)
    )
    net.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    weights = class_weights(tr_src.y, n_classes) if config.class_weighting else None
    # with random crops, an epoch draws as many crops from each clip as the clip holds, so that it
    # still sees about as much audio as the clips hold (and early stopping counts comparable epochs)
    train_pos = np.repeat(all_pos, max(1, frames // crop_frames)) if crop_frames else all_pos
    feed = _Feeder(tr_src, train_pos, normalizer, spec.layout, n_classes, config.batch_size, config.seed,
                   weights=weights, config=config if config.augments else None, crop_frames=crop_frames, shuffle=True)
    in_shape = tuple(None if d is None else int(d) for d in net.input_shape[1:])
    callbacks = []
    val_ds = None
    if va_src is not None:
        val_feed = _Feeder(va_src, np.arange(len(va_src)), normalizer, spec.layout, n_classes, 64, config.seed,
                           weights=class_weights(va_src.y, n_classes) if config.class_weighting else None)
        val_ds = val_feed.dataset(in_shape)
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
        )
    timer = _EpochTimer.make()
    callbacks.append(timer)
    t0 = time.perf_counter()
    hist = net.fit(
        feed.dataset(in_shape),
        validation_data=val_ds,
        epochs=config.epochs,
        callbacks=callbacks,
        shuffle=False,  # the feeder shuffles, with the run's seed
        verbose=1 if progress else 0,
    )
    train_seconds = time.perf_counter() - t0
    tr_src.close()
    if va_src is not None:
        va_src.close()
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    history["epoch_seconds"] = list(timer.seconds)
    epochs_run = len(history["loss"])
    best_epoch = int(np.argmin(history["val_loss"])) + 1 if "val_loss" in history else epochs_run
    return net, normalizer, tr_index, va_index, history, train_seconds, epochs_run, best_epoch, streamed


class _EpochTimer:
    """A Keras callback (built lazily) that records the wall seconds of every epoch."""

    @staticmethod
    def make() -> Any:
        import keras

        class EpochTimer(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.seconds: list[float] = []
                self._t = 0.0

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self._t = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                self.seconds.append(time.perf_counter() - self._t)

        return EpochTimer()


def _fit_logreg(spec: ModelSpec, sel: _Selection, *, params: FeatureParams, clip_seconds: int,
                config: TrainConfig) -> tuple:
    """Fit the baseline: scikit-learn logistic regression on the store's summary features.

    It has no early stopping, so it trains on every training song (no validation songs).
    The standardisation of the features (fitted on the training songs) is folded into the
    Dense layer of the Keras model, which computes the same features from raw dB clips.
    """
    from sklearn.linear_model import LogisticRegression

    n_classes = len(GENRES)
    summ = (
        sel.train_store.summary(clip_seconds=clip_seconds, split=sel.train_parts + sel.valid_parts, scheme=config.scheme)
        .sort("hdf5_row")
        .collect()
    )
    feat_cols = [f"mean_{b:03d}" for b in range(params.n_mels)] + [f"std_{b:03d}" for b in range(params.n_mels)]
    f = summ.select(feat_cols).to_numpy().astype(np.float64)
    y = summ["label"].to_numpy().astype(np.int64)
    t0 = time.perf_counter()
    mu, sd = f.mean(axis=0), np.maximum(f.std(axis=0), 1e-6)
    weighting = "balanced" if (config.class_weighting and class_weights(y, n_classes)) else None
    clf = LogisticRegression(C=1.0, max_iter=5000, class_weight=weighting, random_state=config.seed)
    clf.fit((f - mu) / sd, y)
    train_seconds = time.perf_counter() - t0
    coef = np.zeros((n_classes, f.shape[1]))
    bias = np.full(n_classes, -1e4)  # classes absent from training are never predicted
    classes = clf.classes_.astype(int)
    if classes.size == 2:  # binary: sklearn keeps one row, for classes[1] against classes[0]
        coef[classes[1]], bias[classes[1]], bias[classes[0]] = clf.coef_[0], clf.intercept_[0], 0.0
    else:
        coef[classes], bias[classes] = clf.coef_, clf.intercept_
    kernel = (coef / sd).T
    bias = bias - (coef * (mu / sd)).sum(axis=1)

    set_determinism(config.seed)
    net = spec.factory(n_mels=params.n_mels, frames=params.clip_frames(clip_seconds), n_classes=n_classes)
    net.get_layer("genre").set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    history = {"lbfgs_iterations": [float(np.max(clf.n_iter_))]}
    return (net, BandNormalizer.identity(params.n_mels), summ, None, history, train_seconds, 1, 1, False)


def _predict(net: Any, src: ClipSource, *, normalizer: BandNormalizer, layout: str, n_classes: int,
             batch_size: int = 64) -> tuple[np.ndarray, float]:
    """Probabilities of every clip of ``src`` and the inference time per clip in ms.

    One batch is scored first to build the graph, so the timing is of steady-state inference
    (reading, normalising and the forward pass), not of tracing.
    """
    positions = np.arange(len(src))
    warm = _Feeder(src, positions[:batch_size], normalizer, layout, n_classes, batch_size, 0)
    feed = _Feeder(src, positions, normalizer, layout, n_classes, batch_size, 0)
    in_shape = tuple(None if d is None else int(d) for d in net.input_shape[1:])
    net.predict(warm.dataset(in_shape, with_labels=False), verbose=0)
    t0 = time.perf_counter()
    probs = np.asarray(net.predict(feed.dataset(in_shape, with_labels=False), verbose=0))
    ms = 1000 * (time.perf_counter() - t0) / max(1, len(src))
    return probs, ms
