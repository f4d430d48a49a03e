"""Keras model factories: small functions in the style of kapre, one per architecture.

Every factory takes keyword-only ``n_mels``, ``frames`` and ``n_classes`` (no defaults: the
mel view's parameters give the first two, the run's labels the third) and returns an
uncompiled ``keras.Model``. :data:`MODELS` maps names to a :class:`ModelSpec` that also says
which input layout the model expects and how it is trained, so that training and prediction
feed it correctly. TensorFlow/Keras are imported inside the factories so that importing this
module is cheap. A new model is its factory here and its entry in :data:`MODELS` (and its row
in the README's model table): the model families of :mod:`training.families` read ``MODELS``.

Families
--------
``seed_cnn``, ``seed_rnn``
    The study's two models, layer for layer.
``crnn``
    The convolutional-recurrent network of Nasrullah & Zhao (2019) that the study's CNN was cut
    from.
``cnn``, ``rnn``, ``crnn_small``
    Our defaults: the same three ideas with far fewer parameters and far less compute. They pool
    time early (a genre does not live in 23 ms details), keep a frequency axis to the end, and end
    in a global pooling over time instead of a ``Flatten``, so that they accept clips of any length
    (a model trained on 5 s crops can score a 30 s clip).
``baseline``
    Logistic regression on per-band mean and standard deviation over time (the store's
    ``summary.parquet``), fitted with scikit-learn and frozen into a two-layer Keras model so that
    it is saved, loaded and scored like the others.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Literal

from feature_store.errors import ParameterError
from feature_store.quiet_tf import import_tensorflow

Layout = Literal["mels_frames_1", "frames_mels"]
#: BatchNorm momentum of our models. Keras' default (0.99) moves the inference statistics 1 % per
#: step: after the ~100 steps of a small-corpus run they are still half-way from their initial
#: values, and the model scores near chance in inference mode although it fits in training mode.
#: 0.9 converges within a few dozen steps. The study's models keep the default, as in its code.
BN_MOMENTUM = 0.9
#: How a model family is trained: by gradient descent in Keras, or by scikit-learn's
#: logistic regression on the per-band summary features.
Trainer = Literal["keras", "summary_logreg"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model family: its factory, its input layout and where it comes from.

    Attributes
    ----------
    name : str
    factory : callable(*, n_mels, frames, n_classes) -> keras.Model
    layout : {'mels_frames_1', 'frames_mels'}
        ``mels_frames_1``: input (n_mels, frames, 1); ``frames_mels``: input (frames, n_mels).
    source : str
        One line: where the architecture comes from.
    trainer : {'keras', 'summary_logreg'}
        How it is fitted: by the model family :mod:`training.families.keras_mel` (gradient
        descent) or :mod:`training.families.mel_baseline` (logistic regression on the summary).
    """

    name: str
    factory: Callable[..., Any]
    layout: Layout
    source: str
    trainer: Trainer = "keras"


# ---------------------------------------------------------------------------------------
# the study's models
# ---------------------------------------------------------------------------------------
def seed_cnn(*, n_mels: int, frames: int, n_classes: int) -> Any:
    """The study's CNN, layer for layer as in its code.

    Source: Yenney & Arnke, "Comparing CNNs and RNNs for Music Genre Recognition"
    (code: github.com/jArnke/JakeYenneyCSE190FinalProject, ``main.py``), itself the
    convolutional half of the CRNN of Nasrullah & Zhao (2019).

    Layers
    ------
    Input (n_mels, frames, 1)
    Conv2D 64 3x3 valid -> ELU -> BatchNorm -> MaxPool (2, 2) -> Dropout 0.1
    Conv2D 128 3x3 valid -> ELU -> BatchNorm -> MaxPool (4, 2) -> Dropout 0.1
    Conv2D 128 3x3 valid -> ELU -> BatchNorm -> MaxPool (4, 2) -> Dropout 0.1
    Flatten -> Dense 128 (no activation) -> Dense n_classes softmax

    At 30 s (1292 frames) the ``Flatten`` holds 3 x 159 x 128 = 61,056 values, so the first
    Dense layer alone has 7.8 M of the model's 8.0 M parameters.
    """
    import keras
    from keras import layers

    _check_dims(n_mels=n_mels, frames=frames, n_classes=n_classes, min_mels=32, min_frames=24)
    inp = keras.Input((n_mels, frames, 1), name="mel")
    x = inp
    for filters, pool in ((64, (2, 2)), (128, (4, 2)), (128, (4, 2))):
        x = layers.Conv2D(filters, (3, 3), padding="valid")(x)
        x = layers.ELU()(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(pool)(x)
        x = layers.Dropout(0.1)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128)(x)
    out = layers.Dense(n_classes, activation="softmax", name="genre")(x)
    return keras.Model(inp, out, name="seed_cnn")


