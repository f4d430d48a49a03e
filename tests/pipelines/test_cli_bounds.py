"""Every numeric option is bounded (issue 17, items 5 and 8): refused in one line, exit 2, before
any work, by the real ``gtzan`` command; the library and the settings refuse the same values; a
worker pool never starts more processes than songs to compute nor than the bound."""

from __future__ import annotations

import concurrent.futures
from concurrent.futures import ProcessPoolExecutor

import pytest

from cli_helpers import env_for, fails

from feature_store import bounds
from feature_store.bounds import MAX_SEED, max_workers
from feature_store.errors import ParameterError
from feature_store.procs import pool_size
from pipelines.settings import MAX_EPOCHS, Settings

HUGE = "99999999999999999999"  # past every integer type: int64 overflow before the bounds


@pytest.mark.parametrize(("args", "pattern"), [
    (["train", "--seed", HUGE], rf"--seed {HUGE} is not in the range 0\.\.{MAX_SEED}"),
    (["train", "--seed", "-3"], rf"--seed -3 is not in the range 0\.\.{MAX_SEED}"),
    (["train", "--epochs", HUGE], rf"'--epochs': {HUGE} is not in the range 1<=x<={MAX_EPOCHS}"),
    (["train", "--batch-size", "0"], r"'--batch-size': 0 is not in the range 1<=x<="),
    (["run", "--seeds", "0", HUGE], rf"--seeds {HUGE} is not in the range 0\.\.{MAX_SEED}"),
    (["run", "--epochs", "100000"], rf"'--epochs': 100000 is not in the range 1<=x<={MAX_EPOCHS}"),
    (["features", "query", "--limit", HUGE], rf"'--limit': {HUGE} is not in the range 0<=x<="),
    (["demo", "--seconds", "1e9"], r"'--seconds': 1000000000\.0 is not in the range 0<x<=600"),
    (["demo", "--seconds", "nan"], r"demo_seconds must be a finite number > 0, got nan"),
    (["demo", "--songs-per-genre", "1e8"], r"'--songs-per-genre': '1e8' is not a valid integer"),
    (["demo", "--songs-per-genre", "100000000"], r"'--songs-per-genre': 100000000 is not in the range 1<=x<=1000"),
    (["demo", "--seed", HUGE], rf"'--seed': {HUGE} is not in the range 0<=x<={MAX_SEED}"),
    (["predict", "--seed", HUGE, "x.wav"], rf"'--seed': {HUGE} is not in the range 0<=x<={MAX_SEED}"),
    (["features", "build", "--workers", "1000"], rf"'--workers': 1000 is not in the range 0<=x<={max_workers()}"),
    (["features", "verify", "--workers", "1000"], rf"'--workers': 1000 is not in the range 0<=x<={max_workers()}"),
    (["features", "build", "--clip-seconds", HUGE], r"clip"),
])
def test_out_of_range_options_are_refused_in_one_line(tmp_path, args, pattern):
    fails(args, env_for(tmp_path / "data"), 2, pattern)
    assert not (tmp_path / "data").exists()  # refused before any work


def test_an_out_of_range_variable_is_refused_in_one_line(tmp_path):
    env = {**env_for(tmp_path / "data"), "GTZAN_WORKERS": "100000"}
    fails(["features", "build"], env, 2, rf"workers must be an integer in 0\.\.{max_workers()}, got 100000")


@pytest.mark.parametrize("change", [{"workers": 10**6}, {"epochs": 10**9}, {"seeds": (2**40,)}, {"batch_size": 10**9},
                                    {"demo_songs_per_genre": 10**8}, {"demo_seconds": 1e9}, {"demo_seed": -1}])
def test_settings_refuse_what_the_flags_refuse(change):
    with pytest.raises(ParameterError, match=f"{next(iter(change))} must be"):
        Settings(**change)


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"songs_per_genre": 10**8}, r"songs_per_genre must be an integer in 1\.\.1000, got 100000000"),
    ({"duration": 1e9}, r"duration must be a number of seconds in \(0, 600\], got 1000000000\.0"),
    ({"seed": 10**20}, rf"seed must be an integer in 0\.\.{MAX_SEED}"),
    ({"sr": 10**9}, r"sr must be an integer in 8000\.\.192000, got 1000000000"),
])
def test_the_library_refuses_an_absurd_demo_before_writing(tmp_path, kwargs, pattern):
    from feature_store.demo import write_demo_corpus

    with pytest.raises(ParameterError, match=pattern):
        write_demo_corpus(tmp_path / "demo", **kwargs)
    assert not (tmp_path / "demo").exists()


