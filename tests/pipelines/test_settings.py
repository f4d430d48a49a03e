"""The settings object: the environment read once, every default held once, the resources built from it."""

import dataclasses
from pathlib import Path

import pytest

from feature_store.errors import ParameterError
from pipelines.settings import DEFAULT_MODELS, ENV_VARS, Settings


def test_defaults_without_environment():
    s = Settings.from_env({})
    assert s == Settings()
    assert s.audio_dir is None and s.data_dir == Path("data")
    assert (s.store_root, s.model_root, s.report_root, s.demo_root) == (
        Path("data/store"), Path("data/models"), Path("data/reports"), Path("data/demo"))
    assert (s.mode, s.dtype, s.layout, s.workers, s.executor, s.debug) == (
        "first", "float32", "auto", 0, "multiprocess", False)
    assert s.models == DEFAULT_MODELS == ("baseline", "cnn", "rnn", "crnn_small", "timbre_logreg")
    assert s.predict_max_seconds == 7200.0 and s.deployment.postgres_url is None
    assert s.clip_seconds == (1, 5, 15, 30) and s.train_clip_seconds == (5,)
    assert (s.epochs, s.seeds, s.scheme, s.batch_size) == (2, (0,), "seed", 32)


def test_every_variable_is_read(tmp_path):
    env = {
        "GTZAN_DIR": str(tmp_path / "gtzan"),
        "GTZAN_DATASET": "csv",
        "GTZAN_LABELS": str(tmp_path / "labels.csv"),
        "GTZAN_DATA_DIR": "rel",
        "GTZAN_STORE_DIR": "~/store",
        "GTZAN_STORE_URL": "s3://gtzan/store",
        "GTZAN_MODEL_DIR": str(tmp_path / "m"),
        "GTZAN_REPORT_DIR": " ",  # blank: unset
        "GTZAN_MODE": "segments",
        "GTZAN_LAYOUT": "original",
        "GTZAN_WORKERS": "3",
        "GTZAN_SHARDS": "64",
        "GTZAN_EXECUTOR": "in_process",
        "GTZAN_DEBUG": "1",
        "GTZAN_PREDICT_MAX_SECONDS": "600",
        "GTZAN_AUTOMATE_OPT_IN": "1",
        "GTZAN_BROKER_URL": "redis://10.0.0.1:6379/0",
        "GTZAN_RESULT_BACKEND": "redis://10.0.0.1:6379/1",
        "GTZAN_POSTGRES_URL": "postgresql+psycopg2://u:p@10.0.0.1:5432/dagster",
        "GTZAN_HOST_NAME": "worker-3",
        "GTZAN_CELERY_VISIBILITY_TIMEOUT": "120",
        "GTZAN_ALLOWED_ROOTS": f"{tmp_path / 'a'}:{tmp_path / 'b'}",
    }
    assert set(env) == set(ENV_VARS)
    s = Settings.from_env(env)
    assert s.allowed_roots == (tmp_path / "a", tmp_path / "b")
    d = s.deployment
    assert (d.broker_url, d.result_backend, d.host_name, d.visibility_timeout) == (
        "redis://10.0.0.1:6379/0", "redis://10.0.0.1:6379/1", "worker-3", 120)
    assert d.postgres_url.endswith("@10.0.0.1:5432/dagster") and s.predict_max_seconds == 600.0
    assert s.automate_opt_in is True and s.store_location == "s3://gtzan/store"
    assert (s.dataset, s.labels_file) == ("csv", tmp_path / "labels.csv")
    assert Settings.from_env(s.env()).dataset == "csv" and Settings.from_env(s.env()).labels_file == tmp_path / "labels.csv"
    assert s.audio_dir == tmp_path / "gtzan" and s.data_dir == Path("rel")
    assert s.store_root == Path("~/store").expanduser() and s.model_root == tmp_path / "m"
    assert s.report_root == Path("rel/reports") and s.demo_root == Path("rel/demo")
    assert (s.mode, s.layout, s.workers, s.executor, s.debug) == ("segments", "original", 3, "in_process", True)
    assert s.shards == 64 and Settings.from_env({}).shards == 16 and Settings.from_env(s.env()).shards == 64


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GTZAN_MODE", "sometimes", r"GTZAN_MODE must be one of \['first', 'segments'\], got 'sometimes'"),
        ("GTZAN_LAYOUT", "flat", r"GTZAN_LAYOUT must be one of \['auto', 'kaggle', 'original'\], got 'flat'"),
        ("GTZAN_WORKERS", "-1", r"GTZAN_WORKERS must be a non-negative integer, got '-1'"),
        ("GTZAN_WORKERS", "two", r"GTZAN_WORKERS must be a non-negative integer, got 'two'"),
        ("GTZAN_SHARDS", "-1", r"GTZAN_SHARDS must be a non-negative integer, got '-1'"),
        ("GTZAN_SHARDS", "0", r"GTZAN_SHARDS must be an integer in 1\.\.4096, got '0'"),
        ("GTZAN_SHARDS", "4097", r"GTZAN_SHARDS must be an integer in 1\.\.4096, got '4097'"),
        ("GTZAN_DATASET", "kaggle", r"GTZAN_DATASET must be one of \['gtzan', 'csv', 'folders'\], got 'kaggle'"),
        ("GTZAN_EXECUTOR", "threads", r"GTZAN_EXECUTOR must be one of \['multiprocess', 'in_process', 'celery', 'k8s'\]"),
    ],
)
def test_bad_values_name_the_variable(name, value, message):
    with pytest.raises(ParameterError, match=message):
        Settings.from_env({name: value})


