"""Probes: a linear (or small MLP) classifier on musicnn clip embeddings.

The probes are declarations of the vector classifier family (:mod:`training.families.vector`)
on the embeddings view (:class:`feature_store.embeddings.EmbeddingStore`), trained, evaluated
and published by the same runner as every family (:func:`training.runner.train_model`), so that
:meth:`training.model_store.ModelStore.runs`, the report and prediction pick them up::

    <models root>/mel-<params hash>/probe_logreg_msd/clip-05s/seed-0[--<variant>]/
        current -> gen-<id>/
            probe.npz       standardisation and layer weights (plain arrays, no pickle)
            probe.json      classifier, embedding model, layers, genres, shapes
            metrics.json    the run record (training.record.RunRecord), family "probe"

``<params hash>`` is the hash of the :class:`~feature_store.params.FeatureParams` that define
the clips (the same folder as the mel models trained on the same clips). Its inference cost
``costs.inference_ms_per_clip`` is the embedding cost per clip (decode, log-mel and musicnn,
measured when the store was built) plus the probe's own cost per clip.

This module keeps the probes' own API: :class:`ProbeConfig` (which names the model), and
:func:`train_probe`, :func:`load_probe`, :func:`predict_probe`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from feature_store import atomic
from feature_store.embeddings.musicnn import MUSICNN_MODELS
from feature_store.embeddings.store import DEFAULT_LAYERS, validate_layers
from feature_store.errors import ParameterError, StoreError
from feature_store.params import GENRES, FeatureParams
from training.config import VectorConfig
from training.families.vector import CLASSIFIERS, Probe, VectorClassifier, fit_vector, probe
from training.record import RECORD_FILE, RunRecord
from training.runner import train_model, train_seeds

__all__ = ["CLASSIFIERS", "PROBE_LAYOUT", "PROBE_PREFIX", "Probe", "ProbeConfig", "fit_probe", "is_probe_run",
           "load_probe", "predict_probe", "train_probe", "train_probe_seeds"]

#: Run folders' model names: ``probe_<classifier>_<msd|mtt>``.
PROBE_PREFIX = "probe_"
#: ``layout`` recorded in a probe's metrics.json (mel models record their input layout).
PROBE_LAYOUT = "embedding"


@dataclasses.dataclass(frozen=True)
class ProbeConfig(VectorConfig):
    """Hyper-parameters of one probe run, and which probe it is.

    Parameters
    ----------
    classifier : {'logreg', 'mlp'}
        Multinomial logistic regression (L2, lbfgs), or one hidden ReLU layer (Adam).
    embedding_model : {'MSD_musicnn', 'MTT_musicnn'}
        Which embedding store to read.
    layers : tuple of str
        Layers concatenated as features (default max_pool 753 + penultimate 200 + tags 50).
    C, hidden_units, alpha, max_iter, seed, scheme, test_part, class_weighting
        As :class:`training.config.VectorConfig`.
    """

    classifier: str = "logreg"
    embedding_model: str = "MSD_musicnn"
    layers: tuple[str, ...] = DEFAULT_LAYERS

    def __post_init__(self) -> None:
        if self.classifier not in CLASSIFIERS:
            raise ParameterError(f"unknown probe classifier {self.classifier!r}; valid: {list(CLASSIFIERS)}")
        if self.embedding_model not in MUSICNN_MODELS:
            raise ParameterError(
                f"unknown embedding model {self.embedding_model!r}; valid: {list(MUSICNN_MODELS)}"
            )
        object.__setattr__(self, "layers", validate_layers(self.layers))
        super().__post_init__()

    @property
    def name(self) -> str:
        """The model name of the run folder: ``probe_logreg_msd``, ``probe_mlp_mtt``..."""
        return self.declaration().name

    def declaration(self) -> VectorClassifier:
        """The vector classifier this config trains (its layers may differ from the registered probe's)."""
        return probe(self.classifier, self.embedding_model, self.layers)


def is_probe_run(metrics: dict[str, Any]) -> bool:
    """Whether a run's metrics.json is a probe on musicnn embeddings (a vector classifier on that view)."""
    if metrics.get("view", "embeddings") != "embeddings":
        return False
    return metrics.get("family") == "probe" or str(metrics.get("model", "")).startswith(PROBE_PREFIX)


def fit_probe(x: np.ndarray, y: np.ndarray, *, config: ProbeConfig | None = None) -> tuple[Probe, dict[str, Any]]:
    """Fit a probe on embeddings with scikit-learn (:func:`training.families.vector.fit_vector`).

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
    fitted, history = fit_vector(x, y, classifier=config.classifier, config=config)
    return dataclasses.replace(fitted, arrays=tuple(config.layers), embedding_model=config.embedding_model), history


def train_probe(*, config: ProbeConfig | None = None, **kwargs: Any) -> dict[str, Any]:
    """Train a probe on one clip length, evaluate it and publish the run in the model store.

    :func:`training.runner.train_model` with the probe that ``config`` names.

    Parameters
    ----------
    config : ProbeConfig, optional
    **kwargs
        ``store_root`` (whose embeddings view for ``config.embedding_model`` is built),
        ``model_root``, ``clip_seconds``, and optionally ``params``, ``test_store_root`` (hold
        out every song of that store's embeddings view instead of ``config.test_part``, and
        train on every non-excluded song of ``store_root``, e.g. ``gtzan-mini`` ->
        ``gtzan-holdout``) and ``variant``.

    Returns
    -------
    dict
        The run's ``metrics.json`` (the keys of every run, plus ``embedding``) with
        ``run_dir`` and ``model_path``.

    Raises
    ------
    StoreError
        The embeddings view is not built for this clip length, or the split leaves no
        training or held-out clips.
    """
    config = config or ProbeConfig()
    return train_model(model=config.declaration(), config=config, **kwargs)


def train_probe_seeds(
    *, seeds: Sequence[int] = (0, 1, 2), config: ProbeConfig | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """:func:`train_probe` once per seed (same other arguments); returns each run's metrics."""
    config = config or ProbeConfig()
    return train_seeds(model=config.declaration(), seeds=seeds, config=config, **kwargs)


def load_probe(run_dir: str | os.PathLike[str]) -> tuple[Probe, dict[str, Any]]:
    """The probe and metrics of a published run (``run_dir`` is the run or its ``current``)."""
    run_dir = Path(run_dir)
    cur = atomic.resolve_current(run_dir) or run_dir
    if not (cur / RECORD_FILE).is_file():
        raise StoreError(f"no published probe run at {run_dir}; train it first (training.probe.train_probe)")
    return Probe.load(cur), RunRecord.load(cur).to_dict()


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

    fitted, metrics = load_probe(run_dir)
    c = int(metrics["clip_seconds"])
    params = FeatureParams.from_dict(metrics["feature_params"])
    model = fitted.embedding_model or metrics["view_options"]["embedding_model"]
    embedder = embedder or shared_embedder(model)
    if embedder.model != model:
        raise ParameterError(f"the embedder runs {embedder.model}, the probe needs {model}")
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out = []
    for path in items:
        emb = embed_file(path, clip_seconds=c, params=params, model=model, layers=fitted.layers, embedder=embedder)
        p = fitted.predict_proba(emb.x)
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
