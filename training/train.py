"""Training from the feature store, with per-band normalisation fitted on training songs.

One call of :func:`train_model` trains one model on one clip length with one seed and
publishes a run folder in the model store::

    <models root>/mel-<params hash>/<model>/clip-05s/seed-0/
        current -> gen-<id>/
            model.keras        the trained model (Keras 3 format, loaded with safe_mode)
            normalizer.json    per-band mean/std fitted on the training songs
            metrics.json       parameters, held-out metrics and costs

Runs are published atomically (see :func:`feature_store.atomic.new_generation`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from feature_store import atomic
from feature_store.errors import ParameterError, StoreError
from feature_store.params import GENRES, FeatureParams, validate_clip_seconds
from feature_store.splits import validate_scheme
from feature_store.store import FeatureStore
from training.evaluate import evaluate
from training.models import get_spec, to_layout


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run.

    Parameters
    ----------
    epochs : int > 0
        Epoch cap (the study trained 30).
    batch_size : int > 0
        The study used 32.
    learning_rate : float > 0
        Adam's learning rate.
    seed : int
        Seeds Keras, NumPy and Python, with op determinism.
    scheme : str
        Split scheme; its ``test`` part is held out, never used for training or validation.
    validation_share : float in [0, 0.5)
        Share of the training songs of each genre kept for early stopping (0 disables it).
    patience : int > 0
        Early-stopping patience in epochs.
    """

    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    scheme: str = "seed"
    validation_share: float = 0.1
    patience: int = 5

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ParameterError(f"{name} must be a positive integer, got {v!r}")
        if not self.learning_rate > 0:
            raise ParameterError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if not 0 <= self.validation_share < 0.5:
            raise ParameterError(f"validation_share must be in [0, 0.5), got {self.validation_share!r}")
        validate_scheme(self.scheme)


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
        if x.ndim != 3 or x.shape[0] == 0:
            raise ParameterError(f"fit needs clips of shape (clips>0, n_mels, frames), got {x.shape}")
        x = x.astype(np.float64)
        return cls(mean=x.mean(axis=(0, 2)), std=np.maximum(x.std(axis=(0, 2)), 1e-6))

    def transform(self, x: np.ndarray) -> np.ndarray:
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

    def run_dir(self, *, params: FeatureParams, model: str, clip_seconds: int, seed: int) -> Path:
        get_spec(model)
        c = validate_clip_seconds(clip_seconds)
        if not isinstance(seed, int) or seed < 0:
            raise ParameterError(f"seed must be a non-negative integer, got {seed!r}")
        p = (self.root / f"mel-{params.hash()}" / model / f"clip-{c:02d}s" / f"seed-{seed}").resolve()
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
        """The metrics of every published run under the root."""
        out = []
        for metrics in sorted(self.root.glob("mel-*/*/clip-*s/seed-*/current/metrics.json")):
            out.append(json.loads(metrics.read_text()))
        return out


def load_model(path: str | os.PathLike[str]) -> Any:
    """Load a ``.keras`` file with ``safe_mode=True`` (no arbitrary code, no pickle)."""
    import keras

    return keras.models.load_model(str(path), safe_mode=True)


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


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def train_model(
    *,
    store_root: str | os.PathLike[str],
    model_root: str | os.PathLike[str],
    model: str,
    clip_seconds: int,
    params: FeatureParams | None = None,
    config: TrainConfig | None = None,
    progress: bool = False,
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

    Returns
    -------
    dict
        The run's ``metrics.json``: config, held-out metrics, costs and file paths.

    Raises
    ------
    ParameterError
        Unknown model, clip length or scheme.
    StoreError
        The feature store for these params and clip length has not been built, or the split
        leaves no training or held-out songs.
    """
    spec = get_spec(model)
    clip_seconds = validate_clip_seconds(clip_seconds)
    params = params or FeatureParams()
    config = config or TrainConfig()
    store = FeatureStore(store_root, params=params)
    models = ModelStore(model_root)
    run_dir = models.run_dir(params=params, model=model, clip_seconds=clip_seconds, seed=config.seed)

    train = store.tensors(clip_seconds=clip_seconds, split="train", scheme=config.scheme)
    test = store.tensors(clip_seconds=clip_seconds, split="test", scheme=config.scheme)
    if train.x.shape[0] == 0 or test.x.shape[0] == 0:
        raise StoreError(
            f"the {config.scheme!r} split leaves {train.x.shape[0]} training and {test.x.shape[0]} held-out "
            f"clips at {clip_seconds} s; need at least one of each"
        )
    tr_mask, va_mask = split_validation(train.index, share=config.validation_share, seed=config.seed)
    normalizer = BandNormalizer.fit(train.x[tr_mask])
    x_tr = to_layout(normalizer.transform(train.x[tr_mask]), spec.layout)
    y_tr = train.y[tr_mask]
    x_va = to_layout(normalizer.transform(train.x[va_mask]), spec.layout) if va_mask.any() else None
    y_va = train.y[va_mask] if va_mask.any() else None
    x_te = to_layout(normalizer.transform(test.x), spec.layout)

    import keras

    set_determinism(config.seed)
    n_classes = len(GENRES)
    net = spec.factory(n_mels=params.n_mels, frames=train.x.shape[2], n_classes=n_classes)
    net.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    callbacks = []
    if x_va is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
        )
    t0 = time.perf_counter()
    history = net.fit(
        x_tr,
        y_tr,
        validation_data=(x_va, y_va) if x_va is not None else None,
        epochs=config.epochs,
        batch_size=config.batch_size,
        class_weight=class_weights(y_tr, n_classes),
        callbacks=callbacks,
        shuffle=True,
        verbose=1 if progress else 0,
    )
    train_seconds = time.perf_counter() - t0
    epochs_run = len(history.history["loss"])

    t1 = time.perf_counter()
    probs = net.predict(x_te, batch_size=64, verbose=0)
    infer_ms = 1000 * (time.perf_counter() - t1) / max(1, x_te.shape[0])
    metrics = evaluate(probs, test.y, test.index["song_id"].to_list(), n_classes=n_classes)

    with atomic.new_generation(run_dir) as tmp:
        net.save(tmp / "model.keras")
        atomic.write_json_atomic(tmp / "normalizer.json", normalizer.to_json())
        result = {
            "model": model,
            "clip_seconds": clip_seconds,
            "seed": config.seed,
            "config": dataclasses.asdict(config),
            "feature_params": params.to_dict(),
            "params_hash": params.hash(),
            "layout": spec.layout,
            "frames": int(train.x.shape[2]),
            "genres": list(GENRES),
            "train_clips": int(x_tr.shape[0]),
            "valid_clips": int(0 if x_va is None else x_va.shape[0]),
            "test_clips": int(x_te.shape[0]),
            "metrics": metrics,
            "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
            "costs": {
                "parameters": int(net.count_params()),
                "model_mb": (tmp / "model.keras").stat().st_size / 1e6,
                "train_seconds": train_seconds,
                "seconds_per_epoch": train_seconds / max(1, epochs_run),
                "epochs_run": epochs_run,
                "peak_rss_mb": _peak_rss_mb(),
                "inference_ms_per_clip": infer_ms,
            },
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic.write_json_atomic(tmp / "metrics.json", result)
    published = atomic.resolve_current(run_dir)
    result["model_path"] = str(published / "model.keras")
    result["run_dir"] = str(published)
    return result
