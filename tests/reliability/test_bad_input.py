"""The twelve bad-input cases of issue 7, end to end: ingest, features, and a Dagster run.

One hostile folder (:mod:`_hostile`) holds every case among good songs. It goes through

1. ``feature_store.ingestion`` (catalog + splits),
2. ``FeatureStore.build`` of all four clip lengths, and
3. ``dagster.materialize`` of ``audio_catalog``, ``song_splits`` and the 5 s partition of
   ``mel_features`` with their asset checks, on temporary resources,

and each file must end as its case says: quarantined with its reason, or processed under a
recorded policy (a catalog note, clips per length), reported by an asset check where one
applies, while every good song is processed as usual.
"""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import h5py
import numpy as np
import polars as pl
import pytest
from _hostile import CASES, GOOD_SONGS_PER_GENRE, expectations, good_song_ids, readme_table, write_corpus

from feature_store import FeatureStore, ingest
from feature_store.params import CLIP_SECONDS
from feature_store.datasets.gtzan import GENRES
from feature_store.splits import SCHEMES, leakage

DAGSTER_PARTITION = 5
EXPECTATIONS = expectations()
IDS = [f"{key}:{e.song_id}" for key, e in EXPECTATIONS]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def library(corpus, tmp_path_factory) -> dict:
    """Ingest and build every clip length with the library (the store root has odd characters too)."""
    root = tmp_path_factory.mktemp("store") / "störe ünder test"
    result = ingest(corpus, root)
    store = FeatureStore(root)
    report = store.build(audio_root=corpus, clip_seconds=CLIP_SECONDS, workers=1)
    index = {c: store.clips(clip_seconds=c).collect() for c in CLIP_SECONDS}
    return {"ingest": result, "store": store, "report": report, "index": index, "catalog": result.catalog}


@pytest.fixture(scope="module")
def dagster_run(corpus, tmp_path_factory) -> dg.ExecuteInProcessResult:
    """audio_catalog, song_splits and one mel_features partition, with their checks."""
    from assets import audio_catalog, mel_features, song_splits
    from assets.checks import catalog_duplicates, catalog_quarantine, features_sane, split_leakage
    from assets.resources import AudioSource, FeatureStoreResource, ModelStoreResource

    data = tmp_path_factory.mktemp("dagster")
    resources = {
        "audio": AudioSource(path=str(corpus)),
        "features": FeatureStoreResource(root=str(data / "store"), workers=1),
        "models": ModelStoreResource(root=str(data / "models"), report_dir=str(data / "reports")),
    }
    return dg.materialize(
        [audio_catalog, song_splits, mel_features, catalog_quarantine, catalog_duplicates, split_leakage,
         features_sane],
        resources=resources,
        partition_key=str(DAGSTER_PARTITION),
        selection=dg.AssetSelection.assets(audio_catalog, song_splits, mel_features),
        raise_on_error=False,
    )


def _meta(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    [mat] = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in mat.metadata.items()}


def _checks(result: dg.ExecuteInProcessResult) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _records(table_value) -> list[dict]:
    return [r.data for r in table_value.records]


# ---------------------------------------------------------------------------------------
# every case, file by file, through the three stages
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("case", "expect"), EXPECTATIONS, ids=IDS)
def test_catalog_records_the_outcome(library, case, expect):
    cat = library["catalog"]
    [row] = cat.filter(pl.col("song_id") == expect.song_id).to_dicts()
    assert row["path"] == expect.rel
    assert row["status"] == expect.status, row
    if expect.status == "quarantined":
        assert row["reason"] and re.search(expect.reason, row["reason"]), row["reason"]
    else:
        assert row["reason"] is None
    if expect.notes:
        assert row["notes"] and re.search(expect.notes, row["notes"]), row["notes"]
    assert row["duplicate_of"] == expect.duplicate_of
    # quarantined files are excluded from every split scheme; usable files are in one
    [split] = library["ingest"].splits.filter(pl.col("song_id") == expect.song_id).to_dicts()
    for scheme in ("seed", "stratified"):
        assert (split[scheme] == "excluded") == (expect.status == "quarantined")


