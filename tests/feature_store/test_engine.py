"""The store engine, through a toy view whose numbers are easy to predict (toy_view.py)."""

from __future__ import annotations

import shutil

import numpy as np
import polars as pl
import pytest
from toy_view import ClipToyView, ToyParams, ToyView, toy_entry

from feature_store import ingest
from feature_store.audio import decode
from feature_store.engine.store import ViewStore
from feature_store.errors import ParameterError, StoreError
from feature_store.views import VIEWS, get_view, view_class, view_from_spec


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_corpus):
    """Two genres of the tiny corpus (6 songs of 6 s), ingested."""
    root = tmp_path_factory.mktemp("engine")
    for g in ("rock", "jazz"):
        shutil.copytree(tiny_corpus / "genres_original" / g, root / "audio" / "genres_original" / g)
    ingest(root / "audio", root / "store")
    return root


def expected_rows(audio_root, index, clip_frames):
    """``level`` of each clip computed straight from the audio."""
    out = []
    for sid, start in index.select("song_id", "start_frame").iter_rows():
        genre = sid.split(".")[0]
        y = decode(audio_root / "genres_original" / genre / f"{sid}.wav", sr=22050).y
        entry = toy_entry(y)
        out.append([start, entry[1, start: start + clip_frames].mean()])
    return np.asarray(out, np.float32)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_toy_view_builds_every_clip_length_and_its_rows_are_the_views_numbers(corpus, tmp_path, workers):
    root = tmp_path / "store"
    shutil.copytree(corpus / "store", root)
    store = ViewStore(root, ToyView(ToyParams(mode="segments")))
    report = store.build(audio_root=corpus / "audio", clip_seconds=[1, 5], workers=workers)
    assert sorted(report.computed) == sorted(pl.read_parquet(root / "catalog.parquet")["song_id"].to_list())
    assert report.clip_lengths[1]["clips"] == 6 * 6 and report.clip_lengths[5]["clips"] == 6
    t = store.tensors(clip_seconds=1)
    assert t.arrays == ("level",) and t.x.shape == (36, 2)
    np.testing.assert_array_equal(t.x[:, 0], t.index["start_frame"].to_numpy())
    np.testing.assert_allclose(t.x, expected_rows(corpus / "audio", t.index, 44), rtol=1e-6)
    both = store.tensors(clip_seconds=5, arrays=["frames", "level"], genre="jazz")
    assert both.x.shape == (3, 2 * 216 + 2) and set(both.index["genre"]) == {"jazz"}
    table = store.table("level", clip_seconds=1).collect()
    np.testing.assert_array_equal(table.select("start", "peak").to_numpy(), t.x)
    assert (store.generation(1) / "toy.h5").is_file() and (store.generation(1) / "level.parquet").is_file()
    assert store.describe()["view"] == "toy" and store.describe()["view_params"] == {"mode": "segments", "scale": 1.0}