def test_replace_keeps_unset_flags_and_absolute_resolves(tmp_path, monkeypatch):
    s = Settings(data_dir=Path("d"))
    t = s.replace(epochs=7, mode=None, store_dir=Path("elsewhere"))
    assert (t.epochs, t.mode, t.store_root, t.model_root) == (7, s.mode, Path("elsewhere"), Path("d/models"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.epochs = 3  # type: ignore[misc]
    monkeypatch.chdir(tmp_path)
    a = t.absolute()
    assert a.store_dir == tmp_path / "elsewhere" and a.model_dir == tmp_path / "d" / "models"
    assert a.data_dir == tmp_path / "d" and a.audio_dir is None

    # what a child process gets: the same settings, folders absolute
    env = t.env()
    assert env["GTZAN_STORE_DIR"] == str(tmp_path / "elsewhere") and "GTZAN_DIR" not in env
    assert Settings.from_env(env) == Settings.from_env({}).replace(**{
        f: getattr(a, f) for f in ("data_dir", "store_dir", "model_dir", "report_dir")})
    from pipelines.deployment import Deployment

    odd = Settings(audio_dir=Path("g"), mode="segments", layout="kaggle", workers=2, executor="in_process", debug=True,
                   predict_max_seconds=90.5, deployment=Deployment(broker_url="redis://b:1/0", host_name="w7",
                                                                 postgres_url="postgresql+psycopg2://u@h/db",
                                                                 visibility_timeout=60))
    assert Settings.from_env(odd.env()) == odd.absolute()


def test_one_epoch_cap_seed_and_scheme_everywhere():
    """gtzan train, gtzan run and the Dagster run config share the library's training defaults."""
    from assets.embeddings import ProbeTrainingConfig
    from assets.models import TrainingConfig
    from training.families.vector import ProbeConfig
    from training.train import TrainConfig

    s, lib, dagster = Settings(), TrainConfig(), TrainingConfig()
    assert s.epochs == lib.epochs == dagster.epochs == 2
    assert s.batch_size == lib.batch_size == dagster.batch_size
    assert list(s.seeds) == [lib.seed] == dagster.seeds
    assert s.scheme == lib.scheme == dagster.scheme
    probe = ProbeTrainingConfig()
    assert list(s.probe_classifiers) == [ProbeConfig().classifier] == probe.classifiers
    assert s.embedding_model == ProbeConfig().embedding_model


def test_resources_are_built_from_settings(tmp_path):
    from feature_store.store import DEFAULT_LOCK_TIMEOUT
    from pipelines.resources import make_resources

    default = make_resources(Settings(data_dir=tmp_path))
    assert default["features"].lock_timeout == Settings().lock_timeout == DEFAULT_LOCK_TIMEOUT
    s = Settings(data_dir=tmp_path, audio_dir=tmp_path / "g", mode="segments", dtype="float16", workers=2,
                 lock_timeout=5.0, embedding_model="MTT_musicnn", embedding_workers=1, demo_songs_per_genre=2)
    res = make_resources(s)
    f, a, m = res["features"], res["audio"], res["models"]
    assert (f.root, f.mode, f.dtype, f.workers, f.lock_timeout, f.embedding_model, f.embedding_workers) == (
        str(tmp_path / "store"), "segments", "float16", 2, 5.0, "MTT_musicnn", 1)
    assert (a.path, a.demo_dir, a.demo_songs_per_genre) == (str(tmp_path / "g"), str(tmp_path / "demo"), 2)
    assert (m.root, m.report_dir) == (str(tmp_path / "models"), str(tmp_path / "reports"))


def test_importing_settings_stays_light():
    import subprocess
    import sys

    code = ("import sys, pipelines.settings; print([m for m in ('dagster', 'numpy', 'polars', 'tensorflow') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