@pytest.mark.parametrize(("case", "expect"), EXPECTATIONS, ids=IDS)
def test_features_follow_the_outcome(library, case, expect):
    report, store = library["report"], library["store"]
    for c in CLIP_SECONDS:
        rows = library["index"][c].filter(pl.col("song_id") == expect.song_id)
        assert rows.height == expect.clips[c], (c, rows)
        short = report.clip_lengths[c]["skipped_short"]
        # a usable file too short for this length is listed as such, in the report and the registry
        assert (expect.song_id in short) == (expect.status == "ok" and expect.clips[c] == 0)
        assert (expect.song_id in store.describe()["clip_lengths"][str(c)]["skipped_short"]) == (
            expect.song_id in short
        )
        if rows.height:
            x = store.tensors(clip_seconds=c, song_ids=[expect.song_id]).x
            assert np.isfinite(x).all()
    assert expect.song_id not in report.failed["song_id"].to_list()


@pytest.mark.parametrize(("case", "expect"), EXPECTATIONS, ids=IDS)
def test_dagster_run_records_and_reports_the_outcome(dagster_run, case, expect):
    assert dagster_run.success, "a bad file must never fail the run"
    catalog_md = _meta(dagster_run, "audio_catalog")
    quarantined = {r["song_id"]: r for r in _records(catalog_md["quarantined_files"])}
    checks = _checks(dagster_run)
    if expect.status == "quarantined":
        assert re.search(expect.reason, quarantined[expect.song_id]["reason"])
        listed = {r["song_id"] for r in _records(checks["catalog_quarantine"].metadata["quarantined_files"].value)}
        assert expect.song_id in listed
    else:
        assert expect.song_id not in quarantined
    if expect.notes:
        assert expect.song_id in catalog_md["notes"]  # the Markdown table of policy notes
        noted = {r["song_id"]: r["notes"] for r in _records(checks["catalog_quarantine"].metadata["noted_files"].value)}
        assert re.search(expect.notes, noted[expect.song_id])
    if expect.duplicate_of:
        dups = _records(checks["catalog_duplicates"].metadata["duplicate_files"].value)
        assert {"song_id": expect.song_id, "duplicate_of": expect.duplicate_of} in [
            {k: d[k] for k in ("song_id", "duplicate_of")} for d in dups
        ]
    if expect.check:
        ev = checks[expect.check]
        assert not ev.passed and ev.severity == dg.AssetCheckSeverity.WARN  # warns, never blocks
    features_md = _meta(dagster_run, "mel_features")
    if expect.status == "ok" and expect.clips[DAGSTER_PARTITION] == 0:
        assert features_md["too_short_for_this_length"] >= 1


# ---------------------------------------------------------------------------------------
# the run goes on for the other files, and the checks say what happened
# ---------------------------------------------------------------------------------------
def test_every_good_song_is_processed(library):
    cat = library["catalog"]
    good = cat.filter(pl.col("song_id").is_in(good_song_ids()))
    assert good.height == len(GENRES) * GOOD_SONGS_PER_GENRE
    assert set(good["status"]) == {"ok"} and good["notes"].is_null().all()
    for c in (1, 5):
        songs = set(library["index"][c]["song_id"])
        assert set(good_song_ids()) <= songs
    assert library["report"].failed.height == 0


def test_counts_add_up(library):
    """Every file is accounted for: the catalog has one row per file written."""
    cat = library["catalog"]
    n_case_files = sum(len(c.files) for c in CASES)
    assert cat.height == len(GENRES) * GOOD_SONGS_PER_GENRE + n_case_files
    quarantined = {e.song_id for _, e in EXPECTATIONS if e.status == "quarantined"}
    assert set(cat.filter(pl.col("status") == "quarantined")["song_id"]) == quarantined
    reg = library["store"].describe()
    assert reg["catalog"] == {"files": cat.height, "ok": cat.height - len(quarantined),
                              "quarantined": len(quarantined), "feature_failures": []}
    # 15 and 30 s: only the two 30 s files (stereo 44.1 kHz and 8 kHz) are long enough
    assert set(library["index"][30]["song_id"]) == {"hiphop.00094", "jazz.00095"}


def test_identical_files_never_leak_between_parts(library):
    spl = library["ingest"].splits
    a, b = (spl.filter(pl.col("song_id") == s).row(0, named=True) for s in ("rock.00000", "rock.00050"))
    for scheme in SCHEMES:
        assert a[scheme] == b[scheme], scheme
    assert leakage(spl).height == 0
    # one mel for both: the copies share a cache file and identical clips
    store = library["store"]
    t = store.tensors(clip_seconds=1, song_ids=["rock.00000", "rock.00050"])
    np.testing.assert_array_equal(t.x[0], t.x[1])


