"""The typed resources: audio source layouts and the demo corpus, store handles."""

import pytest

from assets import AudioSource, FeatureStoreResource, ModelStoreResource
from feature_store.errors import ParameterError


def test_demo_corpus_is_written_when_no_path(tmp_path):
    audio = AudioSource(demo_dir=str(tmp_path / "demo"), demo_songs_per_genre=1, demo_seconds=1.0)
    assert audio.is_demo
    with pytest.raises(ParameterError, match="does not exist"):
        audio.genre_root(write_demo=False)  # the sensor never writes audio
    root = audio.genre_root()
    assert root == (tmp_path / "demo" / "genres_original").resolve()
    assert len(list(root.glob("*/*.wav"))) == 10
    assert audio.detected_layout() == "kaggle"


def test_layout_is_validated(corpus):
    with pytest.raises(ParameterError, match=r"layout must be one of \['auto', 'kaggle', 'original'\]"):
        AudioSource(path=str(corpus), layout="flat").genre_root()
    with pytest.raises(ParameterError, match="has the 'kaggle' layout"):
        AudioSource(path=str(corpus), layout="original").genre_root()
    # the genres folder itself is accepted too
    assert AudioSource(path=str(corpus / "genres_original"), layout="kaggle").genre_root().name == "genres_original"


def test_store_handles(tmp_path):
    f = FeatureStoreResource(root=str(tmp_path / "s"), mode="segments", dtype="float16")
    assert f.params().mode == "segments" and f.params().dtype == "float16"
    assert f.store().root == (tmp_path / "s").resolve()
    with pytest.raises(ParameterError):
        FeatureStoreResource(root=str(tmp_path), mode="random").params()
    m = ModelStoreResource(root=str(tmp_path / "m"))
    assert m.store().root == (tmp_path / "m").resolve() and m.runs() == []
