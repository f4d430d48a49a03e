"""Keras models on mel clips: fitting (determinism, early stopping, timing), saving, loading, scoring.

:func:`fit_keras` fits one :class:`~training.models.ModelSpec` on a run's
:class:`~training.selection.Selection`:

* validation songs for early stopping are the scheme's ``valid`` part, or whole songs drawn
  from the training part (:func:`~training.selection.split_validation`);
* the per-band normaliser is fitted on the remaining training songs only;
* batches come from :class:`~training.feeding.Feeder`, from memory or streamed from HDF5.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from feature_store import atomic, integrity
from feature_store.errors import ParameterError, StoreError
from feature_store.quiet_tf import import_tensorflow
from training.config import TrainConfig
from training.families.base import Fit, first_line
from training.feeding import ClipSource, Feeder, make_source
from training.models import ModelSpec, custom_objects, to_layout
from training.normalizer import BandNormalizer
from training.selection import Selection, class_weights, split_validation


def load_model(path: str | os.PathLike[str]) -> Any:
    """Load a ``.keras`` file with ``safe_mode=True`` (no arbitrary code, no pickle).

    The project's own custom layers (see :func:`training.models.custom_objects`) are passed in,
    so every model of :data:`training.models.MODELS` loads.
    """
    import_tensorflow()
    import keras

    return keras.models.load_model(str(path), safe_mode=True, custom_objects=custom_objects())


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and turn on deterministic ops."""
    tf = import_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # already enabled, or not supported on this build
        pass


def input_shape(net: Any) -> tuple[int | None, ...]:
    """A Keras model's input shape without the batch axis."""
    return tuple(None if d is None else int(d) for d in net.input_shape[1:])


#: Windows a fitted model scores per call of the network, at most.
PREDICT_BATCH = 64
#: Layer outputs one call of the network may hold, at most, in bytes. An eager call of a
#: Keras functional model keeps every layer's output until it returns, so a call costs about
#: the windows times the sum of one window's layer outputs: a few MB for the compact models on
#: 5 s clips, 200 MB for the study's wide CNNs on 30 s clips. Calls hold fewer windows where
#: one window costs more (:func:`predict_batch`), and predicting stays in bounded memory.
PREDICT_ACTIVATION_BYTES = 128 << 20


def activation_bytes(net: Any, input_shape: tuple[int, ...]) -> int:
    """Bytes of every layer's output for one input of ``input_shape`` (no batch axis).

    What one window adds to an eager call of ``net`` (which holds every intermediate output
    until it returns), worked out symbolically: nothing is computed.
    """
    import keras

    outs = [layer.output for layer in net.layers if not isinstance(layer, keras.layers.InputLayer)]
    specs = keras.Model(net.inputs, outs).compute_output_spec(keras.KerasTensor((1, *input_shape)))
    return int(sum(int(np.prod(s.shape[1:])) * np.dtype(s.dtype).itemsize for s in keras.tree.flatten(specs)))


