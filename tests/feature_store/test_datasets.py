"""Datasets as declarations: a three-label corpus that is not GTZAN, read by the ``folders``
and ``csv`` datasets, goes through ingest, splits and a feature build with its own labels."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from feature_store import FeatureStore
from feature_store.datasets import dataset_names, get_dataset
from feature_store.errors import ParameterError
from feature_store.ingestion import ingest

SR = 22050
LABELS = ("alpha", "beta", "gamma")
PER_LABEL = 4


def _tone(i: int, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.2 * np.sin(2 * np.pi * (220 + 55 * i) * t)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """``DIR/<label>/<label>-<n>.wav``: three labels of four 2 s tones."""
    root = tmp_path_factory.mktemp("corpus")
    for j, label in enumerate(LABELS):
        (root / label).mkdir()
        for n in range(PER_LABEL):
            sf.write(root / label / f"{label}-{n}.wav", _tone(j * PER_LABEL + n), SR)
    return root


def _write_csv(path, rows, header=("path", "label")):
    path.write_text("\n".join([",".join(header), *(",".join(r) for r in rows)]) + "\n")
    return path


def _listing(with_split: bool = False) -> list[tuple[str, ...]]:
    rows = []
    for label in LABELS:
        for n in range(PER_LABEL):
            row = (f"{label}/{label}-{n}.wav", label)
            rows.append((*row, "test" if n == 0 else "train") if with_split else row)
    return rows


def test_the_registry_lists_every_dataset_gtzan_first():
    names = dataset_names()
    assert names[0] == "gtzan" and {"gtzan", "folders", "csv"} <= set(names)
    with pytest.raises(ParameterError, match=r"unknown dataset 'nope'; valid datasets are \['gtzan'"):
        get_dataset("nope")


def test_folders_dataset_ingests_builds_and_labels_from_the_data(corpus, tmp_path):
    result = ingest(corpus, tmp_path, dataset="folders")
    cat = result.catalog
    assert result.dataset == "folders" and result.labels == LABELS
    assert cat.height == 12 and cat["status"].unique().to_list() == ["ok"]
    assert sorted(cat["genre"].unique().to_list()) == list(LABELS)
    assert "alpha/alpha-0.wav" in cat["song_id"].to_list()
    spl = result.splits
    assert sorted(spl["genre"].unique().to_list()) == list(LABELS)
    # seed: the last song of each label (10 % of 4, at least one) is held out
    test = spl.filter(pl.col("seed") == "test").sort("song_id")["song_id"].to_list()
    assert test == [f"{g}/{g}-3.wav" for g in LABELS]
    assert set(spl["fault_filtered"].to_list()) == {"excluded"}
    folds = spl.group_by("genre", "stratified").len()
    assert folds.height == 3 * 4 and folds["len"].to_list() == [1] * 12  # four songs dealt over 5 folds
    record = json.loads((tmp_path / "audio_source.json").read_text())
    assert record["dataset"] == "folders" and record["labels"] == list(LABELS)

    store = FeatureStore(tmp_path)
    report = store.build(audio_root=corpus, clip_seconds=[1], workers=1)
    assert len(report.computed) == 12 and report.failed.height == 0
    x, y, index = store.tensors(clip_seconds=1, split="train")
    assert x.shape[0] == y.shape[0] == index.height == 9  # the first 1 s clip of the nine train songs
    codes = dict(zip(index["genre"], y.tolist(), strict=True))
    assert codes == {"alpha": 0, "beta": 1, "gamma": 2}
    assert store.clips(clip_seconds=1, genre="beta").collect().height == 4
    with pytest.raises(ParameterError, match=r"unknown genre 'blues'; valid genres are \['alpha', 'beta', 'gamma'\]"):
        store.clips(clip_seconds=1, genre="blues").collect()


def test_csv_dataset_with_a_split_column_uses_it(corpus, tmp_path):
    labels = _write_csv(tmp_path / "labels.csv", _listing(with_split=True), header=("path", "label", "split"))
    result = ingest(corpus, tmp_path / "store", dataset="csv", labels_file=labels)
    cat, spl = result.catalog, result.splits
    assert result.labels == LABELS and sorted(cat["genre"].unique().to_list()) == list(LABELS)
    test = spl.filter(pl.col("seed") == "test").sort("song_id")["song_id"].to_list()
    assert test == [f"{g}/{g}-0.wav" for g in LABELS]  # the file's choice, not the computed last songs
    store = FeatureStore(tmp_path / "store")
    assert store.build(audio_root=corpus, clip_seconds=[1], workers=1).failed.height == 0
    assert set(store.clips(clip_seconds=1, split="test").collect()["genre"].to_list()) == set(LABELS)


def test_csv_dataset_without_a_split_column_computes_the_seed_split(corpus, tmp_path):
    labels = _write_csv(tmp_path / "labels.csv", _listing())
    spl = ingest(corpus, tmp_path / "store", dataset="csv", labels_file=labels).splits
    test = spl.filter(pl.col("seed") == "test").sort("song_id")["song_id"].to_list()
    assert test == [f"{g}/{g}-3.wav" for g in LABELS]


@pytest.mark.parametrize(("rows", "header", "match"), [
    ([("alpha/alpha-0.wav", "alpha")], ("path", "genre"), r"lacks the column 'label'"),
    ([("alpha/nope.wav", "alpha")], ("path", "label"), r"line 2: unknown path 'alpha/nope.wav'"),
    ([("../outside.wav", "alpha")], ("path", "label"), r"line 2: path '../outside.wav' escapes the audio folder"),
    ([("alpha/alpha-0.wav", "alpha"), ("alpha/./alpha-0.wav", "beta")], ("path", "label"),
     r"line 3: path 'alpha/alpha-0.wav' is listed twice \(first on line 2\)"),
    ([("alpha/alpha-0.wav", "alpha", "holdout")], ("path", "label", "split"), r"split 'holdout' is not one of"),
])
def test_a_bad_labels_file_is_refused_in_one_line(corpus, tmp_path, rows, header, match):
    labels = _write_csv(tmp_path / "labels.csv", rows, header=header)
    with pytest.raises(ParameterError, match=match) as err:
        ingest(corpus, tmp_path / "store", dataset="csv", labels_file=labels)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "store" / "catalog.parquet").exists()


def test_the_csv_dataset_needs_its_labels_file(corpus, tmp_path):
    with pytest.raises(ParameterError, match=r"the csv dataset needs its labels file: --labels FILE"):
        ingest(corpus, tmp_path, dataset="csv")
    with pytest.raises(ParameterError, match=r"takes no labels file"):
        ingest(corpus, tmp_path, dataset="folders", labels_file=tmp_path / "x.csv")


def test_the_ingest_command_takes_a_dataset_and_lists_them_from_the_registry(corpus, tmp_path, monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "pipelines"))
    from cli_helpers import env_for, fails, ok, run

    env = env_for(tmp_path / "data")
    help_text = run(["ingest", "--help"], env).output
    for name in dataset_names():
        assert f"  {name}" in help_text
    out = ok(["ingest", corpus, "--dataset", "folders"], env).output
    assert "cataloged 12 files" in out and "(folders layout" in out
    store = tmp_path / "data" / "store"
    assert sorted(pl.read_parquet(store / "catalog.parquet")["genre"].unique().to_list()) == list(LABELS)
    bad = _write_csv(tmp_path / "bad.csv", [("alpha/alpha-0.wav", "alpha"), ("alpha/alpha-0.wav", "beta")])
    fails(["ingest", corpus, "--dataset", "csv", "--labels", bad], env, 2, r"line 3: path 'alpha/alpha-0.wav' is "
          r"listed twice")
    fails(["ingest", corpus, "--dataset", "nope"], env, 2, r"unknown dataset 'nope'; valid datasets are")


def test_a_repair_ingests_again_with_the_recorded_dataset_and_labels_file(corpus, tmp_path):
    labels = _write_csv(tmp_path / "labels.csv", _listing(with_split=True), header=("path", "label", "split"))
    root = tmp_path / "store"
    ingest(corpus, root, dataset="csv", labels_file=labels)
    store = FeatureStore(root)
    store.build(audio_root=corpus, clip_seconds=[1], workers=1)
    before = pl.read_parquet(root / "splits.parquet")
    (root / "splits.parquet").write_bytes(b"not parquet")  # a damaged split table
    check = store.verify()
    assert check.root_problems
    report = store.repair(check, audio_root=corpus, workers=1)
    assert report.reingested
    after = pl.read_parquet(root / "splits.parquet")
    assert after.equals(before)  # the csv's own seed split, not the computed one
    assert json.loads((root / "audio_source.json").read_text())["dataset"] == "csv"
    assert not store.verify().root_problems