def seed_rnn(*, n_mels: int, frames: int, n_classes: int) -> Any:
    """The study's LSTM RNN, layer for layer as in its code.

    Source: as :func:`seed_cnn` (``RNN.py``); the recurrent half of the study's comparison.

    Layers
    ------
    Input (frames, n_mels)
    LSTM 128 (dropout 0.3, return sequences) -> BatchNorm
    LSTM 128 (dropout 0.3, return sequences) -> BatchNorm
    LSTM 128 (dropout 0.3) -> BatchNorm
    Dense 128 (linear) -> Dense n_classes softmax
    """
    import keras
    from keras import layers

    _check_dims(n_mels=n_mels, frames=frames, n_classes=n_classes, min_mels=1, min_frames=1)
    inp = keras.Input((frames, n_mels), name="mel")
    x = layers.LSTM(128, dropout=0.3, return_sequences=True)(inp)
    x = layers.BatchNormalization()(x)
    x = layers.LSTM(128, dropout=0.3, return_sequences=True)(x)
    x = layers.BatchNormalization()(x)
    x = layers.LSTM(128, dropout=0.3)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Dense(128)(x)
    out = layers.Dense(n_classes, activation="softmax", name="genre")(x)
    return keras.Model(inp, out, name="seed_rnn")


def crnn(*, n_mels: int, frames: int, n_classes: int) -> Any:
    """The CRNN of Nasrullah & Zhao (2019), which the study's CNN was cut from.

    Source: Z. Nasrullah and Y. Zhao, "Music Artist Classification with Convolutional
    Recurrent Neural Networks", IJCNN 2019 (arXiv:1901.04555), after Choi et al.'s CRNN (2017).

    Layers
    ------
    Input (n_mels, frames, 1) -> BatchNorm over the frequency axis (one mean/var per band)
    Conv2D 64 3x3 same -> ELU -> BatchNorm -> MaxPool (2, 2) -> Dropout 0.1
    Conv2D 128 3x3 same -> ELU -> BatchNorm -> MaxPool (4, 2) -> Dropout 0.1
    Conv2D 128 3x3 same -> ELU -> BatchNorm -> MaxPool (4, 2) -> Dropout 0.1
    Conv2D 128 3x3 same -> ELU -> BatchNorm -> MaxPool (4, 2) -> Dropout 0.1
    Permute to time-major -> Reshape (frames / 16, n_mels / 128 * 128)
    GRU 32 (return sequences) -> GRU 32 -> Dropout 0.3 -> Dense n_classes softmax
    """
    import keras
    from keras import layers

    _check_dims(n_mels=n_mels, frames=frames, n_classes=n_classes, min_mels=128, min_frames=16)
    inp = keras.Input((n_mels, frames, 1), name="mel")
    x = layers.BatchNormalization(axis=1, name="freq_bn")(inp)
    for filters, pool in ((64, (2, 2)), (128, (4, 2)), (128, (4, 2)), (128, (4, 2))):
        x = layers.Conv2D(filters, (3, 3), padding="same")(x)
        x = layers.ELU()(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(pool)(x)
        x = layers.Dropout(0.1)(x)
    x = _time_major(x)
    x = layers.GRU(32, return_sequences=True)(x)
    x = layers.GRU(32)(x)
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(n_classes, activation="softmax", name="genre")(x)
    return keras.Model(inp, out, name="crnn")


# ---------------------------------------------------------------------------------------
# our defaults
# ---------------------------------------------------------------------------------------
def cnn(*, n_mels: int, frames: int, n_classes: int) -> Any:
    """Our default CNN: a small VGG-style stack that pools time early and ends in global pooling.

    Source: this project. The ideas are from Choi et al., "Automatic tagging using deep
    convolutional neural networks" (ISMIR 2016: small 3x3 stacks with non-square pooling) and
    Pons et al. (2017: pooling over time, not frequency, at the end); the mean+max temporal
    pooling head follows musicnn (Pons & Serra 2019).

    Choices, against :func:`seed_cnn`:

    * 16-32-64-64 filters instead of 64-128-128: a tenth of the convolution work per pixel;
    * time is pooled by 4 in each of the first two blocks (23 ms frames -> 370 ms), so the
      costly layers see 16x fewer frames (about 19x fewer multiply-adds per 30 s clip);
    * pooling straight after each convolution, before BatchNorm and ELU, so that those run on
      (and keep for back-propagation) a 4-8x smaller map: at 30 s and batch 32 the first block's
      full-resolution activations are 340 MB each, and this ordering keeps one of them, not three;
    * no bias before BatchNorm (it is redundant), and BatchNorm momentum 0.9
      (:data:`BN_MOMENTUM`) so that its inference statistics settle within a small run;
    * the frequency axis is kept to the end (16 bands of 64 channels) and only time is pooled,
      by mean and by max, so the head has 2 x 1024 inputs whatever the clip length: no 7.8 M
      parameter ``Flatten -> Dense``, and the model accepts clips of any length >= 32 frames;
    * Dropout 0.3 before the softmax, the only dense layer.

    Layers
    ------
    Input (n_mels, any frames, 1)
    Conv2D 16 3x3 same (no bias) -> MaxPool (2, 4) -> BatchNorm -> ELU
    Conv2D 32 3x3 same (no bias) -> MaxPool (2, 4) -> BatchNorm -> ELU
    Conv2D 64 3x3 same (no bias) -> MaxPool (2, 2) -> BatchNorm -> ELU
    Conv2D 64 3x3 same (no bias) -> BatchNorm -> ELU
    Permute to time-major -> Reshape (frames / 32, n_mels / 8 * 64)
    concat(mean over time, max over time) -> Dropout 0.3 -> Dense n_classes softmax

    About 85 k parameters at 128 mels (seed_cnn: 8.0 M at 30 s).
    """
    import keras
    from keras import layers

    _check_dims(n_mels=n_mels, frames=frames, n_classes=n_classes, min_mels=8, min_frames=32)
    inp = keras.Input((n_mels, None, 1), name="mel")
    x = inp
    for filters, pool in ((16, (2, 4)), (32, (2, 4)), (64, (2, 2)), (64, None)):
        x = layers.Conv2D(filters, (3, 3), padding="same", use_bias=False)(x)
        if pool is not None:
            x = layers.MaxPooling2D(pool)(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = layers.ELU()(x)
    x = _time_major(x)
    x = layers.Concatenate()([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(n_classes, activation="softmax", name="genre")(x)
    return keras.Model(inp, out, name="cnn")


def rnn(*, n_mels: int, frames: int, n_classes: int) -> Any:
    """Our default RNN: one GRU over a 4x shorter sequence of projected frames.

    Source: this project; the frame-wise projection before the recurrence is the "frequency-wise"
    dense front end of Choi et al.'s CRNN analysis (2017), and the mean+max pooled recurrent
    states follow musicnn's back end (Pons & Serra 2019).

    Choices, against :func:`seed_rnn`:

    * frames are averaged 4 at a time first (93 ms steps): the recurrence runs 4x fewer steps,
      and 1292 steps of an LSTM are what make the study's RNN slow and hard to train;
    * a per-frame Dense 64 projects the 128 mel bands before the recurrence (a learnt
      frequency-wise summary), with BatchNorm;
    * one GRU 64 instead of three LSTM 128: a tenth of the parameters;
    * BatchNorm momentum 0.9 (:data:`BN_MOMENTUM`);
    * the output is pooled over all time steps (mean and max), not just the last state, so that
      early parts of the clip count as much as the end; any clip length works.

    Layers
    ------
    Input (any frames, n_mels)
    AveragePooling1D 4 -> Dense 64 (per frame, no bias) -> BatchNorm -> ELU
    GRU 64 (return sequences)
    concat(mean over time, max over time) -> Dropout 0.3 -> Dense n_classes softmax

    About 35 k parameters at 128 mels (seed_rnn: 0.43 M).
    """
    import keras
    from keras import layers

    _check_dims(n_mels=n_mels, frames=frames, n_classes=n_classes, min_mels=1, min_frames=4)
    inp = keras.Input((None, n_mels), name="mel")
    x = layers.AveragePooling1D(4)(inp)
    x = layers.Dense(64, use_bias=False)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    x = layers.ELU()(x)
    x = layers.GRU(64, return_sequences=True)(x)
    x = layers.Concatenate()([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(n_classes, activation="softmax", name="genre")(x)
    return keras.Model(inp, out, name="rnn")


def crnn_small(*, n_mels: int, frames: int, n_classes: int) -> Any:
    """Our small CRNN: :func:`crnn`'s shape with a quarter of the filters and early time pooling.

    Source: this project, after :func:`crnn` (Nasrullah & Zhao 2019).

    Choices, against :func:`crnn`:

    * 16-32-32-32 filters instead of 64-128-128-128 (12x fewer convolution parameters);
    * the first block pools time by 4 instead of 2 and the last by 1 instead of 2, so the GRU
      still sees frames of 370 ms but the big first layers see half the frames;
    * no input BatchNorm: the store's per-band standardisation already does its job;
    * pooling straight after each convolution, before BatchNorm and ELU (as :func:`cnn`);
    * BatchNorm momentum 0.9 (:data:`BN_MOMENTUM`);
    * one GRU 32 instead of two; any clip length >= 16 frames.

    Layers
    ------
    Input (n_mels, any frames, 1)
    Conv2D 16 3x3 same (no bias) -> MaxPool (2, 4) -> BatchNorm -> ELU -> Dropout 0.1
    Conv2D 32 3x3 same (no bias) -> MaxPool (4, 2) -> BatchNorm -> ELU -> Dropout 0.1
    Conv2D 32 3x3 same (no bias) -> MaxPool (4, 2) -> BatchNorm -> ELU -> Dropout 0.1
    Conv2D 32 3x3 same (no bias) -> MaxPool (4, 1) -> BatchNorm -> ELU -> Dropout 0.1
    Permute to time-major -> Reshape (frames / 16, n_mels / 128 * 32)
    GRU 32 -> Dropout 0.3 -> Dense n_classes softmax

    About 30 k parameters at 128 mels (crnn: 0.4 M).
    """
    import keras
    from keras import layers

    _check_dims(n_mels=n_mels, frames=frames, n_classes=n_classes, min_mels=128, min_frames=16)
    inp = keras.Input((n_mels, None, 1), name="mel")
    x = inp
    for filters, pool in ((16, (2, 4)), (32, (4, 2)), (32, (4, 2)), (32, (4, 1))):
        x = layers.Conv2D(filters, (3, 3), padding="same", use_bias=False)(x)
        x = layers.MaxPooling2D(pool)(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = layers.ELU()(x)
        x = layers.Dropout(0.1)(x)
    x = _time_major(x)
    x = layers.GRU(32)(x)
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(n_classes, activation="softmax", name="genre")(x)
    return keras.Model(inp, out, name="crnn_small")


def baseline(*, n_mels: int, frames: int, n_classes: int) -> Any:
    """Logistic regression on per-band mean and standard deviation over time: the honest floor.

    Source: the classic bag-of-frames genre baseline (Tzanetakis & Cook 2002 used timbral
    statistics; here the statistics of the 128 mel bands, as in ``summary.parquet``).

    :func:`training.train.train_model` fits it with scikit-learn's ``LogisticRegression``
    (lbfgs, L2, C = 1) on standardised summary features of the training songs, then folds the
    standardisation into the Dense weights. The Keras model built here takes raw dB mel clips,
    so it is saved, loaded (``safe_mode=True``) and scored like every other model.

    Layers
    ------
    Input (n_mels, any frames, 1)
    BandSummary: per band, mean and standard deviation over time -> (2 n_mels,)
    Dense n_classes softmax (the logistic regression)
    """
    import keras
    from keras import layers

    _check_dims(n_mels=n_mels, frames=frames, n_classes=n_classes, min_mels=1, min_frames=2)
    inp = keras.Input((n_mels, None, 1), name="mel")
    x = band_summary_layer()(name="band_summary")(inp)
    out = layers.Dense(n_classes, activation="softmax", name="genre")(x)
    return keras.Model(inp, out, name="baseline")


@functools.cache
def band_summary_layer() -> type:
    """The ``BandSummary`` Keras layer class, registered as ``gtzan>BandSummary``.

    It maps mel clips (batch, n_mels, frames, 1) to (batch, 2 n_mels): the mean of each band
    over time, then its population standard deviation, exactly as
    :func:`feature_store.features.band_summary`. Defined lazily so that importing this module
    does not import Keras; :func:`custom_objects` hands it to ``load_model``.
    """
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="gtzan", name="BandSummary")
    class BandSummary(keras.layers.Layer):
        def call(self, x):
            x = ops.squeeze(x, axis=-1)
            mean = ops.mean(x, axis=2)
            std = ops.sqrt(ops.maximum(ops.mean(ops.square(x - mean[:, :, None]), axis=2), 0.0))
            return ops.concatenate([mean, std], axis=1)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], 2 * input_shape[1])

    return BandSummary


def custom_objects() -> dict[str, Any]:
    """Custom layers a saved model may hold, for ``keras.models.load_model(custom_objects=...)``."""
    return {"gtzan>BandSummary": band_summary_layer()}


MODELS: dict[str, ModelSpec] = {
    "baseline": ModelSpec("baseline", baseline, "mels_frames_1", "logistic regression on band mean/std",
                          trainer="summary_logreg"),
    "seed_cnn": ModelSpec("seed_cnn", seed_cnn, "mels_frames_1", "the study's CNN"),
    "seed_rnn": ModelSpec("seed_rnn", seed_rnn, "frames_mels", "the study's LSTM RNN"),
    "crnn": ModelSpec("crnn", crnn, "mels_frames_1", "Nasrullah & Zhao (2019) CRNN"),
    "cnn": ModelSpec("cnn", cnn, "mels_frames_1", "our CNN: early time pooling, global pooling head"),
    "rnn": ModelSpec("rnn", rnn, "frames_mels", "our RNN: pooled frames, frame projection, one GRU"),
    "crnn_small": ModelSpec("crnn_small", crnn_small, "mels_frames_1", "our small CRNN"),
}


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; :class:`ParameterError` names the valid models."""
    if name not in MODELS:
        raise ParameterError(f"unknown model {name!r}; valid models are {sorted(MODELS)}")
    return MODELS[name]


def build_model(name: str, *, n_mels: int, frames: int, n_classes: int) -> Any:
    """Build the model called ``name`` for inputs of ``n_mels`` x ``frames``."""
    import_tensorflow()
    return get_spec(name).factory(n_mels=n_mels, frames=frames, n_classes=n_classes)


def to_layout(x: Any, layout: Layout) -> Any:
    """Turn mel clips of shape (clips, n_mels, frames) into a model's input layout."""
    import numpy as np

    if layout == "mels_frames_1":
        return np.asarray(x)[..., None]
    if layout == "frames_mels":
        return np.ascontiguousarray(np.swapaxes(np.asarray(x), 1, 2))
    raise ParameterError(f"unknown layout {layout!r}; valid layouts are ['mels_frames_1', 'frames_mels']")


def _time_major(x: Any) -> Any:
    """(batch, freq, time, channels) -> (batch, time, freq * channels), time may be unknown."""
    from keras import layers

    _, f, _, c = x.shape
    x = layers.Permute((2, 1, 3))(x)
    return layers.Reshape((-1, f * c))(x)


def _check_dims(*, n_mels: int, frames: int, n_classes: int, min_mels: int, min_frames: int) -> None:
    for name, value, low in (("n_mels", n_mels, min_mels), ("frames", frames, min_frames), ("n_classes", n_classes, 2)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ParameterError(f"{name} must be an integer >= {low} for this model, got {value!r}")
