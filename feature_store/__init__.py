"""The feature store: its engine, the views and datasets that register with it, catalog and splits.

This package never imports Dagster; the assets in ``assets/`` call into it.

The names below are imported on first use (PEP 562), so that a worker process that only
decodes audio and computes mels (``feature_store.worker``) does not pay for polars and the
rest of the store at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from feature_store.lazy import lazy_getattr

_LAZY: dict[str, str] = {
    "AudioError": "feature_store.errors",
    "GTZANError": "feature_store.errors",
    "ParameterError": "feature_store.errors",
    "StoreError": "feature_store.errors",
    "StoreLockedError": "feature_store.errors",
    "WorkerDiedError": "feature_store.errors",
    "IngestResult": "feature_store.ingestion",
    "ingest": "feature_store.ingestion",
    "CLIP_SECONDS": "feature_store.params",
    "GENRES": "feature_store.datasets.gtzan",
    "MODES": "feature_store.params",
    "FeatureParams": "feature_store.params",
    "BuildReport": "feature_store.store",
    "FeatureStore": "feature_store.store",
    "Tensors": "feature_store.store",
    "ViewStore": "feature_store.engine.store",
    "ViewOptions": "feature_store.engine.view",
    "VIEWS": "feature_store.views",
    "get_view": "feature_store.views",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from feature_store.errors import (AudioError, GTZANError, ParameterError, StoreError, StoreLockedError,
                                      WorkerDiedError)
    from feature_store.ingestion import IngestResult, ingest
    from feature_store.datasets.gtzan import GENRES
    from feature_store.params import CLIP_SECONDS, MODES, FeatureParams
    from feature_store.engine.store import ViewStore
    from feature_store.engine.view import ViewOptions
    from feature_store.store import BuildReport, FeatureStore, Tensors
    from feature_store.views import VIEWS, get_view


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
