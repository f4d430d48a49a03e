"""Fixtures of the asset tests: a tiny demo corpus and resources on temporary folders.

The corpus is 3 songs per genre of 6 s, so only the 1 s and 5 s clip lengths have clips.
"""

import shutil
from pathlib import Path

import dagster as dg
import pytest
from asset_helpers import SECONDS, SONGS_PER_GENRE, make_resources, materialize_ingest

from feature_store.demo import write_demo_corpus


@pytest.fixture(scope="session")
def corpus_master(tmp_path_factory) -> Path:
    """The tiny corpus, written once per session; copy it before changing it."""
    root = tmp_path_factory.mktemp("corpus")
    write_demo_corpus(root, songs_per_genre=SONGS_PER_GENRE, duration=SECONDS)
    return root


@pytest.fixture
def corpus(corpus_master, tmp_path) -> Path:
    """A private copy of the tiny corpus (Kaggle layout under ``genres_original/``)."""
    dst = tmp_path / "corpus"
    shutil.copytree(corpus_master, dst)
    return dst


@pytest.fixture
def resources(corpus, tmp_path) -> dict:
    return make_resources(corpus, tmp_path / "data")


@pytest.fixture(scope="session")
def built(corpus_master, tmp_path_factory) -> dict:
    """Session-wide store with ingest and the 1 s and 5 s features built (read it, do not change it)."""
    from assets import mel_features

    res = make_resources(corpus_master, tmp_path_factory.mktemp("built"))
    assert materialize_ingest(res).success
    for key in ("1", "5"):
        assert dg.materialize([mel_features], resources=res, partition_key=key).success
    return res
