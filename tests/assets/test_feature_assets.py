"""mel_features partitions, the features_sane check, and the retry of a transient failure."""

import json
import shutil
import threading

import dagster as dg
import h5py
import numpy as np
import polars as pl
import pytest
from asset_helpers import SONGS_PER_GENRE, make_resources, materialize_ingest

from assets import features_sane, mel_features
from assets.checks import inspect_clip_length
from feature_store import atomic, integrity
from feature_store.datasets.gtzan import GENRES
from feature_store.errors import StoreError, StoreLockedError, WorkerDiedError


@pytest.fixture
def ingested(resources):
    assert materialize_ingest(resources).success
    return resources


def test_features_partition_and_check(ingested):
    result = dg.materialize([mel_features, features_sane], resources=ingested, partition_key="5")
    assert result.success
    md = {k: v.value for k, v in result.asset_materializations_for_node("mel_features")[0].metadata.items()}
    params = ingested["features"].params()
    frames = params.clip_frames(5)
    n = SONGS_PER_GENRE * len(GENRES)  # mode "first": one 5 s clip per 6 s song
    assert md["clips"] == n and md["shape"] == f"({n}, 128, {frames})"
    assert md["params_hash"] == params.hash() and md["params"]["n_mels"] == 128
    with h5py.File(md["hdf5_path"], "r") as h5:
        assert h5["mel"].shape == (n, 128, frames)
        assert np.isfinite(h5["mel"][:]).all()
    assert md["hdf5_bytes"] > 0 and md["bytes"] >= md["hdf5_bytes"]
    assert md["build_seconds"] > 0 and md["build_seconds"] == round(md["build_seconds"], 2)
    assert md["params"] == params.to_dict()  # parameters are shown as they are hashed, not rounded
    [ev] = result.get_asset_check_evaluations()
    assert ev.check_name == "features_sane" and ev.passed
    assert ev.metadata["clip_seconds"].value == [5]  # the run's partition, only


def test_partition_longer_than_songs_is_empty_but_sane(ingested):
    result = dg.materialize([mel_features, features_sane], resources=ingested, partition_key="15")
    assert result.success
    md = result.asset_materializations_for_node("mel_features")[0].metadata
    assert md["clips"].value == 0
    assert md["too_short_for_this_length"].value == SONGS_PER_GENRE * len(GENRES)


def _copy_store(built, tmp_path):
    res = make_resources(built["audio"].path, tmp_path / "data")
    shutil.copytree(built["features"].root, res["features"].root, symlinks=True)
    return res


def test_check_blocks_on_nan(built, tmp_path):
    res = _copy_store(built, tmp_path)
    gen = res["features"].store().generation(1)
    assert built["features"].root not in str(gen)  # a private copy (the links are relative)
    with h5py.File(gen / "mel.h5", "r+") as h5:
        block = h5["mel"][3]
        block[5, 7] = np.nan
        block[6, 8] = np.inf
        h5["mel"][3] = block
    report = inspect_clip_length(res["features"], 1)
    assert report["non_finite"] == 2 and any("NaN or inf" in p for p in report["problems"])
    # run alone (no partition): checks every built clip length and fails with ERROR
    result = dg.materialize(
        [mel_features, features_sane], resources=res, selection=dg.AssetSelection.checks(features_sane),
        raise_on_error=False,
    )
    [ev] = result.get_asset_check_evaluations()
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR
    assert ev.metadata["clip_seconds"].value == [1, 5]
    assert "1 s: 2 NaN or inf values" in ev.description


