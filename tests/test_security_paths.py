"""Paths are resolved and confined to their roots: data can never point a read or a write outside.

* Catalog paths (relative to the audio folder) go through
  ``feature_store.catalog.resolve_in_root``: ``..``, absolute paths and symbolic links out of
  the folder are refused. A symbolic link out is quarantined at ingest, before anything reads it;
  a tampered catalog row that points out becomes a recorded feature failure.
* Cache files are named by a checked sha256 digest, so a tampered hash cannot name a path.
* Model runs live at ``ModelStore.run_dir``: model names, clip lengths, seeds and variants are
  validated and the folder must resolve under the model store root.
* Report images outside the report folder are never inlined into the Dagster UI.
* Resource and store roots are absolute and resolved, whatever the working directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from feature_store import FeatureParams, FeatureStore, ingest
from feature_store.catalog import resolve_in_root
from feature_store.datasets.gtzan import scan
from feature_store.demo import write_demo_corpus
from feature_store.errors import ParameterError


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("paths") / "audio"
    write_demo_corpus(root, songs_per_genre=2, duration=2.0)
    return root


@pytest.mark.parametrize("rel", ["../outside.wav", "/etc/passwd", "jazz/../../x.wav", "jazz/../../../etc/passwd",
                                 "link-out/secret.wav"])
def test_resolve_in_root_refuses_escapes(tmp_path, rel):
    root = tmp_path / "root"
    (root / "jazz").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "link-out").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(ParameterError, match="escapes its root"):
        resolve_in_root(root, rel)


def test_resolve_in_root_keeps_what_is_inside(tmp_path):
    (tmp_path / "jazz").mkdir()
    (tmp_path / "jazz" / "a b é.wav").write_bytes(b"x")
    (tmp_path / "jazz" / "alias.wav").symlink_to(tmp_path / "jazz" / "a b é.wav")
    assert resolve_in_root(tmp_path, "jazz/a b é.wav") == (tmp_path / "jazz" / "a b é.wav").resolve()
    assert resolve_in_root(tmp_path, "jazz/./../jazz/alias.wav") == (tmp_path / "jazz" / "a b é.wav").resolve()


def test_a_symlink_out_of_the_audio_folder_is_quarantined_unread(audio, tmp_path):
    corpus = tmp_path / "audio"
    shutil.copytree(audio, corpus)
    secret = tmp_path / "secret.wav"
    shutil.copy(corpus / "genres_original" / "blues" / "blues.00000.wav", secret)
    (corpus / "genres_original" / "blues" / "blues.00077.wav").symlink_to(secret)
    (corpus / "genres_original" / "blues" / "blues.00078.wav").symlink_to(
        corpus / "genres_original" / "blues" / "blues.00001.wav")  # a link that stays inside is fine
    cat = scan(corpus)
    out = cat.filter(pl.col("song_id") == "blues.00077").row(0, named=True)
    assert out["status"] == "quarantined" and "outside the audio folder" in out["reason"]
    assert out["sha256"] is None and out["bytes"] is None  # never read
    inside = cat.filter(pl.col("song_id") == "blues.00078").row(0, named=True)
    assert inside["status"] == "ok" and inside["duplicate_of"] == "blues.00001"


def test_a_tampered_catalog_cannot_read_outside_the_audio_folder(audio, tmp_path):
    root = tmp_path / "store"
    ingest(audio, root)
    outside = tmp_path / "outside.wav"
    sf.write(outside, np.full(22050 * 2, 0.1, np.float32), 22050)  # a readable file, unknown to the store
    sha = hashlib.sha256(outside.read_bytes()).hexdigest()
    cat = pl.read_parquet(root / "catalog.parquet")
    evil = cat.head(1).with_columns(pl.lit("blues.00099").alias("song_id"), pl.lit("../../outside.wav").alias("path"),
                                    pl.lit("blues").alias("genre"), pl.lit(sha).alias("sha256"))
    pl.concat([cat, evil]).write_parquet(root / "catalog.parquet")
    store = FeatureStore(root)
    report = store.build(audio_root=audio, clip_seconds=[1], workers=1)
    [failure] = report.failed.to_dicts()
    assert failure["song_id"] == "blues.00099" and "escapes its root" in failure["reason"]
    assert "blues.00099" not in store.clips(clip_seconds=1).collect()["song_id"].to_list()
    assert len(report.computed) == 20 and not store.cache_file(sha).exists()


def test_a_tampered_hash_cannot_name_a_cache_path(audio, tmp_path):
    root = tmp_path / "store"
    ingest(audio, root)
    cat = pl.read_parquet(root / "catalog.parquet")
    cat.with_columns(pl.when(pl.col("song_id") == "jazz.00000").then(pl.lit("../../../../tmp/evil"))
                     .otherwise(pl.col("sha256")).alias("sha256")).write_parquet(root / "catalog.parquet")
    with pytest.raises(ParameterError, match="not a sha256 hex digest"):
        FeatureStore(root).build(audio_root=audio, clip_seconds=[1], workers=1)
    assert not list(tmp_path.rglob("evil*"))


@pytest.mark.parametrize(
    "kwargs",
    [{"model": "../../x"}, {"model": "seed_cnn/../../x"}, {"variant": "../../x"}, {"variant": "a/b"},
     {"variant": ".hidden"}, {"seed": -1}, {"seed": "0/../../x"}, {"clip_seconds": "5/../.."}],
)
def test_model_run_folders_stay_in_the_model_store(tmp_path, kwargs):
    from training.train import ModelStore

    store = ModelStore(tmp_path / "models")
    args = {"params": FeatureParams(), "model": "seed_cnn", "clip_seconds": 5, "seed": 0, **kwargs}
    with pytest.raises(ParameterError):
        store.run_dir(**args)
    ok = store.run_dir(params=FeatureParams(), model="seed_cnn", clip_seconds=5, seed=0, variant="crop-2s_v1.0")
    assert store.root in ok.parents and ok.name == "seed-0--crop-2s_v1.0"


def test_report_images_outside_the_report_folder_are_not_inlined(tmp_path):
    from assets.reports import inline_images

    report = tmp_path / "reports"
    (report / "figures").mkdir(parents=True)
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 64
    (report / "figures" / "ok.png").write_bytes(png)
    (tmp_path / "secret.png").write_bytes(png)
    (report / "figures" / "link.png").symlink_to(tmp_path / "secret.png")
    md = "![a](figures/ok.png) ![b](../secret.png) ![c](figures/link.png) ![d](/etc/secret.png)"
    out = inline_images(md, report)
    assert out.count("data:image/png;base64,") == 1 and "![a](data:image/png;base64," in out
    assert "![b](../secret.png)" in out and "![c](figures/link.png)" in out and "![d](/etc/secret.png)" in out


def test_roots_are_absolute_and_resolved(tmp_path, monkeypatch):
    from training.train import ModelStore

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    for obj in (FeatureStore("a/../store"), ModelStore("a/../models")):
        assert obj.root.is_absolute() and ".." not in obj.root.parts
        assert obj.root.parent == tmp_path.resolve()
    from pipelines.resources import make_resources

    monkeypatch.setenv("GTZAN_DATA_DIR", "a/../data")
    for var in ("GTZAN_DIR", "GTZAN_STORE_DIR", "GTZAN_MODEL_DIR", "GTZAN_REPORT_DIR"):
        monkeypatch.delenv(var, raising=False)
    res = make_resources()
    for path in (res["features"].root, res["models"].root, res["models"].report_dir):
        assert os.path.isabs(path) and ".." not in Path(path).parts and Path(path).is_relative_to(tmp_path.resolve())
