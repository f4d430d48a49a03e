"""Thin Dagster assets and asset checks over ``feature_store`` and ``training``.

Importing this package is cheap: TensorFlow is imported only inside asset bodies.
"""

from assets.checks import (
    catalog_class_balance,
    catalog_duplicates,
    catalog_quarantine,
    model_above_chance,
    models_current,
    probe_above_chance,
    split_leakage,
)
from assets.embeddings import ProbeTrainingConfig, probe_models
from assets.features import timbre_features, timbre_sane
from assets.views import VIEW_ASSETS, VIEW_CHECKS
from assets.ingest import audio_catalog, song_splits
from assets.models import TrainingConfig, genre_models
from assets.reports import evaluation_report
from assets.resources import AudioSource, FeatureStoreResource, ModelStoreResource, ObjectStoreResource

#: The feature views' assets and checks, one of each per view (mel, embeddings, timbre...).
mel_features, musicnn_embeddings = VIEW_ASSETS["mel"], VIEW_ASSETS["embeddings"]
features_sane, embeddings_sane = VIEW_CHECKS["mel"], VIEW_CHECKS["embeddings"]

ALL_ASSETS = [audio_catalog, song_splits, *VIEW_ASSETS.values(), genre_models, probe_models, evaluation_report]
ALL_CHECKS = [
    catalog_quarantine,
    catalog_duplicates,
    catalog_class_balance,
    split_leakage,
    *VIEW_CHECKS.values(),
    model_above_chance,
    probe_above_chance,
    models_current,
]

__all__ = [
    "ALL_ASSETS",
    "ALL_CHECKS",
    "AudioSource",
    "FeatureStoreResource",
    "ModelStoreResource",
    "ObjectStoreResource",
    "ProbeTrainingConfig",
    "TrainingConfig",
    "audio_catalog",
    "catalog_class_balance",
    "catalog_duplicates",
    "catalog_quarantine",
    "embeddings_sane",
    "evaluation_report",
    "features_sane",
    "genre_models",
    "mel_features",
    "model_above_chance",
    "musicnn_embeddings",
    "probe_above_chance",
    "probe_models",
    "song_splits",
    "split_leakage",
    "timbre_features",
    "timbre_sane",
]