def predict_batch(net: Any, input_shape: tuple[int, ...], *, budget: int = PREDICT_ACTIVATION_BYTES) -> int:
    """Windows per call of ``net`` on inputs of ``input_shape``: as many as fit ``budget``
    bytes of layer outputs (:func:`activation_bytes`), at least 1, at most :data:`PREDICT_BATCH`.
    A network whose layers cannot be sized symbolically scores one window per call."""
    try:
        per_window = activation_bytes(net, input_shape)
    except Exception:  # a layer without a symbolic output (shared, nested): the safe choice
        return 1
    return int(max(1, min(PREDICT_BATCH, budget // max(1, per_window))))


@dataclasses.dataclass
class KerasMelModel:
    """A fitted Keras network on mel clips, with the per-band normaliser of its training songs.

    Attributes
    ----------
    net : keras.Model
    normalizer : BandNormalizer
    layout : {'mels_frames_1', 'frames_mels'}
    frames : int
        Frames of the clips it was trained on.
    """

    net: Any
    normalizer: BandNormalizer
    layout: str
    frames: int
    arrays: tuple[str, ...] | None = None

    @property
    def n_parameters(self) -> int:
        return int(self.net.count_params())

    def save(self, folder: Path) -> Path:
        """Write ``model.keras`` and ``normalizer.json``; return the ``.keras`` file."""
        self.net.save(folder / "model.keras")
        atomic.write_json_atomic(folder / "normalizer.json", integrity.with_checksum(self.normalizer.to_json()))
        return folder / "model.keras"

    @functools.cached_property
    def predict_batch(self) -> int:
        """Windows per call of the network (:func:`predict_batch`: bounded layer outputs)."""
        n_mels = self.normalizer.mean.shape[0]
        return predict_batch(self.net, to_layout(np.zeros((1, n_mels, self.frames), np.float32), self.layout).shape[1:])

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities [shape=(n, labels)] of raw dB mel windows [shape=(n, n_mels, frames)].

        The windows go through the network :attr:`predict_batch` at a time, normalised batch
        by batch, so memory does not grow with ``n``.
        """
        from keras import ops

        n_mels = self.normalizer.mean.shape[0]
        if x.ndim != 3 or x.shape[1:] != (n_mels, self.frames):
            raise ParameterError(f"windows must have shape (n, {n_mels}, {self.frames}), got {x.shape}")
        b = self.predict_batch
        out = [ops.convert_to_numpy(self.net(to_layout(self.normalizer.transform(x[i: i + b]), self.layout),
                                             training=False))
               for i in range(0, x.shape[0], b)]
        if not out:
            return np.zeros((0, int(self.net.output_shape[-1])), np.float64)
        return np.concatenate(out, axis=0).astype(np.float64)

    @classmethod
    def load(cls, folder: Path, *, layout: str, frames: int, n_mels: int) -> KerasMelModel:
        """Read what :meth:`save` wrote; :class:`StoreError` if it is unreadable or not for these clips."""
        from training.record import RETRAIN

        try:
            normalizer = BandNormalizer.from_json(integrity.read_json(folder / "normalizer.json", remedy=RETRAIN))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"cannot read the run at {folder}: {exc}; {RETRAIN}") from exc
        if normalizer.mean.shape != (n_mels,):
            raise StoreError(f"normalizer of {folder} has {normalizer.mean.shape} bands, the features {n_mels}")
        integrity.check_archive(folder / "model.keras", remedy=RETRAIN)  # empty, or a member's CRC fails
        try:
            net = load_model(folder / "model.keras")
        except Exception as exc:  # keras raises ValueError, OSError, h5py errors...
            raise StoreError(f"cannot load {folder / 'model.keras'} ({first_line(exc)}): the file is damaged; "
                             f"{RETRAIN}") from exc
        return cls(net, normalizer, layout, frames)


def _train_valid(data: Selection, config: TrainConfig) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    pool = data.train_index
    if data.valid_parts:
        tr_index, va_index = pool, data.index(parts=data.valid_parts)
    else:
        tr_mask, va_mask = split_validation(pool, share=config.validation_share, seed=config.seed)
        tr_index, va_index = pool.filter(pl.Series(tr_mask)), pool.filter(pl.Series(va_mask))
    return tr_index, (va_index if va_index.height else None)


def _streams(config: TrainConfig, clips: int, n_mels: int, frames: int) -> bool:
    bytes_needed = clips * n_mels * frames * 4
    return config.stream == "stream" or (config.stream == "auto" and bytes_needed > config.stream_above_mb * 2**20)


def _build(spec: ModelSpec, *, n_mels: int, frames: int, n_classes: int, crop_frames: int,
           config: TrainConfig) -> Any:
    """The spec's network, compiled with the config's optimiser and loss."""
    import_tensorflow()
    import keras

    set_determinism(config.seed)
    net = spec.factory(n_mels=n_mels, frames=frames, n_classes=n_classes)
    if crop_frames and net.input_shape[1 if spec.layout == "frames_mels" else 2] is not None:
        raise ParameterError(
            f"crop_seconds needs a model that accepts any clip length; {spec.name!r} takes exactly {frames} frames"
        )
    optimizer = (
        keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay)
        if config.weight_decay else keras.optimizers.Adam(config.learning_rate)
    )
    net.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    return net


def _validation(net: Any, va_src: ClipSource | None, normalizer: BandNormalizer, layout: str, n: int,
                config: TrainConfig) -> tuple[Any, list[Any]]:
    """The validation dataset and the early-stopping callback (none without validation songs)."""
    import keras

    if va_src is None:
        return None, []
    weights = class_weights(va_src.y, n) if config.class_weighting else None
    feed = Feeder(va_src, np.arange(len(va_src)), normalizer, layout, n, 64, config.seed, weights=weights)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    return feed.dataset(input_shape(net)), [stop]


def _train_feeder(data: Selection, tr_index: pl.DataFrame, **fields: Any) -> Feeder:
    """The training batches: by seeded position, or, for a table version streamed, whole shard
    objects through a shuffle buffer (:mod:`training.table_source`)."""
    if fields["source"].streamed and hasattr(data.train_store, "stream_order"):
        from training.table_source import shard_feeder

        repeats = len(fields["positions"]) // max(1, len(fields["source"]))
        return shard_feeder(data.train_store, tr_index, labels=data.labels, repeats=repeats, **fields)
    return Feeder(**fields)


def fit_keras(spec: ModelSpec, data: Selection, *, config: TrainConfig, progress: bool = False) -> Fit:
    """Fit ``spec`` on the training clips of ``data`` (see the module docstring)."""
    params = data.view.params
    frames = params.clip_frames(data.clip_seconds)
    tr_index, va_index = _train_valid(data, config)
    streamed = _streams(config, data.train_index.height, params.n_mels, frames)
    tr_src = make_source(data.view, data.train_store, tr_index, clip_seconds=data.clip_seconds, stream=streamed)
    va_src = None if va_index is None else make_source(data.view, data.train_store, va_index,
                                                         clip_seconds=data.clip_seconds, stream=streamed)
    all_pos = np.arange(len(tr_src))
    normalizer = BandNormalizer.fit_chunks(tr_src.chunks(all_pos))
    crop_frames = params.clip_frames(config.crop_seconds) if config.crop_seconds else 0
    n = len(data.labels)
    net = _build(spec, n_mels=params.n_mels, frames=frames, n_classes=n, crop_frames=crop_frames, config=config)
    weights = class_weights(tr_src.y, n) if config.class_weighting else None
    # with random crops, an epoch draws as many crops from each clip as the clip holds, so that it
    # still sees about as much audio as the clips hold (and early stopping counts comparable epochs)
    train_pos = np.repeat(all_pos, max(1, frames // crop_frames)) if crop_frames else all_pos
    feed = _train_feeder(data, tr_index, source=tr_src, positions=train_pos, normalizer=normalizer,
                         layout=spec.layout, n_classes=n, batch_size=config.batch_size, seed=config.seed,
                         weights=weights, config=config if config.augments else None, crop_frames=crop_frames,
                         shuffle=True)
    val_ds, callbacks = _validation(net, va_src, normalizer, spec.layout, n, config)
    timer = EpochTimer.make()
    t0 = time.perf_counter()
    try:
        hist = net.fit(feed.dataset(input_shape(net)), validation_data=val_ds, epochs=config.epochs,
                       callbacks=[*callbacks, timer], shuffle=False,  # the feeder shuffles, with the run's seed
                       verbose=1 if progress else 0)
    finally:
        for src in (tr_src, va_src):
            if src is not None:
                src.release()
    train_seconds = time.perf_counter() - t0
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    history["epoch_seconds"] = list(timer.seconds)
    epochs_run = len(history["loss"])
    best_epoch = int(np.argmin(history["val_loss"])) + 1 if "val_loss" in history else epochs_run
    model = KerasMelModel(net, normalizer, spec.layout, frames)
    return Fit(model, tr_index, va_index, history, train_seconds, epochs_run, best_epoch, streamed)


class EpochTimer:
    """A Keras callback (built lazily) that records the wall seconds of every epoch."""

    @staticmethod
    def make() -> Any:
        import keras

        class _EpochTimer(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.seconds: list[float] = []
                self._t = 0.0

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self._t = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                self.seconds.append(time.perf_counter() - self._t)

        return _EpochTimer()


def forward_function(net: Any) -> Any:
    """``net(x, training=False)`` as a ``tf.function`` whose input signature leaves the batch
    size open: traced once per model, whatever the sizes of the batches.

    Keras' own ``predict`` traces its function for the shape of the first batch and again
    (more generally) at the first batch of another size, such as a short last batch.
    """
    tf = import_tensorflow()

    @tf.function(input_signature=[tf.TensorSpec((None, *input_shape(net)), tf.float32)])
    def forward(x: Any) -> Any:
        return net(x, training=False)

    return forward


def predict_source(net: Any, src: ClipSource, *, normalizer: BandNormalizer, layout: str,
                   batch_size: int = 64) -> tuple[np.ndarray, float]:
    """Probabilities of every clip of ``src`` and the inference time per clip in ms.

    One batch is scored first to build the graph (:func:`forward_function`, traced once), so
    the timing is of steady-state inference (reading, normalising and the forward pass), not
    of tracing.
    """
    n = int(net.output_shape[-1])
    positions = np.arange(len(src))
    forward = forward_function(net)

    def scores(feed: Feeder) -> np.ndarray:
        out = [np.asarray(forward(x)) for x in feed.dataset(input_shape(net), with_labels=False)]
        return np.concatenate(out, axis=0) if out else np.zeros((0, n), np.float32)

    scores(Feeder(src, positions[:batch_size], normalizer, layout, n, batch_size, 0))
    t0 = time.perf_counter()
    probs = scores(Feeder(src, positions, normalizer, layout, n, batch_size, 0))
    ms = 1000 * (time.perf_counter() - t0) / max(1, len(src))
    return probs, ms
