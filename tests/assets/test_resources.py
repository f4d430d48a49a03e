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
    m = ModelStoreResource(root=str(tmp_path / "m"), report_dir=str(tmp_path / "r"))
    assert m.store().root == (tmp_path / "m").resolve() and m.runs() == []


def test_resource_defaults_are_the_librarys():
    """Only the folders have no default (the settings object places them); the rest is the library's."""
    import inspect

    from feature_store.demo import write_demo_corpus
    from feature_store.params import FeatureParams
    from feature_store.store import DEFAULT_LOCK_TIMEOUT
    from training.probe import ProbeConfig

    f = FeatureStoreResource(root="s")
    assert (f.mode, f.dtype) == (FeatureParams().mode, FeatureParams().dtype)
    assert f.lock_timeout == DEFAULT_LOCK_TIMEOUT and f.embedding_model == ProbeConfig().embedding_model
    demo = inspect.signature(write_demo_corpus).parameters
    a = AudioSource(demo_dir="d")
    assert (a.demo_songs_per_genre, a.demo_seconds, a.demo_seed) == tuple(
        demo[k].default for k in ("songs_per_genre", "duration", "seed"))
    with pytest.raises(ParameterError, match="needs a `path` to ingest, or a `demo_dir`"):
        AudioSource().genre_root()
    for required in (lambda: FeatureStoreResource(), lambda: ModelStoreResource(root="m")):
        with pytest.raises(Exception, match="root|report_dir"):
            required()