def test_silence_sits_at_the_floor_and_8k_has_no_top_bands(library):
    store = library["store"]
    silent = store.tensors(clip_seconds=5, song_ids=["pop.00097"]).x
    assert np.isfinite(silent).all()
    np.testing.assert_allclose(silent, -100.0, atol=1e-3)  # 10*log10(amin=1e-10): the floor, everywhere
    low = store.tensors(clip_seconds=30, song_ids=["jazz.00095"]).x[0]
    import librosa

    centres = librosa.mel_frequencies(n_mels=low.shape[0] + 2, fmax=22050 / 2)[1:-1]
    top = low[centres > 4500]
    mid = low[(centres > 200) & (centres < 3500)]
    assert top.max() < mid.max() - 60  # nothing above Nyquist of 8 kHz, beyond resampler leakage


def test_non_ascii_names_round_trip_through_hdf5(library):
    store = library["store"]
    sid = "classical/Für Elise – take 2 (live).wav"
    gen = store.generation(1)
    with h5py.File(gen / "mel.h5") as h5:
        ids = h5["clip_id"].asstr()[:].tolist()
    assert f"{sid}#01s#00" in ids
    assert store.tensors(clip_seconds=1, song_ids=[sid]).index["clip_id"].to_list() == [f"{sid}#01s#00"]
    assert "störe ünder test" in str(store.root)


def test_dagster_checks_report_the_run(dagster_run):
    assert dagster_run.success
    checks = _checks(dagster_run)
    quarantined = {e.song_id for _, e in EXPECTATIONS if e.status == "quarantined"}
    q = checks["catalog_quarantine"]
    assert not q.passed and q.metadata["quarantined"].value == len(quarantined)
    assert checks["catalog_duplicates"].metadata["duplicates"].value == 1
    assert checks["split_leakage"].passed  # the copies share their part: nothing blocks the features
    assert checks["features_sane"].passed  # finite, right shape, aligned: silence and NaN included
    md = _meta(dagster_run, "mel_features")
    assert md["feature_failures"] == 0
    # at 5 s: the 4 s song is the one usable file too short
    assert md["too_short_for_this_length"] == 1
    expected_songs = {e.song_id for _, e in EXPECTATIONS if e.clips[DAGSTER_PARTITION]} | set(good_song_ids())
    assert md["songs"] == len(expected_songs) and md["clips"] == len(expected_songs)


def test_missing_and_empty_audio_folders_say_so(tmp_path):
    """The library, the CLI and a Dagster run each say plainly what is wrong."""
    from click.testing import CliRunner

    from assets import audio_catalog
    from assets.resources import AudioSource, FeatureStoreResource, ModelStoreResource
    from feature_store.errors import ParameterError
    from pipelines import cli

    store = FeatureStore(tmp_path / "store")
    empty = tmp_path / "empty"
    (empty / "genres_original" / "blues").mkdir(parents=True)
    cases = [
        (tmp_path / "nowhere", "does not exist"),
        (tmp_path / "store-parent-only", "holds no genre folders"),
        (empty, "holds no audio files"),
    ]
    (tmp_path / "store-parent-only").mkdir()
    for folder, message in cases:
        with pytest.raises(ParameterError, match=message):
            store.build(audio_root=folder, clip_seconds=[5])
        with pytest.raises(ParameterError, match=message):
            ingest(folder, tmp_path / "store")
        r = CliRunner().invoke(cli.main, ["ingest", str(folder), "--store", str(tmp_path / "store")],
                               env={"GTZAN_DEBUG": None})
        assert r.exit_code == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "store").exists()  # nothing was written anywhere
    result = dg.materialize(
        [audio_catalog],
        resources={"audio": AudioSource(path=str(empty)),
                   "features": FeatureStoreResource(root=str(tmp_path / "dg")),
                   "models": ModelStoreResource(root=str(tmp_path / "m"), report_dir=str(tmp_path / "r"))},
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "holds no audio files" in failure.step_failure_data.error.message
    assert "STEP_UP_FOR_RETRY" not in [e.event_type_value for e in result.all_events]  # not retried


def test_the_twelve_cases_and_their_readme_table():
    """Issue 7 lists twelve cases; the README table is generated from the same list."""
    assert len(CASES) == 12 and len({c.key for c in CASES}) == 12
    rows = readme_table().splitlines()
    assert rows[:2] == ["| bad input | outcome |", "|---|---|"] and len(rows) == 14
    assert all(c.title in table_row and c.outcome in table_row for c, table_row in zip(CASES, rows[2:], strict=True))
