"""Keras model factories: small functions in the style of kapre, one per architecture.

Every factory takes keyword-only ``n_mels``, ``frames`` and ``n_classes`` and returns an
uncompiled ``keras.Model``. :data:`MODELS` maps names to a :class:`ModelSpec` that also says
which input layout the model expects, so that training and prediction feed it correctly.
TensorFlow/Keras are imported inside the factories so that importing this module is cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

from feature_store.errors import ParameterError

Layout = Literal["mels_frames_1", "frames_mels"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model family: its factory, its input layout and where it comes from."""

    name: str
    factory: Callable[..., Any]
    layout: Layout
    source: str


def seed_cnn(*, n_mels: int = 128, frames: int, n_classes: int = 10) -> Any:
    """The study's CNN, layer for layer as in its code.

    Source: Yenney & Arnke, "Comparing CNNs and RNNs for Music Genre Recognition"
    (code: github.com/jArnke/JakeYenneyCSE190FinalProject), itself the convolutional half
    of the CRNN of Nasrullah & Zhao (2019).

    Layers
    ------
    Input (n_mels, frames, 1)
    Conv2D 64 3x3 valid -> ELU -> BatchNorm -> MaxPool (2, 2) -> Dropout 0.1
    Conv2D 128 3x3 valid -> ELU -> BatchNorm -> MaxPool (4, 2) -> Dropout 0.1
    Conv2D 128 3x3 valid -> ELU -> BatchNorm -> MaxPool (4, 2) -> Dropout 0.1
    Flatten -> Dense 128 (no activation) -> Dense n_classes softmax
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


def seed_rnn(*, n_mels: int = 128, frames: int, n_classes: int = 10) -> Any:
    """The study's LSTM RNN, layer for layer as in its code.

    Source: as :func:`seed_cnn`; the recurrent half of the study's comparison.

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


MODELS: dict[str, ModelSpec] = {
    "seed_cnn": ModelSpec("seed_cnn", seed_cnn, "mels_frames_1", "the study's CNN"),
    "seed_rnn": ModelSpec("seed_rnn", seed_rnn, "frames_mels", "the study's LSTM RNN"),
}


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; :class:`ParameterError` names the valid models."""
    if name not in MODELS:
        raise ParameterError(f"unknown model {name!r}; valid models are {sorted(MODELS)}")
    return MODELS[name]


def build_model(name: str, *, n_mels: int, frames: int, n_classes: int = 10) -> Any:
    """Build the model called ``name`` for inputs of ``n_mels`` x ``frames``."""
    return get_spec(name).factory(n_mels=n_mels, frames=frames, n_classes=n_classes)


def to_layout(x: Any, layout: Layout) -> Any:
    """Turn mel clips of shape (clips, n_mels, frames) into a model's input layout."""
    import numpy as np

    if layout == "mels_frames_1":
        return np.asarray(x)[..., None]
    if layout == "frames_mels":
        return np.ascontiguousarray(np.swapaxes(np.asarray(x), 1, 2))
    raise ParameterError(f"unknown layout {layout!r}")


def _check_dims(*, n_mels: int, frames: int, n_classes: int, min_mels: int, min_frames: int) -> None:
    for name, value, low in (("n_mels", n_mels, min_mels), ("frames", frames, min_frames), ("n_classes", n_classes, 2)):
        if not isinstance(value, int) or value < low:
            raise ParameterError(f"{name} must be an integer >= {low} for this model, got {value!r}")
