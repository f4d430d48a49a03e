"""Thin Dagster assets and asset checks over ``feature_store`` and ``training``.

Importing this package is cheap: TensorFlow is imported only inside asset bodies.
"""

from assets.checks import (
    catalog_class_balance,
    catalog_duplicates,
    catalog_quarantine,
    features_sane,
    model_above_chance,
    split_leakage,
)
from assets.features import mel_features
from assets.ingest import audio_catalog, song_splits
from assets.models import TrainingConfig, genre_models
from assets.reports import evaluation_report
from assets.resources import AudioSource, FeatureStoreResource, ModelStoreResource

ALL_ASSETS = [audio_catalog, song_splits, mel_features, genre_models, evaluation_report]
ALL_CHECKS = [
    catalog_quarantine,
    catalog_duplicates,
    catalog_class_balance,
    split_leakage,
    features_sane,
    model_above_chance,
]

__all__ = [
    "ALL_ASSETS",
    "ALL_CHECKS",
    "AudioSource",
    "FeatureStoreResource",
    "ModelStoreResource",
    "TrainingConfig",
    "audio_catalog",
    "catalog_class_balance",
    "catalog_duplicates",
    "catalog_quarantine",
    "evaluation_report",
    "features_sane",
    "genre_models",
    "mel_features",
    "model_above_chance",
    "song_splits",
    "split_leakage",
]