def test_rebuilds_recompute_only_what_changed(corpus, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(corpus / "store", root)
    store = ViewStore(root, ToyView())
    store.build(audio_root=corpus / "audio", clip_seconds=[1], workers=1)
    gen = store.generation(1)
    again = store.build(audio_root=corpus / "audio", clip_seconds=[1], workers=1)
    assert again.computed == [] and again.cached == 6 and again.clip_lengths[1]["status"] == "unchanged"
    assert store.generation(1) == gen
    # another parameter value is another store and another cache
    other = ViewStore(root, ToyView(ToyParams(scale=2.0)))
    assert other.store_dir != store.store_dir
    rep = other.build(audio_root=corpus / "audio", clip_seconds=[1], workers=1)
    assert len(rep.computed) == 6
    np.testing.assert_allclose(other.tensors(clip_seconds=1).x[:, 1], 2 * store.tensors(clip_seconds=1).x[:, 1],
                               rtol=1e-6)


def test_a_change_of_provenance_rebuilds(corpus, tmp_path, monkeypatch):
    root = tmp_path / "store"
    shutil.copytree(corpus / "store", root)
    store = ViewStore(root, ToyView())
    monkeypatch.setattr(ToyView, "version", "a")
    store.build(audio_root=corpus / "audio", clip_seconds=[1], workers=1)
    assert store.describe()["toy_version"] == "a"
    assert store.build(audio_root=corpus / "audio", clip_seconds=[1], workers=1).clip_lengths[1]["status"] == "unchanged"
    monkeypatch.setattr(ToyView, "version", "b")
    rep = store.build(audio_root=corpus / "audio", clip_seconds=[1], workers=1)
    assert rep.clip_lengths[1]["status"] == "built" and len(rep.computed) == 6
    assert rep.toy_version == "b" and store.describe()["toy_version"] == "b"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_clip_scope_view_caches_rows_per_clip_length(corpus, tmp_path, workers):
    root = tmp_path / "store"
    shutil.copytree(corpus / "store", root)
    store = ViewStore(root, ClipToyView())
    report = store.build(audio_root=corpus / "audio", clip_seconds=[1, 5], workers=workers)
    cached = sorted((root / "cache" / store.view.folder).glob("*.npz"))
    assert len(cached) == 6 * 2
    assert report.clip_lengths[5]["toy_ms_per_clip"] > 0
    plain = ViewStore(corpus / "store", ToyView())
    plain.build(audio_root=corpus / "audio", clip_seconds=[5], workers=1)
    np.testing.assert_array_equal(store.tensors(clip_seconds=5).x, plain.tensors(clip_seconds=5).x)
    # a damaged cache entry is computed again, not served
    next(p for p in cached if p.name.endswith("-05s.npz")).write_bytes(b"not a zip file")
    shutil.rmtree(store.clip_dir(5))
    again = store.build(audio_root=corpus / "audio", clip_seconds=[5], workers=1)
    assert len(again.computed) == 1
    np.testing.assert_array_equal(store.tensors(clip_seconds=5).x, plain.tensors(clip_seconds=5).x)


def test_queries_name_what_is_valid(corpus, tmp_path):
    store = ViewStore(corpus / "store", ToyView())
    store.build(audio_root=corpus / "audio", clip_seconds=[1], workers=1)
    with pytest.raises(ParameterError, match=r"no array 'mel'; valid arrays are \['level', 'frames'\]"):
        store.tensors(clip_seconds=1, arrays="mel")
    with pytest.raises(ParameterError, match=r"no table 'frames'; its tables are \['level'\]"):
        store.table("frames", clip_seconds=1)
    with pytest.raises(StoreError, match=r"no 30 s toy store .* built clip lengths: \[1"):
        store.tensors(clip_seconds=30)
    with pytest.raises(ParameterError, match="view must be a FeatureView"):
        ViewStore(corpus / "store", "toy")  # type: ignore[arg-type]


def test_views_are_found_and_rebuilt_from_their_spec():
    assert list(VIEWS)[:3] == ["mel", "embeddings", "timbre"]
    assert not hasattr(view_class("timbre"), "asset_name")  # Dagster's names belong to assets/
    with pytest.raises(ParameterError, match=r"unknown feature view 'mfcc'; valid views are \['mel', 'embeddings'"):
        get_view("mfcc")
    for view in (get_view(name) for name in VIEWS):
        again = view_from_spec(view.to_spec())
        assert again == view and again.hash() == view.hash()
    toy = ToyView(ToyParams(mode="segments", scale=3.0))
    assert view_from_spec(toy.to_spec()) == toy


def test_the_contributor_template_is_complete_but_not_registered():
    from feature_store.views import _template

    assert "myview" not in VIEWS
    view = _template.MyView()
    assert view.folder.startswith("myview-") and view.clip_frames(5) == 216
    rows = view.clip_rows(np.arange(2 * 1292, dtype=np.float32).reshape(2, 1292), {1: [0, 10]})
    np.testing.assert_allclose(rows[1]["myarray"], [[21.5, 1313.5], [31.5, 1323.5]])
    with pytest.raises(NotImplementedError, match="frame features"):
        view.prepare(np.zeros(10, np.float32))


def test_views_declare_their_own_options():
    from feature_store.engine.view import ViewOptions
    from feature_store.views import declared_options

    opts = declared_options()
    assert list(opts) == ["dtype", "embedding_model"]  # mel's, then the embeddings'
    assert opts["embedding_model"].field == "model" and opts["embedding_model"].choices == ("MSD_musicnn",
                                                                                          "MTT_musicnn")
    assert get_view("embeddings", ViewOptions(embedding_model="MTT_musicnn")).params.model == "MTT_musicnn"
    assert get_view("mel", ViewOptions(mode="segments", dtype="float16")).params.dtype == "float16"
    # a view ignores the options of the others
    assert get_view("timbre", ViewOptions(dtype="float16", embedding_model="MTT_musicnn")) == get_view("timbre")
    with pytest.raises(ParameterError, match=r"--dtype 'float64' is not one of 'float32', 'float16'"):
        get_view("mel", ViewOptions(dtype="float64"))
    v = get_view("embeddings", ViewOptions(mode="segments", embedding_model="MTT_musicnn"))
    assert v.options() == {"mode": "segments", "embedding_model": "MTT_musicnn"}
    assert v.reads == ("mode", "embedding_model") and ViewOptions(dtype="float16").dtype == "float16"
    # a view outside the package (the toy) declares its option the same way
    assert [o.name for o in ToyView.declared_options()] == ["scale"]
    assert ToyView.from_options(ViewOptions(mode="segments", scale=3.0)) == ToyView(ToyParams("segments", 3.0))
