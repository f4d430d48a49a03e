"""Training from the feature store: :func:`train_model` and :func:`train_seeds`, for every model.

One call of :func:`train_model` trains one model on one clip length with one seed and
publishes a run folder in the model store; a mel model's holds::

    <models root>/mel-<params hash>/<model>/clip-05s/seed-0[--<variant>]/   (<view>-<params hash> in general)
        current -> gen-<id>/
            model.keras        the trained model (Keras 3 format, loaded with safe_mode)
            normalizer.json    per-band mean/std fitted on the training songs
            metrics.json       parameters, held-out metrics and costs (training.record.RunRecord)

:func:`train_seeds` runs several seeds (3 by default: the study found single runs very
unstable). Runs are published atomically (see :func:`feature_store.atomic.new_generation`).

This module gathers the training API in one place. The work is done by the runner
(:mod:`training.runner`) and the model families (:mod:`training.families`); the pieces live in
:mod:`training.config` (``TrainConfig``, ``AUGMENT``), :mod:`training.normalizer`,
:mod:`training.selection` (which clips train, validate and test), :mod:`training.feeding`
(memory or HDF5 batches, augmentation), :mod:`training.keras_fit`, :mod:`training.memory`
(``RssSampler``) and :mod:`training.model_store`.
"""

from __future__ import annotations

from training.config import AUGMENT, DEFAULT_SEEDS, TrainConfig
from training.feeding import ClipSource, Feeder, augment_batch
from training.keras_fit import load_model, set_determinism
from training.memory import RssSampler
from training.model_store import ModelStore, validate_variant
from training.normalizer import BandNormalizer
from training.runner import train_model, train_seeds
from training.selection import class_weights, split_validation

__all__ = [
    "AUGMENT", "DEFAULT_SEEDS", "BandNormalizer", "ClipSource", "Feeder", "ModelStore", "RssSampler", "TrainConfig",
    "augment_batch", "class_weights", "load_model", "set_determinism", "split_validation", "train_model",
    "train_seeds", "validate_variant",
]
