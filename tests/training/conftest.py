"""Fixtures of the training tests: a tiny feature store built once per session.

The corpus is the synthetic demo: 10 genres x 3 songs x 6 s. The seed split holds out one song
per genre, so a run trains on 20 songs and tests on 10. The store holds 1 s and 5 s clips in
both modes (``first``: one clip per song; ``segments``: six 1 s clips per song).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from feature_store.params import FeatureParams


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a built feature store (first and segments modes, 1 s and 5 s clips)."""
    from feature_store.demo import write_demo_corpus
    from feature_store.ingestion import ingest
    from feature_store.store import FeatureStore

    base = tmp_path_factory.mktemp("training_store")
    audio = write_demo_corpus(base / "audio", songs_per_genre=3, duration=6.0)
    root = base / "store"
    ingest(audio, root)
    for mode in ("first", "segments"):
        FeatureStore(root, params=FeatureParams(mode=mode)).build(audio_root=audio, clip_seconds=[1, 5], workers=1)
    return root


@pytest.fixture(scope="session")
def other_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny store of different songs (demo seed 1, 1 song per genre): a stand-in holdout."""
    from feature_store.demo import write_demo_corpus
    from feature_store.ingestion import ingest
    from feature_store.store import FeatureStore

    base = tmp_path_factory.mktemp("training_other")
    audio = write_demo_corpus(base / "audio", songs_per_genre=1, duration=6.0, seed=1, genres=("blues", "jazz"))
    root = base / "store"
    ingest(audio, root)
    FeatureStore(root, params=FeatureParams(mode="segments")).build(audio_root=audio, clip_seconds=[1], workers=1)
    return root
