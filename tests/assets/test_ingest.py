"""audio_catalog and song_splits, materialized on temporary resources, with their checks."""

import dagster as dg
import polars as pl
import pytest
from asset_helpers import SONGS_PER_GENRE, materialize_ingest

from feature_store.datasets.gtzan import GENRES


def evaluations(result: dg.ExecuteInProcessResult) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(asset)[0].metadata.items()}


def test_ingest_materializes_catalog_and_splits(resources):
    result = materialize_ingest(resources)
    assert result.success
    store = resources["features"].store()
    cat = pl.read_parquet(store.catalog_path)
    assert cat.height == SONGS_PER_GENRE * len(GENRES)
    assert set(cat["status"]) == {"ok"}
    md = metadata(result, "audio_catalog")
    assert md["files"] == cat.height and md["quarantined"] == 0 and md["duplicates"] == 0
    assert md["layout"] == "kaggle" and md["demo_corpus"] is False
    assert md["bytes"] == store.catalog_path.stat().st_size > 0
    assert md["quarantined_files"].records == []
    spl = pl.read_parquet(store.splits_path)
    assert spl.height == cat.height
    # the seed scheme holds out one song per genre of three
    assert int((spl["seed"] == "test").sum()) == len(GENRES)
    assert metadata(result, "song_splits")["seed_test_songs"] == len(GENRES)
    checks = evaluations(result)
    assert set(checks) == {"catalog_quarantine", "catalog_duplicates", "catalog_class_balance", "split_leakage"}
    assert all(e.passed for e in checks.values())


def test_quarantined_file_warns_without_blocking(resources, corpus):
    (corpus / "genres_original" / "jazz" / "jazz.00099.wav").write_bytes(b"")  # an empty file
    result = materialize_ingest(resources)
    assert result.success  # a warning never blocks
    md = metadata(result, "audio_catalog")
    assert md["quarantined"] == 1
    [row] = md["quarantined_files"].records
    assert row.data["song_id"] == "jazz.00099" and "empty" in row.data["reason"]
    checks = evaluations(result)
    assert not checks["catalog_quarantine"].passed
    assert checks["catalog_quarantine"].severity == dg.AssetCheckSeverity.WARN
    assert checks["split_leakage"].passed  # the quarantined file is excluded from every part


def test_duplicate_and_imbalance_warn(resources, corpus):
    genres = corpus / "genres_original"
    for f in (genres / "metal").iterdir():
        f.unlink()
    (genres / "blues" / "blues.00000.wav").replace(genres / "blues" / "blues.00005.wav")
    data = (genres / "rock" / "rock.00000.wav").read_bytes()
    (genres / "rock" / "rock.00007.wav").write_bytes(data)
    result = materialize_ingest(resources)
    assert result.success  # warnings only
    checks = evaluations(result)
    # the copy is numbered last, but the split keeps byte-identical copies in one part
    assert checks["split_leakage"].passed
    assert not checks["catalog_duplicates"].passed
    assert checks["catalog_duplicates"].metadata["duplicates"].value == 1
    balance = checks["catalog_class_balance"]
    assert not balance.passed and balance.severity == dg.AssetCheckSeverity.WARN
    assert balance.metadata["genres_missing"].value == ["metal"]


def test_planted_leakage_fails_blocking_check_and_blocks_features(resources):
    """A song planted in both the training and the held-out part blocks the features."""
    from assets import mel_features, song_splits, split_leakage

    assert materialize_ingest(resources).success
    store = resources["features"].store()
    splits = pl.read_parquet(store.splits_path)
    train_song = splits.filter(pl.col("seed") == "train").row(0, named=True)
    planted = pl.DataFrame([{**train_song, "seed": "test"}], schema=splits.schema)
    pl.concat([splits, planted]).write_parquet(store.splits_path)

    result = dg.materialize(
        [song_splits, mel_features, split_leakage],
        resources=resources,
        partition_key="1",
        selection=dg.AssetSelection.checks(split_leakage) | dg.AssetSelection.assets(mel_features),
        raise_on_error=False,
    )
    assert not result.success
    leak = evaluations(result)["split_leakage"]
    assert not leak.passed and leak.severity == dg.AssetCheckSeverity.ERROR
    [row] = [r.data for r in leak.metadata["leaking"].value.records if r.data["kind"] == "song_id"]
    assert row == {"scheme": "seed", "kind": "song_id", "key": train_song["song_id"], "parts": "test,train"}
    # blocked: the features were never built
    assert result.asset_materializations_for_node("mel_features") == []
    assert not (store.clip_dir(1) / "current").exists()


def test_bad_layout_fails_at_once_without_retries(resources):
    from assets import AudioSource, audio_catalog

    res = {**resources, "audio": AudioSource(path=resources["audio"].path, layout="original")}
    result = dg.materialize([audio_catalog], resources=res, raise_on_error=False)
    assert not result.success
    types = [e.event_type_value for e in result.all_events]
    assert "STEP_UP_FOR_RETRY" not in types
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "layout" in failure.step_failure_data.error.message


@pytest.mark.parametrize("layout", ["auto", "kaggle"])
def test_layouts_accepted(resources, layout):
    from assets import AudioSource

    audio = AudioSource(path=resources["audio"].path, layout=layout)
    assert audio.genre_root().name == "genres_original"


def test_ingest_assets_read_the_dataset_of_the_audio_resource(tmp_path, resources):
    """`audio.dataset=folders`: the assets catalog a three-label corpus, record its labels, and the
    class-balance check counts those labels, not GTZAN's genres."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "pipelines"))
    from test_three_labels import LABELS, write_corpus

    from feature_store.tables import read_audio_source

    corpus = tmp_path / "three"  # (tmp_path / "corpus" is the GTZAN copy of the fixture)
    write_corpus(corpus, songs=4, seconds=1.0)
    from assets.resources import AudioSource

    res = {**resources, "audio": AudioSource(path=str(corpus), dataset="folders")}
    result = materialize_ingest(res)
    assert result.success
    md = metadata(result, "audio_catalog")
    assert md["dataset"] == "folders" and md["labels"] == list(LABELS) and md["files"] == 12
    store = res["features"].store()
    assert read_audio_source(store.root)["labels"] == list(LABELS)
    assert pl.read_parquet(store.splits_path).height == 12
    balance = evaluations(result)["catalog_class_balance"]
    assert balance.passed and balance.metadata["songs_per_genre"].value == dict.fromkeys(LABELS, 4)
    # the default dataset, gtzan, reads the same folder as GTZAN's: no file is of a GTZAN genre
    gtzan = materialize_ingest({**resources, "audio": AudioSource(path=str(corpus))})
    assert metadata(gtzan, "audio_catalog")["quarantined"] == 12
    assert not evaluations(gtzan)["catalog_class_balance"].passed
