"""The embeddings view: HDF5 + Parquet per clip length, incremental, parallel, atomic, queryable.

Built once per module on the synthetic demo corpus (10 genres x 2 songs x 6 s), so a build
embeds 20 songs: 1 s and 5 s clips in ``first`` mode, 1 s clips in ``segments`` mode.
"""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import polars as pl
import pytest

from feature_store import FeatureParams, FeatureStore, ingest
from feature_store.embeddings import EmbeddingStore, build_embeddings, embed_file
from feature_store.embeddings import musicnn as mn
from feature_store.embeddings import store as es
from feature_store.errors import ParameterError, StoreError


@pytest.fixture(scope="module")
def weights() -> str:
    try:
        return mn.weights_sha256("MSD_musicnn")
    except mn.MusicnnWeightsError:
        pytest.skip(f"musicnn weights not installed; `{mn.INSTALL_COMMAND}` installs them")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from feature_store.demo import write_demo_corpus

    return write_demo_corpus(tmp_path_factory.mktemp("emb_corpus"), songs_per_genre=2, duration=6.0)


@pytest.fixture(scope="module")
def built(weights, corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("emb_store")
    ingest(corpus, root)
    first = EmbeddingStore(root)
    report = first.build(audio_root=corpus, clip_seconds=[1, 5], workers=1)
    seg = EmbeddingStore(root, params=FeatureParams(mode="segments"))
    seg_report = seg.build(audio_root=corpus, clip_seconds=[1], workers=1)
    return root, first, report, seg, seg_report


def test_build_writes_hdf5_parquet_and_registry(built, weights):
    _, store, report, _, _ = built
    assert len(report.computed) == 20 and report.failed.height == 0 and report.weights_sha256 == weights
    assert {c: v["status"] for c, v in report.clip_lengths.items()} == {1: "built", 5: "built"}
    gen = store.generation(5)
    assert {p.name for p in gen.iterdir()} == {"embeddings.h5", "index.parquet", "manifest.json"}
    with h5py.File(gen / "embeddings.h5") as h5:
        for name, width in mn.LAYERS.items():
            assert h5[name].shape == (20, width) and h5[name].dtype == np.float32
            assert np.all(np.isfinite(h5[name][...]))
        assert h5.attrs["weights_sha256"] == weights and h5.attrs["model"] == "MSD_musicnn"
        tags = h5["tags"][...]
        assert np.all((tags > 0) & (tags < 1))
    reg = store.describe()
    assert reg["model"] == "MSD_musicnn" and reg["weights_sha256"] == weights
    assert reg["params"] == store.params.to_dict() and reg["embedding_hash"] == store.hash()
    assert reg["clip_lengths"]["5"]["clips"] == 20 and reg["clip_lengths"]["1"]["patches_per_clip"] == 1
    assert reg["clip_lengths"]["5"]["embed_ms_per_clip"] > 0
    assert reg["catalog"]["ok"] == 20
    assert store.available_clip_seconds() == [1, 5]


def test_index_is_the_mel_stores_index(built, corpus):
    root, store, _, seg, _ = built
    mel = FeatureStore(root, params=FeatureParams(mode="segments"))
    mel.build(audio_root=corpus, clip_seconds=[1], workers=1)
    want = mel.clips(clip_seconds=1).collect()
    got = seg.clips(clip_seconds=1).collect()
    assert got.columns == [*want.columns, "patches"]
    assert got.drop("patches").equals(want)
    assert got.height == 120 and set(got["segment"].to_list()) == set(range(6))  # six 1 s clips per 6 s song
    assert store.clips(clip_seconds=5).collect()["segment"].to_list() == [0] * 20


def test_stored_rows_equal_embedding_the_file_directly(built, corpus):
    _, store, _, seg, _ = built
    path = corpus / "jazz" / "jazz.00001.wav"
    t = store.tensors(clip_seconds=5, song_ids=["jazz.00001"], layers=("penultimate", "tags"))
    direct = embed_file(path, clip_seconds=5, layers=("penultimate", "tags"))
    assert t.x.shape == (1, 250) and direct.x.shape == (1, 250)
    np.testing.assert_allclose(t.x, direct.x, rtol=1e-5, atol=1e-5)
    s = seg.tensors(clip_seconds=1, song_ids=["jazz.00001"], layers="max_pool")
    d = embed_file(path, clip_seconds=1, params=seg.params, layers="max_pool")
    assert s.x.shape == (6, 753) and d.index["segment"].to_list() == list(range(6))
    np.testing.assert_allclose(s.x, d.x, rtol=1e-5, atol=1e-4)
    assert s.index["start_seconds"].to_list() == pytest.approx(d.index["start_seconds"].to_list())
    assert not np.allclose(s.x[0], s.x[3])  # segments differ


def test_tensors_and_queries(built):
    _, store, _, _, _ = built
    t = store.tensors(clip_seconds=5, split="train")
    assert t.x.shape == (10, 753 + 200 + 50) and t.layers == ("max_pool", "penultimate", "tags")
    assert t.index["seed"].unique().to_list() == ["train"]
    assert t.y.tolist() == t.index["label"].to_list()
    jazz = store.clips(clip_seconds=5, genre="jazz", split="test").collect()
    assert jazz.height == 1 and jazz["genre"].to_list() == ["jazz"]
    one = store.tensors(clip_seconds=5, layers=["tags"], genre=["blues", "metal"])
    assert one.x.shape == (4, 50)
    full = store.tensors(clip_seconds=5, layers=["tags"])
    rows = full.index["genre"].is_in(["blues", "metal"]).to_numpy()
    np.testing.assert_array_equal(one.x, full.x[rows])


def test_bad_arguments_name_the_valid_values(built, tmp_path):
    _, store, _, _, _ = built
    with pytest.raises(ParameterError, match=r"\[1, 5, 15, 30\]"):
        store.clips(clip_seconds=7)
    with pytest.raises(ParameterError, match="penultimate"):
        store.tensors(clip_seconds=5, layers=["logits"])
    with pytest.raises(ParameterError, match="valid genres"):
        store.clips(clip_seconds=5, genre="polka")
    with pytest.raises(ParameterError, match="valid splits"):
        store.clips(clip_seconds=5, split="holdout")
    with pytest.raises(StoreError, match="built clip lengths: \\[1, 5\\]"):
        store.tensors(clip_seconds=30)
    with pytest.raises(ParameterError, match="MTT_musicnn"):
        EmbeddingStore(tmp_path, model="vggish")
    with pytest.raises(StoreError, match="build it first"):
        EmbeddingStore(tmp_path).describe()


def test_rerun_recomputes_nothing_and_new_songs_only_are_embedded(built, corpus, tmp_path, monkeypatch):
    root, store, _, _, _ = built
    gen = store.generation(5)
    again = store.build(audio_root=corpus, clip_seconds=[1, 5], workers=1)
    assert again.computed == [] and again.cached == 20
    assert {c: v["status"] for c, v in again.clip_lengths.items()} == {1: "unchanged", 5: "unchanged"}
    assert store.generation(5) == gen
    # a copy of the store and the corpus, plus two new songs: only those two are embedded
    root2, audio2 = tmp_path / "store", tmp_path / "audio"
    shutil.copytree(root, root2, symlinks=True)
    shutil.copytree(corpus.parent, audio2)
    from feature_store.demo import write_demo_corpus

    write_demo_corpus(audio2, songs_per_genre=3, duration=6.0, genres=("blues", "rock"))
    ingest(audio2 / "genres_original", root2)
    grown = EmbeddingStore(root2).build(audio_root=audio2 / "genres_original", clip_seconds=[5], workers=1)
    assert sorted(grown.computed) == ["blues.00002", "rock.00002"] and grown.cached == 20
    assert grown.clip_lengths[5]["status"] == "built" and grown.clip_lengths[5]["clips"] == 22


def test_new_weights_make_a_new_cache_and_rebuild(built, corpus, tmp_path, monkeypatch):
    root, _, _, _, _ = built
    root2 = tmp_path / "store"
    shutil.copytree(root, root2, symlinks=True)
    store = EmbeddingStore(root2)
    old = store.generation(5)
    monkeypatch.setattr(mn, "weights_sha256", lambda model="MSD_musicnn": "e" * 64)
    rep = store.build(audio_root=corpus, clip_seconds=[5], workers=1)
    assert len(rep.computed) == 20 and rep.clip_lengths[5]["status"] == "built"
    assert store.generation(5) != old and store.cache_dir("e" * 64).is_dir()
    assert store.describe()["weights_sha256"] == "e" * 64


def test_crash_mid_write_leaves_the_store_intact(built, corpus, tmp_path, monkeypatch):
    root, _, _, _, _ = built
    root2 = tmp_path / "store"
    shutil.copytree(root, root2, symlinks=True)
    store = EmbeddingStore(root2)
    before = store.tensors(clip_seconds=5)
    gen = store.generation(5)
    splits = pl.read_parquet(root2 / "splits.parquet")
    splits.with_columns(pl.lit("test").alias("seed")).write_parquet(root2 / "splits.parquet")  # forces a rewrite

    def boom(*a, **k):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(es.atomic, "swap_symlink", boom)
    with pytest.raises(KeyboardInterrupt):
        store.build(audio_root=corpus, clip_seconds=[5], workers=1)
    assert store.generation(5) == gen
    after = store.tensors(clip_seconds=5)
    np.testing.assert_array_equal(before.x, after.x)
    assert after.index.equals(before.index)
    monkeypatch.undo()
    rep = store.build(audio_root=corpus, clip_seconds=[5], workers=1)
    assert rep.clip_lengths[5]["status"] == "reindexed" and rep.computed == []
    assert store.clips(clip_seconds=5).collect()["seed"].unique().to_list() == ["test"]
    assert not [p for p in store.clip_dir(5).iterdir() if p.name.startswith(".tmp-")]


def test_a_changed_file_fails_alone(built, corpus, tmp_path):
    root, _, _, _, _ = built
    root2, audio2 = tmp_path / "store", tmp_path / "audio"
    shutil.copytree(root, root2, symlinks=True)
    shutil.copytree(corpus, audio2)
    store = EmbeddingStore(root2)
    sha = store.clips(clip_seconds=5, song_ids=["pop.00000"]).collect()["sha256"][0]
    store.cache_file(store.describe()["weights_sha256"], sha, 5).unlink()  # so that it is decoded again
    with open(audio2 / "pop" / "pop.00000.wav", "ab") as fh:
        fh.write(b"\0" * 64)  # changed after ingest
    rep = store.build(audio_root=audio2, clip_seconds=[5], workers=1)
    assert rep.failed["song_id"].to_list() == ["pop.00000"] and "re-run ingest" in rep.failed["reason"][0]
    assert rep.clip_lengths[5]["clips"] == 19 and "pop.00000" not in store.clips(clip_seconds=5).collect()["song_id"]
    assert store.describe()["catalog"]["feature_failures"][0]["song_id"] == "pop.00000"


def test_parallel_build_equals_serial(built, corpus, tmp_path):
    """Songs decoded in two worker processes give the serial build's numbers."""
    root, store, _, _, _ = built
    root2 = tmp_path / "store"
    root2.mkdir()
    for f in ("catalog.parquet", "splits.parquet"):
        shutil.copy(root / f, root2 / f)
    rep = build_embeddings(store_root=root2, audio_root=corpus, clip_seconds=[5], workers=2)
    assert len(rep.computed) == 20 and rep.failed.height == 0
    par = EmbeddingStore(root2).tensors(clip_seconds=5, layers=list(mn.LAYERS))
    ser = store.tensors(clip_seconds=5, layers=list(mn.LAYERS))
    assert par.index.equals(ser.index)
    np.testing.assert_allclose(par.x, ser.x, rtol=1e-4, atol=1e-4)


def test_cache_files_hold_no_pickle(built, weights):
    root, store, _, _, _ = built
    files = sorted(store.cache_dir(weights).glob("*.npz"))
    assert len(files) == 40  # 20 songs x (1 s, 5 s); the segments store has its own cache
    with np.load(files[0], allow_pickle=False) as z:
        assert set(z.files) == {"segments", "compute_seconds", *mn.LAYERS}
    reg = json.loads(store.registry_path.read_text())
    assert reg["weights_package"] == "musicnn==0.1.0"