def test_check_finds_torn_store_and_stale_params(built, tmp_path):
    res = _copy_store(built, tmp_path)
    gen = res["features"].store().generation(5)
    idx = gen / "index.parquet"
    # an index whose rows no longer name the HDF5 rows they point at
    index = pl.read_parquet(idx)
    index.with_columns(pl.col("clip_id").shift(1, fill_value="x")).write_parquet(idx)
    problems = inspect_clip_length(res["features"], 5)["problems"]
    assert any("index.parquet" in p and "manifest.json" in p for p in problems)
    from feature_store.manifest import write_manifest

    write_manifest(gen)  # a manifest that agrees with the rewritten index: the HDF5 rows still do not
    problems = inspect_clip_length(res["features"], 5)["problems"]
    assert any("torn store" in p for p in problems)
    reg = res["features"].store().registry_path
    text = reg.read_text()
    reg.write_text(text.replace(res["features"].params().hash(), "0" * 16))  # edited by hand: its checksum fails
    problems = inspect_clip_length(res["features"], 1)["problems"]
    assert any("registry.json fails its checksum" in p for p in problems)
    doc = json.loads(text)
    doc["params_hash"] = "0" * 16  # written by a build with other params
    atomic.write_json_atomic(reg, integrity.with_checksum(doc))
    problems = inspect_clip_length(res["features"], 1)["problems"]
    assert any("registry params hash" in p for p in problems)


def test_locked_store_is_retried(ingested):
    """A concurrent build holding the lock is transient: the step is retried and then succeeds."""
    from assets import FeatureStoreResource
    from assets.policies import RETRY_POLICY

    res = {**ingested, "features": FeatureStoreResource(root=ingested["features"].root, workers=1, lock_timeout=0)}
    from filelock import FileLock

    store = res["features"].store()
    (store.store_dir / ".locks").mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(store.store_dir / ".locks" / "cache.lock"), thread_local=False)  # the build's lock
    lock.acquire()
    timer = threading.Timer(1.0, lock.release)
    timer.start()
    try:
        result = dg.materialize([mel_features], resources=res, partition_key="1")
    finally:
        timer.join()
    assert result.success
    types = [e.event_type_value for e in result.all_events]
    # the lock goes after 1 s; with the policy's jittered backoff the first retry can still
    # find it held, so one or two retries (the policy's limit) are both correct
    assert 1 <= types.count("STEP_UP_FOR_RETRY") <= RETRY_POLICY.max_retries
    assert res["features"].store().generation(1).exists()


@pytest.mark.parametrize("error", [StoreLockedError("held"), WorkerDiedError("a worker died")])
def test_transient_store_errors_stay_retryable(error):
    from assets.policies import permanent

    with pytest.raises(type(error)) as info, permanent():
        raise error
    assert info.value is error  # not a dagster.Failure(allow_retries=False)


def test_other_store_errors_fail_at_once():
    from assets.policies import permanent

    with pytest.raises(dg.Failure) as info, permanent():
        raise StoreError("no features for clip length 5")
    assert info.value.allow_retries is False and "StoreError: no features" in info.value.description


def test_every_view_has_an_asset_and_a_blocking_check_from_one_factory():
    from assets import ALL_ASSETS, ALL_CHECKS
    from assets.views import VIEW_ASSETS, VIEW_CHECKS, asset_name, check_name
    from feature_store.views import VIEWS

    assert set(VIEW_ASSETS) == set(VIEW_CHECKS) == set(VIEWS)
    for name, cls in VIEWS.items():
        assert VIEW_ASSETS[name].key.to_user_string() == asset_name(name) and VIEW_ASSETS[name] in ALL_ASSETS
        [spec] = VIEW_CHECKS[name].check_specs
        assert spec.name == check_name(name) and spec.blocking and VIEW_CHECKS[name] in ALL_CHECKS


def test_timbre_partition_and_check(ingested):
    from assets import timbre_features, timbre_sane

    result = dg.materialize([timbre_features, timbre_sane], resources=ingested, partition_key="5")
    assert result.success
    md = {k: v.value for k, v in result.asset_materializations_for_node("timbre_features")[0].metadata.items()}
    n = SONGS_PER_GENRE * len(GENRES)
    assert md["clips"] == n and md["shape"] == f"({n}, 50)" and md["arrays"] == {"timbre": [n, 50]}
    assert md["view"] == "timbre" and md["hdf5_path"].endswith("timbre.h5")
    table = pl.read_parquet(md["hdf5_path"].replace("timbre.h5", "timbre.parquet"))
    assert table.height == n and "mfcc01_mean" in table.columns and "rms_std" in table.columns
    [ev] = result.get_asset_check_evaluations()
    assert ev.check_name == "timbre_sane" and ev.passed, ev.description
