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
    from training.families.vector import ProbeConfig

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


@pytest.fixture
def roots_env(tmp_path, monkeypatch):
    """A deployment whose data folder is ``tmp_path/data`` and nothing else set."""
    for var in ("GTZAN_DIR", "GTZAN_STORE_DIR", "GTZAN_MODEL_DIR", "GTZAN_REPORT_DIR", "GTZAN_ALLOWED_ROOTS"):
        monkeypatch.delenv(var, raising=False)
    data = tmp_path / "data"
    (data / "store").mkdir(parents=True)
    (tmp_path / "private").mkdir()
    monkeypatch.setenv("GTZAN_DATA_DIR", str(data))
    return data


def test_paths_outside_the_roots_are_refused_symlinks_and_dots_resolved(roots_env, tmp_path):
    from assets.resources import check_within_roots
    from pipelines.settings import Settings

    roots = Settings.from_env().roots
    assert roots == (roots_env.resolve(),)
    assert check_within_roots(str(roots_env / "store" / "new"), what="root", roots=roots) == roots_env / "store" / "new"
    (roots_env / "escape").symlink_to(tmp_path / "private")
    (tmp_path / "link-to-data").symlink_to(roots_env)
    for bad in (roots_env / ".." / "private", roots_env / "escape", roots_env / "escape" / "x", tmp_path, "/"):
        with pytest.raises(ParameterError, match=r"^resources.audio.config.path .* is outside the allowed roots \["):
            check_within_roots(str(bad), what="resources.audio.config.path", roots=roots)
    # a path reached through a symlink that resolves inside a root is inside
    assert check_within_roots(str(tmp_path / "link-to-data" / "store"), what="root", roots=roots) == roots_env / "store"


def test_allowed_roots_and_named_folders_widen_the_roots(roots_env, tmp_path, monkeypatch):
    from pipelines.settings import Settings

    monkeypatch.setenv("GTZAN_DIR", str(tmp_path / "corpus"))
    monkeypatch.setenv("GTZAN_ALLOWED_ROOTS", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    s = Settings.from_env()
    assert s.roots == tuple(p.resolve() for p in (tmp_path / "a", tmp_path / "b", tmp_path / "corpus"))
    # a child process reads the same roots, and the folders the parent resolved for it
    assert set(Settings.from_env(s.env()).roots) == set(s.roots) | {s.absolute().store_root, s.absolute().model_root,
                                                                     s.absolute().report_root}


def _store_root_asset():
    import dagster as dg

    @dg.asset
    def store_root(features: FeatureStoreResource) -> str:
        return features.root

    return store_root


def test_a_run_of_a_persistent_instance_refuses_a_store_outside_the_roots(roots_env, tmp_path):
    """What a GraphQL launchRun with ``resources.features.config.root`` elsewhere meets."""
    import dagster as dg

    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        inside = dg.materialize([_store_root_asset()], instance=instance,
                                resources={"features": FeatureStoreResource(root=str(roots_env / "store"))})
        assert inside.success and inside.output_for_node("store_root") == str(roots_env / "store")
        with pytest.raises(dg.DagsterResourceFunctionError) as failed:
            dg.materialize([_store_root_asset()], instance=instance,
                           resources={"features": FeatureStoreResource(root=str(roots_env / ".." / "private"))})
        assert isinstance(failed.value.__cause__, ParameterError)
        assert "\n" not in str(failed.value.__cause__)
        message = str(failed.value.__cause__)
        assert message.startswith(f"resources.features.config.root '{roots_env / '..' / 'private'}' "
                                  f"(resolved: '{tmp_path / 'private'}') is outside the allowed roots")
    assert list((tmp_path / "private").iterdir()) == []
