"""Vector classifiers: standardisation, then dense layers, on named arrays of a vector view.

A model of this family is one declaration in :data:`DECLARATIONS`: its name, the view and the
arrays it reads side by side, and the classifier (``logreg``: multinomial logistic regression;
``mlp``: one hidden ReLU layer). The musicnn probes are four such declarations. A classifier on
another vector view is one more line, e.g. on the timbre statistics::

    VectorClassifier("timbre_logreg", view="timbre", arrays=("timbre",), classifier="logreg"),

Runs hold ``probe.npz`` (plain arrays, loaded without pickle) and ``probe.json``; prediction
runs the stored weights in NumPy, without scikit-learn. Runs are recorded as family ``vector``
(trainer ``sklearn``); records of the older ``probe`` family read as ``vector``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from feature_store import atomic, integrity
from feature_store.errors import ParameterError, StoreError
from training.config import VectorConfig
from training.families.base import Fit, ModelFamily, Scores, first_line

#: Largest ``probe.npz`` read back, uncompressed (a probe's weights are a few MB).
MAX_PROBE_BYTES = 64 << 20
#: Classifiers of the family.
CLASSIFIERS: tuple[str, ...] = ("logreg", "mlp")


@dataclasses.dataclass
class Probe:
    """A fitted vector classifier: standardisation, dense layers, a softmax over the run's labels.

    Attributes
    ----------
    mean, std : np.ndarray [shape=(features,)]
        Standardisation fitted on the training clips.
    weights, biases : list of np.ndarray
        Dense layers ``[(features, hidden), (hidden, labels)]`` for the MLP,
        ``[(features, labels)]`` for the logistic regression; ReLU between layers.
    classifier : str
    arrays : tuple of str
        The view's arrays it reads, side by side (:attr:`layers` for musicnn embeddings).
    view : str
    embedding_model : str or None
        The musicnn weights, for the embeddings view.
    """

    mean: np.ndarray
    std: np.ndarray
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    classifier: str
    arrays: tuple[str, ...]
    view: str = "embeddings"
    embedding_model: str | None = None

    @property
    def layers(self) -> tuple[str, ...]:
        """The musicnn layers of a probe on embeddings (its arrays)."""
        return self.arrays

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])

    @property
    def n_parameters(self) -> int:
        return int(sum(w.size for w in self.weights) + sum(b.size for b in self.biases))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Genre probabilities.

        Parameters
        ----------
        x : np.ndarray [shape=(clips, features)]

        Returns
        -------
        np.ndarray [shape=(clips, labels)]
            Rows sum to 1; columns follow the run's labels (:attr:`training.record.RunRecord.labels`).
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ParameterError(f"x must have shape (clips, {self.n_features}), got {x.shape}")
        h = (x - self.mean) / self.std
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        h = h - h.max(axis=1, keepdims=True)
        e = np.exp(h)
        return e / e.sum(axis=1, keepdims=True)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``probe.npz`` (plain arrays) and ``probe.json`` into ``folder``; return the ``.npz``."""
        folder = Path(folder)
        arrays = {"mean": self.mean, "std": self.std}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        with atomic.atomic_path(folder / "probe.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{k: np.asarray(v, np.float64) for k, v in arrays.items()})
        atomic.write_json_atomic(
            folder / "probe.json",
            integrity.with_checksum({
                "classifier": self.classifier,
                "view": self.view,
                "embedding_model": self.embedding_model,
                "layers": list(self.arrays),
                "n_layers": len(self.weights),
                "n_features": self.n_features,
                "format": "probe.npz: mean, std, w0, b0[, w1, b1]; x -> (x-mean)/std -> dense/relu... -> softmax",
            }),
        )
        return folder / "probe.npz"

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Probe:
        """Read a probe written by :meth:`save` (``np.load(allow_pickle=False)``)."""
        folder = Path(folder)
        if not (folder / "probe.npz").is_file() or not (folder / "probe.json").is_file():
            raise StoreError(f"no probe in {folder} (expected probe.npz and probe.json)")
        from training.record import RETRAIN

        meta = integrity.read_json(folder / "probe.json", remedy=RETRAIN)
        # sizes bounded from the zip directory before anything is decompressed; CRCs checked
        z = integrity.read_npz(folder / "probe.npz", max_bytes=MAX_PROBE_BYTES, remedy=RETRAIN)
        try:
            n = int(meta["n_layers"])
            arrays = {"mean": z["mean"], "std": z["std"], "weights": [z[f"w{i}"] for i in range(n)],
                      "biases": [z[f"b{i}"] for i in range(n)]}
        except Exception as exc:  # noqa: BLE001 - a member renamed or rewritten by damage: zipfile and NumPy raise anything
            raise integrity.IntegrityError(f"{folder / 'probe.npz'} cannot be read ({first_line(exc)}): the file "
                                           f"is damaged; {RETRAIN}") from exc
        return cls(**arrays, classifier=meta["classifier"], arrays=tuple(meta["layers"]),
                   view=meta.get("view", "embeddings"), embedding_model=meta.get("embedding_model"))


def fit_vector(x: np.ndarray, y: np.ndarray, *, classifier: str, config: VectorConfig,
               n_classes: int | None = None) -> tuple[Probe, dict[str, Any]]:
    """Fit a vector classifier with scikit-learn.

    Parameters
    ----------
    x : np.ndarray [shape=(clips, features)]
    y : np.ndarray [shape=(clips,)]
        Class codes in ``0..n_classes-1``; at least two classes.
    classifier : {'logreg', 'mlp'}
    config : VectorConfig
    n_classes : int, optional
        The run's classes (default: ``y.max() + 1``).

    Returns
    -------
    probe : Probe
        With empty ``arrays``; the caller names them.
    history : dict
        ``iterations`` of the solver (and the MLP's ``loss`` curve).
    """
    from training.sklearn_fit import fit_logreg, fit_mlp, standardisation

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ParameterError(f"x must have shape (clips>0, features) matching y; got {x.shape} and {y.shape}")
    if np.unique(y).size < 2:
        raise ParameterError("a vector classifier needs training clips of at least two labels")
    mean, std = standardisation(x)
    common = {"max_iter": config.max_iter, "class_weighting": config.class_weighting, "seed": config.seed,
              "n_classes": int(y.max()) + 1 if n_classes is None else n_classes}
    if classifier == "logreg":
        w, b, iterations = fit_logreg((x - mean) / std, y, C=config.C, **common)
        weights, biases, history = [w], [b], {"iterations": [float(iterations)]}
    else:
        weights, biases, history = fit_mlp((x - mean) / std, y, hidden_units=config.hidden_units, alpha=config.alpha,
                                           **common)
    return Probe(mean=mean, std=std, weights=weights, biases=biases, classifier=classifier, arrays=()), history


@dataclasses.dataclass(frozen=True)
class VectorClassifier(ModelFamily):
    """One vector classifier: ``classifier`` on ``arrays`` of ``view`` (see the module docstring)."""

    name: str
    view: str
    arrays: tuple[str, ...]
    classifier: str = "logreg"
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    layout: str = "vector"
    family = "vector"
    trainer = "sklearn"
    files = ("probe.npz", "probe.json")
    config_type = VectorConfig

    def __post_init__(self) -> None:
        if self.classifier not in CLASSIFIERS:
            raise ParameterError(f"unknown probe classifier {self.classifier!r}; valid: {list(CLASSIFIERS)}")

    def fit(self, data: Any, config: VectorConfig, *, progress: bool = False) -> Fit:
        import sklearn.linear_model  # noqa: F401  (imported before the clock starts)
        import sklearn.neural_network  # noqa: F401

        train = data.tensors(parts=data.fit_parts, arrays=self.arrays)
        t0 = time.perf_counter()
        probe, history = fit_vector(train.x, train.y, classifier=self.classifier, config=config,
                                    n_classes=len(data.labels))
        train_seconds = time.perf_counter() - t0
        probe = dataclasses.replace(probe, arrays=tuple(self.arrays), view=self.view,
                                    embedding_model=self.options.get("embedding_model"))
        iterations = int(history["iterations"][0])
        return Fit(probe, train.index, None, history, train_seconds, iterations, iterations)

    def score(self, fit: Fit, data: Any) -> Scores:
        test = data.tensors(parts=data.test_parts, test=True, arrays=self.arrays)
        t0 = time.perf_counter()
        probs = fit.model.predict_proba(test.x)
        ms = 1000 * (time.perf_counter() - t0) / test.x.shape[0]
        return Scores(probs, test.y, test.index["song_id"].to_list(), ms)

    def load(self, folder: Path, record: Any) -> Probe:
        self.require_files(folder)
        try:
            return Probe.load(folder)
        except StoreError:
            raise  # a damaged file: the message names it and what to do
        except Exception as exc:  # np.load and json raise ValueError, KeyError, OSError, zipfile errors...
            raise StoreError(f"cannot load the probe at {folder}: {first_line(exc)}") from exc


def probe(classifier: str, embedding_model: str, layers: tuple[str, ...] | None = None) -> VectorClassifier:
    """The probe ``probe_<classifier>_<msd|mtt>``: ``classifier`` on musicnn embeddings' ``layers``."""
    from feature_store.embeddings.store import DEFAULT_LAYERS

    name = f"probe_{classifier}_{embedding_model.split('_')[0].lower()}"
    return VectorClassifier(name, view="embeddings", arrays=tuple(layers or DEFAULT_LAYERS), classifier=classifier,
                            options={"embedding_model": embedding_model}, layout="embedding")


@dataclasses.dataclass(frozen=True)
class ProbeConfig(VectorConfig):
    """A :class:`VectorConfig` that also names which probe on musicnn embeddings it trains.

    Parameters
    ----------
    classifier : {'logreg', 'mlp'}
        Multinomial logistic regression (L2, lbfgs), or one hidden ReLU layer (Adam).
    embedding_model : {'MSD_musicnn', 'MTT_musicnn'}
        Which embeddings store to read.
    layers : tuple of str
        Layers concatenated as features (default max_pool 753 + penultimate 200 + tags 50).
    C, hidden_units, alpha, max_iter, seed, scheme, test_part, class_weighting
        As :class:`training.config.VectorConfig`.
    """

    classifier: str = "logreg"
    embedding_model: str = "MSD_musicnn"
    layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from feature_store.embeddings.musicnn import MUSICNN_MODELS
        from feature_store.embeddings.store import DEFAULT_LAYERS, validate_layers

        if self.classifier not in CLASSIFIERS:
            raise ParameterError(f"unknown probe classifier {self.classifier!r}; valid: {list(CLASSIFIERS)}")
        if self.embedding_model not in MUSICNN_MODELS:
            raise ParameterError(f"unknown embedding model {self.embedding_model!r}; valid: {list(MUSICNN_MODELS)}")
        object.__setattr__(self, "layers", validate_layers(self.layers or DEFAULT_LAYERS))
        super().__post_init__()

    @property
    def name(self) -> str:
        """The model name of the run folder: ``probe_logreg_msd``, ``probe_mlp_mtt``..."""
        return self.declaration().name

    def declaration(self) -> VectorClassifier:
        """The vector classifier this config trains (its layers may differ from the registered probe's)."""
        return probe(self.classifier, self.embedding_model, self.layers)


DECLARATIONS = (
    probe("logreg", "MSD_musicnn"),
    probe("mlp", "MSD_musicnn"),
    probe("logreg", "MTT_musicnn"),
    probe("mlp", "MTT_musicnn"),
    # the classic baseline: standardised logistic regression on the timbral statistics
    VectorClassifier("timbre_logreg", view="timbre", arrays=("timbre",), classifier="logreg"),
)
