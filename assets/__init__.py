"""Thin Dagster assets and asset checks over ``feature_store`` and ``training``."""

from assets.checks import catalog_quarantine, features_sane, split_leakage
from assets.features import mel_features
from assets.ingest import audio_catalog, song_splits
from assets.models import TrainingConfig, genre_models
from assets.reports import evaluation_report
from assets.resources import AudioSource, FeatureStoreResource, ModelStoreResource

ALL_ASSETS = [audio_catalog, song_splits, mel_features, genre_models, evaluation_report]
ALL_CHECKS = [catalog_quarantine, split_leakage, features_sane]

__all__ = [
    "ALL_ASSETS",
    "ALL_CHECKS",
    "AudioSource",
    "FeatureStoreResource",
    "ModelStoreResource",
    "TrainingConfig",
    "audio_catalog",
    "evaluation_report",
    "genre_models",
    "mel_features",
    "song_splits",
]
