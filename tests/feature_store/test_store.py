import io
import json
import os
import shutil

import h5py
import hdf5plugin
import numpy as np
import polars as pl
import pytest

from feature_store import FeatureParams, FeatureStore, ingest
from feature_store.errors import ParameterError, StoreError, StoreLockedError
from feature_store.store import clip_dirname


@pytest.fixture(scope="module")
def built(tiny_corpus, tmp_path_factory):
    """A store of the tiny corpus with 1 s and 5 s clips, in both modes."""
    root = tmp_path_factory.mktemp("store")
    ingest(tiny_corpus, root)
    first = FeatureStore(root)
    first_report = first.build(audio_root=tiny_corpus, clip_seconds=[1, 5], workers=2)
    seg = FeatureStore(root, params=FeatureParams(mode="segments"))
    seg.build(audio_root=tiny_corpus, clip_seconds=[1, 5])
    return root, first, seg, first_report


def test_build_writes_hdf5_parquet_and_registry(built):
    root, store, _, report = built
    assert len(report.computed) == 30 and report.failed.height == 0
    gen = store.generation(5)
    assert {p.name for p in gen.iterdir()} == {"mel.h5", "index.parquet", "summary.parquet", "manifest.json"}
    with h5py.File(gen / "mel.h5") as h5:
        ds = h5["mel"]
        assert ds.shape == (30, 128, 216)
        assert ds.chunks == (1, 128, 216)
        # Blosc (LZ4, byte shuffle) from hdf5plugin: filter id 32001, settings in the attrs
        assert str(hdf5plugin.BLOSC_ID) in ds._filters
        assert h5.attrs["compression"] == "blosc:lz4:5:shuffle"
        assert ds.id.get_storage_size() < ds.size * 4  # it did compress
        assert json.loads(h5.attrs["params"]) == store.params.to_dict()
    reg = store.describe()
    assert reg["params_hash"] == store.params.hash()
    assert reg["params"] == store.params.to_dict()
    assert reg["clip_lengths"]["5"]["clips"] == 30
    assert reg["catalog"]["ok"] == 30
    assert {"created_at", "feature_code_version", "package_version", "audio_policy"} <= set(reg)
    assert reg["hdf5_compression"] == "blosc:lz4:5:shuffle"


def test_index_columns_and_rows(built):
    _, store, _, _ = built
    idx = store.clips(clip_seconds=1).collect()
    assert idx.columns == ["clip_id", "song_id", "genre", "label", "sha256", "segment", "start_seconds",
                           "start_frame", "seed", "stratified", "fault_filtered", "clip_seconds", "frames", "hdf5_row"]
    assert idx["hdf5_row"].to_list() == list(range(30))
    assert idx.filter(pl.col("seed") == "test").height == 10


def test_tensors_are_slices_of_the_cached_full_mel(built):
    _, store, seg, _ = built
    t = seg.tensors(clip_seconds=1, song_ids=["metal.00001"])
    assert t.x.shape == (6, 128, 44)  # a 6 s song gives six 1 s segments
    assert t.y.tolist() == [6] * 6
    sha = t.index["sha256"][0]
    full = np.load(seg.cache_file(sha), allow_pickle=False)
    for i, start in enumerate(t.index["start_frame"]):
        np.testing.assert_array_equal(t.x[i], full[:, start : start + 44])
    assert t.index["segment"].to_list() == list(range(6))
    np.testing.assert_allclose(t.index["start_seconds"].to_list(), [s * 512 / 22050 for s in t.index["start_frame"]])


def test_short_songs_give_no_long_clips(built):
    _, _, seg, _ = built
    idx = seg.clips(clip_seconds=5).collect()
    assert idx.group_by("song_id").len()["len"].unique().to_list() == [1]  # 6 s songs: one whole 5 s segment


