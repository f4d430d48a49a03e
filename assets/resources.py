"""Typed Dagster resources: where audio comes from, and where the stores live.

They are thin: each hands back the ``feature_store`` or ``training`` object that does the
work. ``pipelines/definitions.py`` configures them from environment variables.
"""

from pathlib import Path

import dagster as dg

from feature_store.catalog import find_genre_root
from feature_store.demo import write_demo_corpus
from feature_store.params import FeatureParams
from feature_store.store import FeatureStore
from training.train import ModelStore


class AudioSource(dg.ConfigurableResource):
    """The GTZAN folder to ingest.

    ``path`` is a GTZAN copy in the Kaggle (``genres_original/``) or original (``genres/``)
    layout, or its genres folder. Left empty, the deterministic synthetic demo corpus is
    written under ``demo_dir`` and used instead.
    """

    path: str = ""
    demo_dir: str = "data/demo"
    demo_songs_per_genre: int = 10
    demo_seconds: float = 30.0
    demo_seed: int = 0

    @property
    def is_demo(self) -> bool:
        return not self.path

    def genre_root(self) -> Path:
        """The genres folder, writing the demo corpus first when no path is set."""
        if self.is_demo:
            write_demo_corpus(
                self.demo_dir,
                songs_per_genre=self.demo_songs_per_genre,
                duration=self.demo_seconds,
                seed=self.demo_seed,
            )
            return find_genre_root(self.demo_dir)[0]
        return find_genre_root(self.path)[0]

    def layout(self) -> str:
        return find_genre_root(self.demo_dir if self.is_demo else self.path)[1]


class FeatureStoreResource(dg.ConfigurableResource):
    """The feature store root and the feature parameters (see ``FeatureParams``)."""

    root: str = "data/store"
    mode: str = "first"
    dtype: str = "float32"
    workers: int = 0

    def params(self) -> FeatureParams:
        return FeatureParams(mode=self.mode, dtype=self.dtype)  # type: ignore[arg-type]

    def store(self) -> FeatureStore:
        return FeatureStore(self.root, params=self.params())


class ModelStoreResource(dg.ConfigurableResource):
    """Where ``.keras`` models and their metrics are saved, and where reports go."""

    root: str = "data/models"
    report_dir: str = "data/reports"

    def store(self) -> ModelStore:
        return ModelStore(self.root)
