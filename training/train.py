"""Training the mel models from the feature store: :func:`train_model` and :func:`train_seeds`.

One call of :func:`train_model` trains one model of :data:`training.models.MODELS` on one clip
length with one seed and publishes a run folder in the model store::

    <models root>/mel-<params hash>/<model>/clip-05s/seed-0[--<variant>]/
        current -> gen-<id>/
            model.keras        the trained model (Keras 3 format, loaded with safe_mode)
            normalizer.json    per-band mean/std fitted on the training songs
            metrics.json       parameters, held-out metrics and costs (training.record.RunRecord)

:func:`train_seeds` runs several seeds (3 by default: the study found single runs very
unstable). Runs are published atomically (see :func:`feature_store.atomic.new_generation`).

The work is done by the family-independent runner (:func:`training.runner.train_run`) and the
families of :mod:`training.families`; the pieces live in their own modules and are re-exported
here: :mod:`training.config` (``TrainConfig``, ``AUGMENT``), :mod:`training.normalizer`,
:mod:`training.selection` (which clips train, validate and test), :mod:`training.feeding`
(memory or HDF5 batches, augmentation), :mod:`training.keras_fit`, :mod:`training.memory`
(``RssSampler``) and :mod:`training.model_store`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from feature_store.params import FeatureParams
from training.config import AUGMENT, DEFAULT_SEEDS, TrainConfig
from training.feeding import ClipSource, Feeder, augment_batch
from training.keras_fit import load_model, set_determinism
from training.memory import RssSampler
from training.model_store import ModelStore, validate_variant
from training.models import get_spec
from training.normalizer import BandNormalizer
from training.runner import train_run, train_runs
from training.selection import class_weights, split_validation

__all__ = [
    "AUGMENT", "DEFAULT_SEEDS", "BandNormalizer", "ClipSource", "Feeder", "ModelStore", "RssSampler", "TrainConfig",
    "augment_batch", "class_weights", "load_model", "set_determinism", "split_validation", "train_model",
    "train_seeds", "validate_variant",
]


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
        The run's ``metrics.json`` (model, family, view, clip_seconds, seed, config,
        feature_params, layout, frames, genres, data sizes, held-out ``metrics``, ``costs``,
        ``history``) plus ``model_path`` and ``run_dir``.

    Raises
    ------
    ParameterError
        Unknown model, clip length, scheme or part; augmentation the model cannot take.
    StoreError
        The feature store for these params and clip length has not been built, or the split
        leaves no training or held-out songs.
    """
    from training.families import get_family

    get_spec(model)  # the mel models only: the message names MODELS
    return train_run(family=get_family(model), store_root=store_root, model_root=model_root, clip_seconds=clip_seconds,
                     params=params, config=config or TrainConfig(), progress=progress,
                     test_store_root=test_store_root, variant=variant)


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
    return train_runs(train_model, seeds=seeds, config=config or TrainConfig(), **kwargs)