def test_queries_filter_and_validate(built):
    _, store, _, _ = built
    jazz_test = store.clips(clip_seconds=5, genre="jazz", split="test").collect()
    assert jazz_test["song_id"].to_list() == ["jazz.00002"]
    both = store.clips(clip_seconds=5, genre=["jazz", "pop"], split=["train"]).collect()
    assert sorted(set(both["genre"])) == ["jazz", "pop"] and set(both["seed"]) == {"train"}
    x, y, index = store.tensors(clip_seconds=5, genre="pop", split="test")
    assert x.shape == (1, 128, 216) and y.tolist() == [7]
    with pytest.raises(ParameterError, match=r"\[1, 5, 15, 30\]"):
        store.clips(clip_seconds=7)
    with pytest.raises(ParameterError, match="valid genres"):
        store.clips(clip_seconds=5, genre="polka")
    with pytest.raises(ParameterError, match=r"valid splits are \['train', 'test', 'excluded'\]"):
        store.clips(clip_seconds=5, split="validation")
    with pytest.raises(ParameterError, match="valid schemes"):
        store.clips(clip_seconds=5, scheme="kfold")
    with pytest.raises(StoreError, match=r"built clip lengths: \[1, 5\]"):
        store.clips(clip_seconds=30)


def test_summary_features_join_the_index(built):
    _, store, _, _ = built
    s = store.summary(clip_seconds=1, genre="blues").collect()
    assert s.height == 3 and "mean_000" in s.columns and "std_127" in s.columns
    x, _, _ = store.tensors(clip_seconds=1, genre="blues")
    np.testing.assert_allclose(s["mean_005"].to_numpy(), x[:, 5].mean(axis=1), rtol=1e-5)


def test_rerun_recomputes_nothing(built, tiny_corpus):
    root, store, _, _ = built
    before = {c: store.generation(c) for c in (1, 5)}
    mtimes = {c: os.stat(before[c] / "mel.h5").st_mtime_ns for c in (1, 5)}
    report = store.build(audio_root=tiny_corpus, clip_seconds=[1, 5])
    assert report.computed == [] and report.cached == 30
    assert {c: v["status"] for c, v in report.clip_lengths.items()} == {1: "unchanged", 5: "unchanged"}
    assert {c: store.generation(c) for c in (1, 5)} == before
    assert {c: os.stat(before[c] / "mel.h5").st_mtime_ns for c in (1, 5)} == mtimes


def test_adding_songs_computes_only_the_new_ones(tiny_corpus, tmp_path):
    audio = tmp_path / "audio"
    shutil.copytree(tiny_corpus / "genres_original" / "rock", audio / "genres_original" / "rock")
    ingest(audio, tmp_path / "store")
    store = FeatureStore(tmp_path / "store")
    store.build(audio_root=audio, clip_seconds=[1])
    old = store.tensors(clip_seconds=1)
    shutil.copy(tiny_corpus / "genres_original" / "pop" / "pop.00001.wav", audio / "genres_original" / "rock" / "rock.00003.wav")
    ingest(audio, tmp_path / "store")
    report = store.build(audio_root=audio, clip_seconds=[1])
    assert report.computed == ["rock.00003"]
    assert report.clip_lengths[1]["status"] == "built"
    new = store.tensors(clip_seconds=1)
    assert new.x.shape[0] == old.x.shape[0] + 1
    keep = new.index["song_id"].is_in(old.index["song_id"].implode()).to_numpy()
    np.testing.assert_array_equal(new.x[keep], old.x)


def test_split_change_reindexes_without_rewriting_hdf5(tiny_corpus, tmp_path):
    ingest(tiny_corpus, tmp_path)
    store = FeatureStore(tmp_path)
    store.build(audio_root=tiny_corpus, clip_seconds=[1])
    old = store.generation(1)
    spl = pl.read_parquet(tmp_path / "splits.parquet").with_columns(pl.lit("fold0").alias("stratified"))
    spl.write_parquet(tmp_path / "splits.parquet")
    report = store.build(audio_root=tiny_corpus, clip_seconds=[1])
    assert report.clip_lengths[1]["status"] == "reindexed"
    new = store.generation(1)
    assert new != old
    assert os.stat(new / "mel.h5").st_ino == os.stat(old / "mel.h5").st_ino  # hard link, not a copy
    assert set(store.clips(clip_seconds=1).collect()["stratified"]) == {"fold0"}


def test_new_params_make_a_new_store_and_leave_the_old_one(built, tiny_corpus):
    root, store, _, _ = built
    f16 = FeatureStore(root, params=FeatureParams(dtype="float16"))
    assert f16.store_dir != store.store_dir
    report = f16.build(audio_root=tiny_corpus, clip_seconds=[5])
    assert report.computed == []  # same spectral params: the song cache is shared
    x16 = f16.tensors(clip_seconds=5, dtype="float16").x
    x32 = store.tensors(clip_seconds=5).x
    assert x16.dtype == np.float16
    np.testing.assert_allclose(x16.astype(np.float32), x32, atol=0.1)
    assert (f16.generation(5) / "mel.h5").stat().st_size < 0.6 * (store.generation(5) / "mel.h5").stat().st_size
    assert store.describe()["params"]["dtype"] == "float32"