def test_a_demo_larger_than_the_free_disk_is_refused_before_writing(tmp_path, monkeypatch):
    import shutil

    from feature_store.demo import write_demo_corpus

    real = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real._replace(free=10 * 2**20))
    # 10 genres x 2 songs x 30 s of 16-bit 22050 Hz audio is 26 MB, more than the 10 MiB left
    with pytest.raises(ParameterError, match=r"the demo corpus needs 25 MiB and .* has 10 MiB free"):
        write_demo_corpus(tmp_path / "demo", songs_per_genre=2, duration=30.0)
    assert not (tmp_path / "demo").exists()
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real._replace(free=40 * 2**20))
    assert len(list(write_demo_corpus(tmp_path / "demo", songs_per_genre=1, duration=1.0).rglob("*.wav"))) == 10


def test_pool_size_is_capped_by_songs_and_by_the_bound():
    assert pool_size(1000, 100) == min(100, max_workers())
    assert pool_size(1000, 3) == 3 and pool_size(None, 1) == 1 and pool_size(0, 0) == 1
    assert pool_size(10**6, 10**6) == max_workers() == bounds.MAX_WORKERS_PER_CPU * (__import__("os").cpu_count() or 1)


def test_a_build_asking_for_1000_workers_starts_no_more_than_the_bound(tiny_corpus, tmp_path, monkeypatch):
    """Issue 17 item 5: ``workers=1000`` on 30 songs used to start 30 processes."""
    from feature_store import ingest
    from feature_store.engine.store import ViewStore
    from feature_store.views import get_view

    started: list[int] = []

    class Counting(ProcessPoolExecutor):
        def _spawn_process(self) -> None:
            started.append(1)
            super()._spawn_process()

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Counting)
    monkeypatch.setattr(bounds, "MAX_WORKERS_PER_CPU", 1)
    monkeypatch.setattr(bounds.os, "cpu_count", lambda: 2)  # the bound is now 2 processes
    ingest(tiny_corpus, tmp_path / "store")
    report = ViewStore(tmp_path / "store", get_view("mel")).build(audio_root=tiny_corpus, clip_seconds=[1],
                                                                  workers=1000)
    assert len(report.computed) == 30
    assert 1 <= len(started) <= 2


@pytest.mark.parametrize(("config", "message"), [
    ({"epochs": 10**9}, "run config `epochs`: 1000000000 is not in the range 1..10000"),
    ({"seeds": [0, 2**40]}, f"run config `seeds`: {2**40} is not in the range 0..{MAX_SEED}"),
])
def test_the_dagster_run_config_is_bounded_too(tmp_path, config, message):
    import dagster as dg

    from assets import FeatureStoreResource, ModelStoreResource, genre_models

    result = dg.materialize(
        [genre_models], partition_key="1|cnn", raise_on_error=False,
        run_config={"ops": {"genre_models": {"config": config}}},
        resources={"features": FeatureStoreResource(root=str(tmp_path / "store"), workers=1),
                   "models": ModelStoreResource(root=str(tmp_path / "m"), report_dir=str(tmp_path / "r"))},
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert message in failure.step_failure_data.error.message
    assert not (tmp_path / "m").exists()  # refused before any training


def test_ingest_refuses_a_seed_past_the_bound(tmp_path):
    from feature_store import ingest
    from feature_store.demo import write_demo_corpus

    audio = write_demo_corpus(tmp_path / "audio", songs_per_genre=1, duration=1.0, genres=("rock",))
    for seed in (-1, 10**20):
        with pytest.raises(ParameterError, match=rf"seed must be an integer in 0\.\.{MAX_SEED}, got {seed}"):
            ingest(audio, tmp_path / "store", seed=seed)
    assert not (tmp_path / "store" / "splits.parquet").exists()


def test_the_demo_manifest_is_checked_and_an_edited_one_only_costs_a_rewrite(tmp_path):
    import json

    from feature_store.demo import write_demo_corpus

    out = write_demo_corpus(tmp_path, songs_per_genre=1, duration=1.0, genres=("blues",))
    song, manifest = out / "blues" / "blues.00000.wav", tmp_path / "demo-manifest.json"
    doc = json.loads(manifest.read_text())
    assert doc["checksum"].startswith("sha256:") and set(doc["files"]) == {"blues/blues.00000.wav"}
    mtime = song.stat().st_mtime_ns
    write_demo_corpus(tmp_path, songs_per_genre=1, duration=1.0, genres=("blues",))
    assert song.stat().st_mtime_ns == mtime  # a sound manifest spares the work
    # a manifest edited to vouch for a replaced song is not believed: the song is written again
    good = song.read_bytes()
    song.write_bytes(b"RIFF" + b"\0" * 100)
    doc["files"]["blues/blues.00000.wav"] = __import__("hashlib").sha256(song.read_bytes()).hexdigest()
    manifest.write_text(json.dumps(doc))
    write_demo_corpus(tmp_path, songs_per_genre=1, duration=1.0, genres=("blues",))
    assert song.read_bytes() == good
