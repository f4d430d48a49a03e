"""Fixtures of the pipeline tests: a tiny demo corpus and resources on temporary folders."""

import shutil
from pathlib import Path

import pytest

from assets import AudioSource, FeatureStoreResource, ModelStoreResource
from feature_store.demo import write_demo_corpus

@pytest.fixture(scope="session")
def tiny_corpus_master(tmp_path_factory) -> Path:
    """3 songs per genre of 6 s (only 1 s and 5 s clips exist); copy it before changing it."""
    root = tmp_path_factory.mktemp("tiny")
    write_demo_corpus(root, songs_per_genre=3, duration=6.0)
    return root


@pytest.fixture
def tiny_corpus(tiny_corpus_master, tmp_path) -> Path:
    dst = tmp_path / "corpus"
    shutil.copytree(tiny_corpus_master, dst)
    return dst


@pytest.fixture
def tiny_resources(tiny_corpus, tmp_path) -> dict:
    data = tmp_path / "data"
    return {
        "audio": AudioSource(path=str(tiny_corpus)),
        "features": FeatureStoreResource(root=str(data / "store"), workers=1),
        "models": ModelStoreResource(root=str(data / "models"), report_dir=str(data / "reports")),
    }