@pytest.mark.parametrize("where", ["add_encoded", "finish"])
def test_crash_mid_write_leaves_the_previous_store_intact(tiny_corpus, tmp_path, monkeypatch, where):
    """Killed after a few rows were streamed into the new HDF5 file, or while moving it in."""
    from feature_store.engine.writer import ClipWriter as _ClipWriter

    ingest(tiny_corpus, tmp_path)
    store = FeatureStore(tmp_path)
    store.build(audio_root=tiny_corpus, clip_seconds=[1])
    before = store.tensors(clip_seconds=1)
    gen = store.generation(1)
    # force a rebuild (new songs in the catalog) that dies half way through the HDF5 write
    cat = pl.read_parquet(tmp_path / "catalog.parquet")
    pl.concat([cat, cat.head(1).with_columns(pl.lit("zz.extra").alias("song_id"))]).write_parquet(tmp_path / "catalog.parquet")
    original = getattr(_ClipWriter, where)
    calls = []

    def dying(self, *args):
        calls.append(1)
        if len(calls) == (5 if where == "add_encoded" else 1):
            raise KeyboardInterrupt("killed mid-write")
        return original(self, *args)

    monkeypatch.setattr(_ClipWriter, where, dying)
    with pytest.raises(KeyboardInterrupt):
        store.build(audio_root=tiny_corpus, clip_seconds=[1])
    assert calls, "the build never reached the write"
    assert store.generation(1) == gen
    after = store.tensors(clip_seconds=1)
    np.testing.assert_array_equal(after.x, before.x)
    assert after.index.equals(before.index)
    leftovers = [p.name for p in store.clip_dir(1).iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == []
    monkeypatch.setattr(_ClipWriter, where, original)
    report = store.build(audio_root=tiny_corpus, clip_seconds=[1])
    assert report.clip_lengths[1]["clips"] == 31


def test_stale_temporaries_are_swept(built, tiny_corpus):
    root, store, _, _ = built
    stale = store.clip_dir(1) / ".tmp-gen-dead.123.abc"
    stale.mkdir()
    (stale / "mel.h5").write_bytes(b"half")
    store.build(audio_root=tiny_corpus, clip_seconds=[1])
    assert not stale.exists()


def test_a_held_lock_fails_cleanly(built, tiny_corpus):
    root, store, _, _ = built
    with store.clip_lock(1, timeout=0):
        with pytest.raises(StoreLockedError, match=rf"another build .*{clip_dirname(1)}.* \(held by pid {os.getpid()} on "):
            store.build(audio_root=tiny_corpus, clip_seconds=[1], lock_timeout=0)


def test_errors_before_ingest_and_build(tmp_path):
    store = FeatureStore(tmp_path)
    with pytest.raises(StoreError, match="run ingest first"):
        store.catalog()
    with pytest.raises(StoreError, match="build it first"):
        store.describe()
    with pytest.raises(ParameterError, match="must name at least one"):
        store.build(audio_root=tmp_path, clip_seconds=[])


def _two_genre_copy(tiny_corpus, dst):
    for g in ("rock", "jazz"):
        shutil.copytree(tiny_corpus / "genres_original" / g, dst / "genres_original" / g)
    return dst


@pytest.mark.parametrize("encoder", ["main", "workers"])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_song_changed_after_ingest_fails_alone_and_the_rest_is_published(
    tiny_corpus, tmp_path, monkeypatch, workers, encoder
):
    """Rows are streamed in a layout that assumed every song works; when one fails at the
    feature stage the clip lengths are rewritten from the cache without it."""
    import feature_store.engine.build as st

    monkeypatch.setattr(st, "WORKERS_TO_ENCODE", 1 if encoder == "workers" else 99)
    audio = _two_genre_copy(tiny_corpus, tmp_path / "audio")
    rock = audio / "genres_original" / "rock"
    shutil.copy(rock / "rock.00000.wav", rock / "rock.00009.wav")  # a repeated song
    ingest(audio, tmp_path / "store")
    (rock / "rock.00001.wav").write_bytes((rock / "rock.00001.wav").read_bytes()[:-2] + b"\x01\x02")
    (rock / "rock.00000.wav").write_bytes((rock / "rock.00000.wav").read_bytes()[:-2] + b"\x01\x02")
    store = FeatureStore(tmp_path / "store")
    report = store.build(audio_root=audio, clip_seconds=[1, 5], workers=workers)
    reasons = dict(report.failed.iter_rows())
    assert set(reasons) == {"rock.00000", "rock.00001"}
    assert all("changed since it was cataloged" in r for r in reasons.values())
    # the repeat of rock.00000 is unchanged: its content was computed from its own file
    assert "rock.00009" in report.computed
    for c, frames in ((1, 44), (5, 216)):
        t = store.tensors(clip_seconds=c)
        assert set(t.index["song_id"]) == {"rock.00002", "rock.00009", "jazz.00000", "jazz.00001", "jazz.00002"}
        for i, (sha, start) in enumerate(t.index.select("sha256", "start_frame").iter_rows()):
            full = np.load(store.cache_file(sha), allow_pickle=False)
            np.testing.assert_array_equal(t.x[i], full[:, start : start + frames])
    assert store.describe()["catalog"]["feature_failures"] == report.failed.to_dicts()


@pytest.mark.parametrize("encoder", ["main", "workers"])
@pytest.mark.parametrize("workers", [1, 2])
def test_streamed_rows_equal_a_write_from_the_cache(tiny_corpus, tmp_path, monkeypatch, encoder, workers):
    """The one-pass build (rows in arrival order, every clip length at once, compressed in
    the main process or in the workers) writes the same file content as writing each clip
    length from the cache in index order."""
    import feature_store.engine.build as st

    monkeypatch.setattr(st, "WORKERS_TO_ENCODE", 1 if encoder == "workers" else 99)
    ingest(tiny_corpus, tmp_path)
    store = FeatureStore(tmp_path, params=FeatureParams(mode="segments", dtype="float16"))
    store.build(audio_root=tiny_corpus, clip_seconds=[1, 5], workers=workers)
    assert not list(store.cache_dir.glob(".tmp-*")), "chunk files left behind"
    for c in (1, 5):
        gen = store.generation(c)
        index = pl.read_parquet(gen / "index.parquet")
        again = _write_from_cache(store, index, c, tmp_path / f"again-{c}")
        with h5py.File(gen / "mel.h5") as a, h5py.File(again / "mel.h5") as b:
            assert a["mel"].dtype == np.float16
            np.testing.assert_array_equal(a["mel"][:], b["mel"][:])
            assert list(a["clip_id"].asstr()[:]) == list(b["clip_id"].asstr()[:]) == index["clip_id"].to_list()
        assert pl.read_parquet(gen / "summary.parquet").equals(pl.read_parquet(again / "summary.parquet"))


def _write_from_cache(store, index, clip_seconds, dest):
    """Write one clip length's files from the cache, song by song in index order."""
    from feature_store.engine.cache import SongCache
    from feature_store.engine.writer import ClipWriter

    dest.mkdir()
    writer = ClipWriter(dest / ".tmp.h5", index, clip_seconds, store.view, {})
    cache = SongCache(store.cache_dir)
    for sha in index["sha256"].unique(maintain_order=True).to_list():
        entry = cache.load_entry(sha, store.view.entry_shape())
        writer.add(sha, store.view.clip_rows(entry, {clip_seconds: writer.starts(sha)})[clip_seconds])
    writer.finish(dest)
    return dest


@pytest.mark.parametrize("damage", [b"", b"not a numpy file", "truncated", "float64", "short"])
def test_an_unreadable_cache_entry_is_computed_again(tiny_corpus, tmp_path, damage):
    """Cache files are not flushed to disk (they are derived data): an entry that a power
    cut left empty or damaged is recomputed by the next build that needs it."""
    audio = _two_genre_copy(tiny_corpus, tmp_path / "audio")
    ingest(audio, tmp_path / "store")
    store = FeatureStore(tmp_path / "store")
    store.build(audio_root=audio, clip_seconds=[1], workers=1)
    good = store.tensors(clip_seconds=1)
    sha, sid = good.index.select("sha256", "song_id").row(0)
    cache = store.cache_file(sha)
    expected = np.load(cache, allow_pickle=False)
    if damage == "truncated":  # the right header, half the data
        damage = cache.read_bytes()[: 128 + expected.nbytes // 2]
    elif damage in ("float64", "short"):  # a well-formed file of the wrong kind or length
        buf = io.BytesIO()
        np.save(buf, expected.astype(np.float64) if damage == "float64" else expected[:, :100])
        damage = buf.getvalue()
    cache.write_bytes(damage)
    report = store.build(audio_root=audio, clip_seconds=[1, 5], workers=2)
    assert report.computed == [sid] and report.failed.height == 0
    np.testing.assert_array_equal(np.load(cache, allow_pickle=False), expected)
    assert report.clip_lengths[5]["status"] == "built"
    np.testing.assert_array_equal(store.tensors(clip_seconds=1).x, good.x)


def test_cache_writes_skip_fsync_but_store_files_do_not(tiny_corpus, tmp_path, monkeypatch):
    synced: list[str] = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    audio = _two_genre_copy(tiny_corpus, tmp_path / "audio")
    ingest(audio, tmp_path / "store")
    FeatureStore(tmp_path / "store").build(audio_root=audio, clip_seconds=[1], workers=1)
    assert not [p for p in synced if p.endswith(".npy") or "/cache/" in p]
    assert any(p.endswith("mel.h5") for p in synced)
    assert any(p.endswith("index.parquet") for p in synced)


@pytest.mark.parametrize("legacy", [False, True], ids=["digest", "no-digest"])
def test_an_index_that_does_not_match_its_hdf5_rows_is_a_torn_store(tiny_corpus, tmp_path, legacy):
    """Checked once per generation opened: by the writer's digest of the clip ids, or for
    files without one (older versions) by comparing the clip_id rows."""
    ingest(tiny_corpus, tmp_path)
    store = FeatureStore(tmp_path)
    store.build(audio_root=tiny_corpus, clip_seconds=[1], workers=1)
    gen = store.generation(1)
    if legacy:
        with h5py.File(gen / "mel.h5", "r+") as h5:
            del h5.attrs["index_sha256"]
    good = FeatureStore(tmp_path).tensors(clip_seconds=1)
    assert good.x.shape[0] == 30
    index = pl.read_parquet(gen / "index.parquet")
    ids = index["clip_id"].to_list()
    ids[0], ids[1] = ids[1], ids[0]
    os.chmod(gen / "index.parquet", 0o644)
    index.with_columns(pl.Series("clip_id", ids)).write_parquet(gen / "index.parquet")
    with pytest.raises(StoreError, match=r"index\.parquet is \d+ bytes, not the \d+ listed in its manifest\.json"):
        FeatureStore(tmp_path).tensors(clip_seconds=1)
    from feature_store.manifest import write_manifest

    write_manifest(gen)  # a manifest that agrees: the HDF5 rows still do not
    with pytest.raises(StoreError, match="torn store"):
        FeatureStore(tmp_path).tensors(clip_seconds=1, genre="rock")


@pytest.mark.parametrize("rows", [[], [0], [3, 4, 5], [0, 2, 3, 7, 8, 9, 19], list(range(20))])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_read_rows_reads_runs_of_rows(tmp_path, rows, dtype):
    from feature_store import h5 as h5lib
    from feature_store.engine.read import read_rows as _read_rows

    data = np.random.default_rng(0).normal(size=(20, 4, 6)).astype(dtype)
    with h5lib.h5py().File(tmp_path / "x.h5", "w") as h5:
        h5.create_dataset("mel", data=data, chunks=(1, 4, 6), **h5lib.compression())
    with h5lib.h5py().File(tmp_path / "x.h5", "r") as h5:
        got = _read_rows(h5["mel"], np.array(rows, dtype=np.int64))
    assert got.dtype == np.dtype(dtype) and got.shape == (len(rows), 4, 6)
    np.testing.assert_array_equal(got, data[rows])


def test_worker_processes_encode_chunks_on_one_blosc_thread():
    import subprocess
    import sys

    code = (
        "import numpy as np, numcodecs.blosc as b\n"
        "from feature_store.engine import codec, worker\n"
        "from feature_store.engine.view import ArraySpec\n"
        "worker.single_threaded_worker()\n"
        "codec.encode_rows([ArraySpec('mel', (4, 8), chunking='row')], {'mel': np.zeros((1, 4, 8), np.float32)})\n"
        "print(b.use_threads)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
