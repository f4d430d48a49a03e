"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real GTZAN clips); the test is skipped when it is absent."""
    if not (SHARED_DATA / "gtzan-mini" / "genres_original").is_dir():
        pytest.skip(f"real GTZAN clips not available at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo corpus: 10 genres x 3 songs x 6 s (Kaggle layout). Read-only by convention."""
    from feature_store.demo import write_demo_corpus

    root = tmp_path_factory.mktemp("tiny_corpus")
    write_demo_corpus(root, songs_per_genre=3, duration=6.0)
    return root
