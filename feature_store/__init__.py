"""GTZAN feature store: catalog, validation, demo corpus, splits, mel features and queries.

This package never imports Dagster; the assets in ``assets/`` call into it.
"""

from feature_store.errors import AudioError, GTZANError, ParameterError, StoreError, StoreLockedError
from feature_store.ingest import IngestResult, ingest
from feature_store.params import CLIP_SECONDS, GENRES, MODES, FeatureParams
from feature_store.store import BuildReport, FeatureStore, Tensors

__all__ = [
    "AudioError",
    "BuildReport",
    "CLIP_SECONDS",
    "FeatureParams",
    "FeatureStore",
    "GENRES",
    "GTZANError",
    "IngestResult",
    "MODES",
    "ParameterError",
    "StoreError",
    "StoreLockedError",
    "Tensors",
    "ingest",
]
