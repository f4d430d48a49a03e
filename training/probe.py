"""The ``probe`` model family: a linear (or small MLP) classifier on musicnn clip embeddings.

A probe is trained on the embeddings view (:class:`feature_store.embeddings.EmbeddingStore`),
evaluated with :func:`training.evaluate.evaluate` and published in the model store beside the
from-scratch models, so that :meth:`training.train.ModelStore.runs` and the report pick it up::

    <models root>/mel-<params hash>/probe_logreg_msd/clip-05s/seed-0[--<variant>]/
        current -> gen-<id>/
            probe.npz       standardisation and layer weights (plain arrays, no pickle)
            probe.json      classifier, embedding model, layers, genres, shapes
            metrics.json    the same keys as :func:`training.train.train_model` writes

``<params hash>`` is the hash of the :class:`~feature_store.params.FeatureParams` that define
the clips (the same folder as the mel models trained on the same clips). Its inference cost
``costs.inference_ms_per_clip`` is the embedding cost per clip (decode, log-mel and musicnn,
measured when the store was built) plus the probe's own cost per clip.

Prediction needs no scikit-learn: :class:`Probe` runs the stored weights in NumPy.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from feature_store import atomic
from feature_store.embeddings.musicnn import LAYERS, MUSICNN_MODELS
from feature_store.embeddings.store import DEFAULT_LAYERS, EmbeddingStore, validate_layers
from feature_store.errors import ParameterError, StoreError
from feature_store.params import GENRES, FeatureParams, validate_clip_seconds
from feature_store.splits import EXCLUDED, validate_scheme
from training.evaluate import evaluate

#: Classifiers of the probe family.
CLASSIFIERS: tuple[str, ...] = ("logreg", "mlp")
#: Run folders' model names: ``probe_<classifier>_<msd|mtt>``.
PROBE_PREFIX = "probe_"
#: ``layout`` recorded in a probe's metrics.json (mel models record their input layout).
PROBE_LAYOUT = "embedding"


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Hyper-parameters of one probe run.

    Parameters
    ----------
    classifier : {'logreg', 'mlp'}
        Multinomial logistic regression (L2, lbfgs), or one hidden ReLU layer (Adam).
    embedding_model : {'MSD_musicnn', 'MTT_musicnn'}
        Which embedding store to read.
    layers : tuple of str
        Layers concatenated as features (default max_pool 753 + penultimate 200 + tags 50).
    C : float > 0
        Inverse L2 strength of the logistic regression.
    hidden_units : int > 0
        Width of the MLP's hidden layer.
    alpha : float >= 0
        L2 strength of the MLP.
    max_iter : int > 0
        Iteration cap of either solver.
    seed : int >= 0
        Seeds the solver (the logistic regression is deterministic: seeds give one result).
    scheme : str
        Split scheme of the store.
    test_part : str
        Part of ``scheme`` held out for testing; every other part but ``excluded`` trains.
        Ignored when :func:`train_probe` gets a ``test_store_root``.
    class_weighting : bool
        Weight classes by inverse frequency.
    """

    classifier: str = "logreg"
    embedding_model: str = "MSD_musicnn"
    layers: tuple[str, ...] = DEFAULT_LAYERS
    C: float = 1.0
    hidden_units: int = 256
    alpha: float = 1e-2
    max_iter: int = 2000
    seed: int = 0
    scheme: str = "seed"
    test_part: str = "test"
    class_weighting: bool = True

    def __post_init__(self) -> None:
        if self.classifier not in CLASSIFIERS:
            raise ParameterError(f"unknown probe classifier {self.classifier!r}; valid: {list(CLASSIFIERS)}")
        if self.embedding_model not in MUSICNN_MODELS:
            raise ParameterError(
                f"unknown embedding model {self.embedding_model!r}; valid: {list(MUSICNN_MODELS)}"
            )
        object.__setattr__(self, "layers", validate_layers(self.layers))
        if not self.C > 0:
            raise ParameterError(f"C must be positive, got {self.C!r}")
        if not self.alpha >= 0:
            raise ParameterError(f"alpha must be >= 0, got {self.alpha!r}")
        for name in ("hidden_units", "max_iter"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ParameterError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ParameterError(f"seed must be a non-negative integer, got {self.seed!r}")
        validate_scheme(self.scheme)

    @property
    def name(self) -> str:
        """The model name of the run folder: ``probe_logreg_msd``, ``probe_mlp_mtt``..."""
        return f"{PROBE_PREFIX}{self.classifier}_{self.embedding_model.split('_')[0].lower()}"


def is_probe_run(metrics: dict[str, Any]) -> bool:
    """Whether a run's metrics.json belongs to the probe family (route it to :func:`predict_probe`)."""
    return metrics.get("family") == "probe" or str(metrics.get("model", "")).startswith(PROBE_PREFIX)


@dataclasses.dataclass
class Probe:
    """A fitted probe: standardisation, then dense layers, then a softmax over the 10 genres.

    Attributes
    ----------
    mean, std : np.ndarray [shape=(features,)]
        Standardisation fitted on the training clips.
    weights, biases : list of np.ndarray
        Dense layers ``[(features, hidden), (hidden, 10)]`` for the MLP, ``[(features, 10)]``
        for the logistic regression; ReLU between layers.
    classifier : str
    embedding_model : str
    layers : tuple of str
    """

    mean: np.ndarray
    std: np.ndarray
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    classifier: str
    embedding_model: str
    layers: tuple[str, ...]

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
        np.ndarray [shape=(clips, 10)]
            Rows sum to 1; columns follow :data:`feature_store.params.GENRES`.
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

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write ``probe.npz`` (plain arrays) and ``probe.json`` into ``folder``."""
        folder = Path(folder)
        arrays = {"mean": self.mean, "std": self.std}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        with atomic.atomic_path(folder / "probe.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{k: np.asarray(v, np.float64) for k, v in arrays.items()})
        atomic.write_json_atomic(
            folder / "probe.json",
            {
                "classifier": self.classifier,
                "embedding_model": self.embedding_model,
                "layers": list(self.layers),
                "n_layers": len(self.weights),
                "n_features": self.n_features,
                "genres": list(GENRES),
                "format": "probe.npz: mean, std, w0, b0[, w1, b1]; x -> (x-mean)/std -> dense/relu... -> softmax",
            },
        )

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Probe:
        """Read a probe written by :meth:`save` (``np.load(allow_pickle=False)``)."""
        folder = Path(folder)
        if not (folder / "probe.npz").is_file() or not (folder / "probe.json").is_file():
            raise StoreError(f"no probe in {folder} (expected probe.npz and probe.json)")
        meta = json.loads((folder / "probe.json").read_text())
        with np.load(folder / "probe.npz", allow_pickle=False) as z:
            n = int(meta["n_layers"])
            return cls(
                mean=z["mean"], std=z["std"],
                weights=[z[f"w{i}"] for i in range(n)], biases=[z[f"b{i}"] for i in range(n)],
                classifier=meta["classifier"], embedding_model=meta["embedding_model"], layers=tuple(meta["layers"]),
            )


def _full_classes(w: np.ndarray, b: np.ndarray, classes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Map sklearn's output layer over ``classes`` onto all ``n_classes`` genres.

    Absent genres get a -1e4 bias (never predicted). A binary sklearn model keeps one column
    ``z`` for ``classes[1]``; it becomes the softmax pair ``(-z/2, z/2)``, whose softmax is
    exactly ``(1 - sigmoid(z), sigmoid(z))``.
    """
    out_w = np.zeros((w.shape[0], n_classes))
    out_b = np.full(n_classes, -1e4)
    if classes.size == 2 and w.shape[1] == 1:
        out_w[:, classes[0]], out_w[:, classes[1]] = -w[:, 0] / 2, w[:, 0] / 2
        out_b[classes[0]], out_b[classes[1]] = -b[0] / 2, b[0] / 2
    else:
        out_w[:, classes], out_b[classes] = w, b
    return out_w, out_b


def fit_probe(x: np.ndarray, y: np.ndarray, *, config: ProbeConfig | None = None) -> tuple[Probe, dict[str, Any]]:
    """Fit a probe on embeddings with scikit-learn.

    Parameters
    ----------
    x : np.ndarray [shape=(clips, features)]
    y : np.ndarray [shape=(clips,)]
        Genre labels in ``0..9``; at least two genres.
    config : ProbeConfig, optional

    Returns
    -------
    probe : Probe
    history : dict
        ``iterations`` of the solver (and the MLP's ``loss`` curve).
    """
    config = config or ProbeConfig()
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ParameterError(f"x must have shape (clips>0, features) matching y; got {x.shape} and {y.shape}")
    if np.unique(y).size < 2:
        raise ParameterError("a probe needs training clips of at least two genres")
    mean, std = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
    xs = (x - mean) / std
    n_classes = len(GENRES)
    if config.classifier == "logreg":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(
            C=config.C, max_iter=config.max_iter, class_weight="balanced" if config.class_weighting else None,
            random_state=config.seed,
        )
        clf.fit(xs, y)
        w, b = _full_classes(clf.coef_.T, clf.intercept_, clf.classes_.astype(int), n_classes)
        weights, biases = [w], [b]
        history = {"iterations": [float(np.max(clf.n_iter_))]}
    else:
        from sklearn.neural_network import MLPClassifier

        sample_weight = None
        if config.class_weighting:
            counts = np.bincount(y, minlength=n_classes).astype(float)
            sample_weight = (y.size / (np.count_nonzero(counts) * counts[y]))
        clf = MLPClassifier(
            hidden_layer_sizes=(config.hidden_units,), alpha=config.alpha, max_iter=config.max_iter,
            random_state=config.seed, early_stopping=False,
        )
        try:
            clf.fit(xs, y, sample_weight=sample_weight)
        except TypeError:  # scikit-learn < 1.7 has no sample_weight for MLPs
            clf.fit(xs, y)
        w_out, b_out = _full_classes(clf.coefs_[-1], clf.intercepts_[-1], clf.classes_.astype(int), n_classes)
        weights = [np.asarray(clf.coefs_[0]), w_out]
        biases = [np.asarray(clf.intercepts_[0]), b_out]
        history = {"iterations": [float(clf.n_iter_)], "loss": [float(v) for v in clf.loss_curve_]}
    probe = Probe(
        mean=mean, std=std, weights=weights, biases=biases, classifier=config.classifier,
        embedding_model=config.embedding_model, layers=tuple(config.layers),
    )
    return probe, history


def _parts_of(store: EmbeddingStore, clip_seconds: int, scheme: str) -> list[str]:
    import polars as pl

    col = store.clips(clip_seconds=clip_seconds).select(pl.col(scheme).unique()).collect()[scheme]
    return sorted(p for p in col.to_list() if p != EXCLUDED)


def probe_run_dir(
    model_root: str | os.PathLike[str], *, params: FeatureParams, name: str, clip_seconds: int, seed: int,
    variant: str = "",
) -> Path:
    """Run folder ``mel-<hash>/<name>/clip-NNs/seed-<seed>[--<variant>]``, confined to the root."""
    root = Path(model_root).expanduser().resolve()
    c = validate_clip_seconds(clip_seconds)
    ok = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    if not isinstance(variant, str) or len(variant) > 64 or not set(variant) <= ok or variant.startswith("."):
        raise ParameterError(f"variant must be up to 64 letters, digits, '-', '_' or '.' (not leading), got {variant!r}")
    leaf = f"seed-{seed}" + (f"--{variant}" if variant else "")
    p = (root / f"mel-{params.hash()}" / name / f"clip-{c:02d}s" / leaf).resolve()
    if root not in p.parents:
        raise ParameterError(f"run folder {p} escapes the model store {root}")
    return p


def train_probe(
    *,
    store_root: str | os.PathLike[str],
    model_root: str | os.PathLike[str],
    clip_seconds: int,
    params: FeatureParams | None = None,
    config: ProbeConfig | None = None,
    test_store_root: str | os.PathLike[str] | None = None,
    variant: str = "",
) -> dict[str, Any]:
    """Train a probe on one clip length, evaluate it and publish the run in the model store.

    Parameters
    ----------
    store_root : path
        Root whose embeddings view (for ``config.embedding_model`` and ``params``) is built.
    model_root : path
        Model store root.
    clip_seconds : int
    params : FeatureParams, optional
        Clip definitions (default ``FeatureParams()``).
    config : ProbeConfig, optional
    test_store_root : path, optional
        Hold out every song of this store's embeddings view instead of ``config.test_part``,
        and train on every non-excluded song of ``store_root`` (e.g. ``gtzan-mini`` ->
        ``gtzan-holdout``).
    variant : str
        Suffix of the run folder for a set-up other than the default.

    Returns
    -------
    dict
        The run's ``metrics.json`` (the keys of :func:`training.train.train_model`, plus
        ``family``, ``embedding``) with ``run_dir`` and ``model_path``.

    Raises
    ------
    StoreError
        The embeddings view is not built for this clip length, or the split leaves no
        training or held-out clips.
    """
    c = validate_clip_seconds(clip_seconds)
    params = params or FeatureParams()
    config = config or ProbeConfig()
    store = EmbeddingStore(store_root, model=config.embedding_model, params=params)
    test_store = (
        EmbeddingStore(test_store_root, model=config.embedding_model, params=params) if test_store_root else None
    )
    run_dir = probe_run_dir(model_root, params=params, name=config.name, clip_seconds=c, seed=config.seed,
                            variant=variant)
    parts = _parts_of(store, c, config.scheme)
    if test_store is not None:
        train = store.tensors(clip_seconds=c, layers=config.layers, split=parts, scheme=config.scheme)
        test_parts = _parts_of(test_store, c, config.scheme)
        test = test_store.tensors(clip_seconds=c, layers=config.layers, split=test_parts, scheme=config.scheme)
        held_out = f"every song of {test_store.root}"
    else:
        if config.test_part not in parts:
            raise ParameterError(
                f"test_part {config.test_part!r} is not a part of scheme {config.scheme!r} here; valid parts are {parts}"
            )
        train_parts = [p for p in parts if p != config.test_part]
        if not train_parts:
            raise StoreError(f"the {config.scheme!r} split has no training part besides {config.test_part!r}")
        train = store.tensors(clip_seconds=c, layers=config.layers, split=train_parts, scheme=config.scheme)
        test = store.tensors(clip_seconds=c, layers=config.layers, split=config.test_part, scheme=config.scheme)
        held_out = f"{config.scheme}:{config.test_part}"
    if train.x.shape[0] == 0 or test.x.shape[0] == 0:
        raise StoreError(
            f"the split leaves {train.x.shape[0]} training and {test.x.shape[0]} held-out clips at {c} s "
            f"(held out: {held_out}); need at least one of each"
        )
    import sklearn.linear_model  # noqa: F401  (imported before the clock starts)
    import sklearn.neural_network  # noqa: F401

    from training.train import RssSampler

    with RssSampler() as rss:
        t0 = time.perf_counter()
        probe, history = fit_probe(train.x, train.y, config=config)
        train_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        probs = probe.predict_proba(test.x)
        probe_ms = 1000 * (time.perf_counter() - t1) / test.x.shape[0]
    metrics = evaluate(probs, test.y, test.index["song_id"].to_list(), n_classes=len(GENRES))
    reg = store.describe()
    embed_ms = (reg["clip_lengths"].get(str(c)) or {}).get("embed_ms_per_clip")
    embed_ms = float(embed_ms) if embed_ms is not None else float("nan")

    with atomic.new_generation(run_dir) as tmp:
        probe.save(tmp)
        result = {
            "model": config.name,
            "family": "probe",
            "variant": variant,
            "trainer": "probe",
            "clip_seconds": c,
            "seed": config.seed,
            "config": {**dataclasses.asdict(config), "layers": list(config.layers)},
            "feature_params": params.to_dict(),
            "params_hash": params.hash(),
            "layout": PROBE_LAYOUT,
            "frames": params.clip_frames(c),
            "genres": list(GENRES),
            "store_root": str(store.root),
            "test_store_root": str(test_store.root) if test_store is not None else None,
            "held_out": held_out,
            "embedding": {
                "model": config.embedding_model,
                "weights_sha256": reg.get("weights_sha256"),
                "embedding_hash": store.hash(),
                "layers": list(config.layers),
                "features": int(sum(LAYERS[n] for n in config.layers)),
            },
            "train_clips": int(train.x.shape[0]),
            "train_songs": int(train.index["song_id"].n_unique()),
            "valid_clips": 0,
            "valid_songs": 0,
            "test_clips": int(test.x.shape[0]),
            "test_songs": int(test.index["song_id"].n_unique()),
            "streamed": False,
            "songs": {
                "train": sorted(set(train.index["song_id"].to_list())),
                "valid": [],
                "test": sorted(set(test.index["song_id"].to_list())),
            },
            "metrics": metrics,
            "history": history,
            "costs": {
                "parameters": probe.n_parameters,
                "model_mb": (tmp / "probe.npz").stat().st_size / 1e6,
                "train_seconds": train_seconds,
                "seconds_per_epoch": train_seconds / max(1.0, history["iterations"][0]),
                "epochs_run": int(history["iterations"][0]),
                "best_epoch": int(history["iterations"][0]),
                "peak_rss_mb": rss.peak_mb,
                "rss_at_start_mb": rss.start_mb,
                "inference_ms_per_clip": embed_ms + probe_ms,
                "embedding_ms_per_clip": embed_ms,
                "probe_ms_per_clip": probe_ms,
            },
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic.write_json_atomic(tmp / "metrics.json", result)
    published = atomic.resolve_current(run_dir)
    result["model_path"] = str(published / "probe.npz")
    result["run_dir"] = str(published)
    return result


def train_probe_seeds(
    *, seeds: Sequence[int] = (0, 1, 2), config: ProbeConfig | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """:func:`train_probe` once per seed (same other arguments); returns each run's metrics."""
    config = config or ProbeConfig()
    return [train_probe(config=dataclasses.replace(config, seed=int(s)), **kwargs) for s in seeds]


def load_probe(run_dir: str | os.PathLike[str]) -> tuple[Probe, dict[str, Any]]:
    """The probe and metrics of a published run (``run_dir`` is the run or its ``current``)."""
    run_dir = Path(run_dir)
    cur = atomic.resolve_current(run_dir) or run_dir
    if not (cur / "metrics.json").is_file():
        raise StoreError(f"no published probe run at {run_dir}; train it first (training.probe.train_probe)")
    return Probe.load(cur), json.loads((cur / "metrics.json").read_text())


def predict_probe(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    run_dir: str | os.PathLike[str],
    embedder: Any = None,
) -> list[dict[str, Any]]:
    """Genre of each audio file with a published probe run.

    Each file is decoded, cut into the run's clips (its clip length and ``mode``), embedded
    with the run's musicnn model, and classified; the file's probabilities are the mean over
    its clips.

    Parameters
    ----------
    paths : path or list of paths
        Audio files (any format :func:`feature_store.audio.decode` reads).
    run_dir : path
        A probe run folder (e.g. ``run_dir`` of a :meth:`ModelStore.runs` entry).
    embedder : MusicnnEmbedder, optional
        The network (default: the process's shared one for the probe's model).

    Returns
    -------
    list of dict
        Per file: ``path``, ``genre``, ``probabilities`` (genre -> p), ``clips``,
        ``clip_probabilities`` (clips x 10), ``embed_seconds``, ``model``, ``clip_seconds``.
    """
    from feature_store.embeddings.musicnn import shared_embedder
    from feature_store.embeddings.store import embed_file

    probe, metrics = load_probe(run_dir)
    c = int(metrics["clip_seconds"])
    params = FeatureParams.from_dict(metrics["feature_params"])
    embedder = embedder or shared_embedder(probe.embedding_model)
    if embedder.model != probe.embedding_model:
        raise ParameterError(f"the embedder runs {embedder.model}, the probe needs {probe.embedding_model}")
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out = []
    for path in items:
        emb = embed_file(path, clip_seconds=c, params=params, model=probe.embedding_model, layers=probe.layers,
                         embedder=embedder)
        p = probe.predict_proba(emb.x)
        song = p.mean(axis=0)
        out.append({
            "path": str(path),
            "genre": GENRES[int(song.argmax())],
            "probabilities": {g: float(v) for g, v in zip(GENRES, song, strict=True)},
            "clips": int(p.shape[0]),
            "clip_probabilities": p.tolist(),
            "embed_seconds": emb.seconds,
            "model": metrics["model"],
            "clip_seconds": c,
        })
    return out
