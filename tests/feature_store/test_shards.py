"""Shards as the unit of work (feature_store/engine/shards.py), on a local folder and on SeaweedFS's S3."""

from __future__ import annotations

import hashlib
import io
import shutil
import uuid

import numpy as np
import polars as pl
import pytest
from toy_view import ClipToyView, ToyView

from feature_store import ingest
from feature_store.engine import shards as shards_mod
from feature_store.engine.index import read_index
from feature_store.engine.locks import held
from feature_store.engine.shards import build_shard, read_shard, shard_lock, shard_of, shards_of
from feature_store.engine.storage import LocalStorage, ObjectTooLarge
from feature_store.engine.storage.s3 import S3Config, S3Storage
from feature_store.engine.store import ViewStore
from feature_store.views import get_view
from feature_store.engine.writer import ClipWriter
from feature_store.errors import ParameterError, StoreLockedError
from feature_store.integrity import IntegrityError

SHARDS = 4
CLIP = 1


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_corpus):
    """The tiny corpus (30 songs of 6 s) ingested, and today's toy store of it built at 1 s."""
    root = tmp_path_factory.mktemp("shards")
    shutil.copytree(tiny_corpus / "genres_original", root / "audio" / "genres_original")
    ingest(root / "audio", root / "store")
    shutil.copytree(root / "store", root / "fresh")  # ingested, nothing computed
    store = ViewStore(root / "store", ToyView())
    store.build(audio_root=root / "audio", clip_seconds=[CLIP], workers=1)
    return root


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    """A fresh, empty storage of each backend (on S3: a new prefix of the session's bucket)."""
    if request.param == "local":
        return LocalStorage(tmp_path / "objects")
    server = request.getfixturevalue("s3_server")
    return S3Storage(f"s3://{server.state['bucket']}/shards-{uuid.uuid4().hex[:12]}",
                     config=S3Config.from_env(server.env))


def today(corpus) -> tuple[ViewStore, pl.DataFrame]:
    store = ViewStore(corpus / "store", ToyView())
    return store, read_index(store.generation(CLIP))


def as_today(rows: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """A shard's rows in today's index form: digests back to uint64, without the shard columns."""
    back = rows.with_columns(pl.col(c).reinterpret(signed=False) for c in rows.columns if c.startswith("xxh3_"))
    return back.select([c for c in columns if c != "hdf5_row"]).sort("clip_id")


def test_shard_of_is_the_hash_modulo_stable_and_checked(corpus):
    shas = pl.read_parquet(corpus / "store" / "catalog.parquet")["sha256"].to_list()
    for s in shas:
        assert shard_of(s, shards=SHARDS) == int(s[:16], 16) % SHARDS
    # every song in exactly one shard, whatever other songs the corpus holds
    whole = {s: shard_of(s, shards=SHARDS) for s in shas}
    assert {s: shard_of(s, shards=SHARDS) for s in shas[::-1][:7]} == {s: whole[s] for s in shas[::-1][:7]}
    assert set(whole.values()) <= set(range(SHARDS)) and len(set(whole.values())) > 1
    assert shard_of("f" * 64, shards=4096) == int("f" * 16, 16) % 4096 and shard_of("0" * 64, shards=1) == 0
    for bad, n in [("F" * 64, 4), ("a" * 63, 4), (7, 4), ("a" * 64, 0), ("a" * 64, 4097), ("a" * 64, True)]:
        with pytest.raises(ParameterError) as err:
            shard_of(bad, shards=n)
        assert "\n" not in str(err.value)
    # the vectorized form agrees, digests of 2**63 and more included
    many = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(2000)] + ["f" * 64, "0" * 64, "8" + "0" * 63]
    for n in (1, 3, 16, 1000, 4096):
        assert shards_of(pl.Series(many), shards=n).to_list() == [shard_of(s, shards=n) for s in many]
    for bad in (["A" * 64], ["a" * 65], [None]):
        with pytest.raises(ParameterError, match="not a lower-case sha256"):
            shards_of(pl.Series(bad, dtype=pl.String), shards=4)


def test_the_union_of_the_shards_is_todays_index_and_reads_back_as_todays_tensors(corpus, storage):
    store, index = today(corpus)
    results = [build_shard(store, shard=k, shards=SHARDS, clip_seconds=CLIP, storage=storage,
                           audio_root=corpus / "audio", task_id=f"run-1|shard={k}") for k in range(SHARDS)]
    assert all(r.computed == [] for r in results)  # all from the per-song cache the build filled
    # one object per shard, each under its own prefix and a unique key
    keys = [r.object_key for r in results]
    assert sorted(o.key for o in storage.list()) == sorted(keys)
    for k, r in enumerate(results):
        assert r.object_key.startswith(f"{store.view.folder}/clip-01s/shard-{k:04d}/run-1_shard=")
        assert r.object_key.endswith(".h5") and set(r.rows["object_key"]) <= {r.object_key}
        assert r.rows["object_row"].to_list() == list(range(r.rows.height))
        assert set(r.rows["shard"]) <= {k} and set(r.rows["task_id"]) <= {f"run-1|shard={k}"}
        assert r.object_bytes == storage.head(r.object_key).size
        assert r.object_sha256 == hashlib.sha256(storage.get(r.object_key)).hexdigest()
        assert all(shard_of(s, shards=SHARDS) == k for s in r.rows["sha256"])
        assert r.rows["xxh3_frames"].dtype == pl.Int64 and r.rows["xxh3_level"].dtype == pl.Int64
    union = pl.concat([r.rows for r in results])
    assert union["clip_id"].n_unique() == union.height == index.height
    # same clips, same index values, same xxh3 digests: bit-identical features
    assert as_today(union, index.columns).equals(index.drop("hdf5_row").sort("clip_id"))
    level = pl.concat([r.tables["level"] for r in results]).sort("clip_id")
    assert level.equals(pl.read_parquet(store.generation(CLIP) / "level.parquet").sort("clip_id"))
    t = store.tensors(clip_seconds=CLIP, arrays=["level", "frames"])
    by_id = {cid: i for i, cid in enumerate(t.index["clip_id"].to_list())}
    for r in results:
        got = read_shard(storage, r.object_key, view=store.view, clip_seconds=CLIP, rows=r.rows)
        pos = [by_id[c] for c in got.clip_ids]
        flat = np.concatenate([got.arrays["level"], got.arrays["frames"].reshape(len(pos), -1)], axis=1)
        np.testing.assert_array_equal(flat, t.x[pos])
    # a few rows, in any order, repeated
    r = results[0]
    some = r.rows[[2, 0, 2]] if r.rows.height > 2 else r.rows
    got = read_shard(storage, r.object_key, view=store.view, clip_seconds=CLIP, rows=some, arrays=["level"])
    np.testing.assert_array_equal(got.arrays["level"], t.x[[by_id[c] for c in some["clip_id"]], :2])


def test_a_second_run_of_a_shard_writes_a_second_object_and_overwrites_nothing(corpus, storage):
    store, _ = today(corpus)
    first = build_shard(store, shard=1, shards=SHARDS, clip_seconds=CLIP, storage=storage,
                        audio_root=corpus / "audio", task_id="t")
    before = storage.get(first.object_key)
    again = build_shard(store, shard=1, shards=SHARDS, clip_seconds=CLIP, storage=storage,
                        audio_root=corpus / "audio", task_id="t")
    assert again.object_key != first.object_key
    assert sorted(o.key for o in storage.list()) == sorted([first.object_key, again.object_key])
    assert storage.get(first.object_key) == before
    assert again.rows.drop("object_key").equals(first.rows.drop("object_key"))


def test_an_empty_shard_is_an_object_without_rows(corpus, tmp_path):
    store, _ = today(corpus)
    used = {shard_of(s, shards=4096) for s in store.catalog()["sha256"]}
    empty = next(k for k in range(4096) if k not in used)
    storage = LocalStorage(tmp_path / "objects")
    r = build_shard(store, shard=empty, shards=4096, clip_seconds=CLIP, storage=storage, audio_root=corpus / "audio",
                    task_id="e")
    assert r.rows.height == 0 and r.songs == 0 and [o.key for o in storage.list()] == [r.object_key]
    got = read_shard(storage, r.object_key, view=store.view, clip_seconds=CLIP, rows=r.rows)
    assert got.arrays["frames"].shape[0] == 0


def test_a_shard_task_computes_what_the_cache_lacks_with_the_same_digests(corpus, tmp_path):
    """A store that computed nothing yet: the shard's songs are computed (two worker processes)."""
    _, index = today(corpus)
    shutil.copytree(corpus / "fresh", tmp_path / "store")
    store = ViewStore(tmp_path / "store", ToyView())
    storage = LocalStorage(tmp_path / "objects")
    r = build_shard(store, shard=2, shards=SHARDS, clip_seconds=CLIP, storage=storage, audio_root=corpus / "audio",
                    task_id="fresh", workers=2)
    assert sorted(r.computed) == sorted(r.rows["song_id"].unique().to_list()) and r.songs > 2
    mine = index.filter(pl.col("clip_id").is_in(r.rows["clip_id"].implode()))
    assert as_today(r.rows, index.columns).equals(mine.drop("hdf5_row").sort("clip_id"))


def test_a_clip_scope_view_shards_too(corpus, tmp_path):
    """A view that computes its rows in the build's process and caches them per clip length."""
    shutil.copytree(corpus / "fresh", tmp_path / "store")
    store = ViewStore(tmp_path / "store", ClipToyView())
    store.build(audio_root=corpus / "audio", clip_seconds=[CLIP], workers=1)
    index = read_index(store.generation(CLIP))
    storage = LocalStorage(tmp_path / "objects")
    rows = pl.concat([build_shard(store, shard=k, shards=2, clip_seconds=CLIP, storage=storage,
                                  audio_root=corpus / "audio", task_id=f"c{k}").rows for k in range(2)])
    assert as_today(rows, index.columns).equals(index.drop("hdf5_row").sort("clip_id"))


def flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0xFF
    return bytes(out)


def test_a_damaged_or_foreign_object_is_a_one_line_integrity_error(corpus, storage):
    store, _ = today(corpus)
    r = build_shard(store, shard=0, shards=SHARDS, clip_seconds=CLIP, storage=storage, audio_root=corpus / "audio",
                    task_id="d")
    data = storage.get(r.object_key)
    import h5py

    with h5py.File(io.BytesIO(data), "r") as h5:
        chunk = h5["frames"].id.get_chunk_info(0)
    superblock = data.find(b"\x89HDF\r\n\x1a\n")
    assert superblock >= 512 and data.startswith(b"GTZCHNK1")  # the chunk table, then HDF5
    # a byte of a row's chunk, of the chunk table's header and of its entries: seen by a read
    # of a few rows (by the table) and by a whole read (through HDF5, which checks the chunk);
    # the superblock and the view's attributes: by a whole read (a read by the table needs neither)
    for at, whole in [(chunk.byte_offset + chunk.size // 2, False), (chunk.byte_offset + chunk.size // 2, True),
                      (8, False), (520, False), (superblock + 8, True), (data.find(b"view_hash") + 12, True)]:
        bad = f"bad/{uuid.uuid4().hex}.h5"
        storage.put_new(bad, flip(data, at))
        with pytest.raises(IntegrityError) as err:
            read_shard(storage, bad, view=store.view, clip_seconds=CLIP, rows=r.rows, whole=whole)
        assert "\n" not in str(err.value) and bad in str(err.value), at
    # the right object, but the index's digest of a row is not the row's
    wrong = r.rows.with_columns(pl.col("xxh3_frames") ^ 1)
    with pytest.raises(IntegrityError, match=r"fails its checksum"):
        read_shard(storage, r.object_key, view=store.view, clip_seconds=CLIP, rows=wrong)
    # rows the object does not hold, an object of another view or clip length
    with pytest.raises(IntegrityError, match="does not hold the clips"):
        read_shard(storage, r.object_key, view=store.view, clip_seconds=CLIP,
                   rows=r.rows.with_columns(pl.col("clip_id").reverse()))
    with pytest.raises(IntegrityError, match="rows, fewer than"):
        read_shard(storage, r.object_key, view=store.view, clip_seconds=CLIP,
                   rows=r.rows.with_columns(pl.col("object_row") + 10_000))
    with pytest.raises(IntegrityError, match="is not a 5 s object"):
        read_shard(storage, r.object_key, view=store.view, clip_seconds=5, rows=r.rows)
    with pytest.raises(ObjectTooLarge):
        read_shard(storage, r.object_key, view=store.view, clip_seconds=CLIP, rows=r.rows, max_bytes=100)
    with pytest.raises(ParameterError, match="lack the columns"):
        read_shard(storage, r.object_key, view=store.view, clip_seconds=CLIP, rows=r.rows.drop("xxh3_level"))


def test_a_writer_killed_before_its_put_leaves_no_object(corpus, storage, monkeypatch, tmp_path):
    store, _ = today(corpus)
    finish = ClipWriter.finish

    def killed(self, dest):
        finish(self, dest)  # the file is complete locally...
        raise KeyboardInterrupt  # ...and the task dies before publishing it

    monkeypatch.setattr(ClipWriter, "finish", killed)
    monkeypatch.setattr(shards_mod.tempfile, "tempdir", str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        build_shard(store, shard=3, shards=SHARDS, clip_seconds=CLIP, storage=storage, audio_root=corpus / "audio",
                    task_id="k")
    assert storage.list() == []
    assert [p.name for p in tmp_path.iterdir() if p.name != "objects"] == []  # the local file is gone too


def test_bad_arguments_are_refused_before_any_work(corpus, tmp_path):
    store, _ = today(corpus)
    storage = LocalStorage(tmp_path / "objects")
    for kw, msg in [({"shard": 4}, r"shard must be an integer in 0\.\.3"), ({"shard": -1}, "shard must be"),
                    ({"shards": 0}, r"shards must be an integer in 1\.\.4096"), ({"clip_seconds": 7}, "clip"),
                    ({"task_id": "a b"}, "task_id must be"), ({"task_id": ""}, "task_id must be")]:
        args = {"shard": 0, "shards": SHARDS, "clip_seconds": CLIP, "task_id": "x", **kw}
        with pytest.raises(ParameterError, match=msg):
            build_shard(store, storage=storage, audio_root=corpus / "audio", **args)
    assert storage.list() == []


def test_a_shard_task_waits_for_its_own_shard_only(corpus, tmp_path):
    """Tasks of other shards (and a whole build's cache lock) do not block a shard task; a second
    task of the same shard waits for the first."""
    store, _ = today(corpus)
    storage = LocalStorage(tmp_path / "objects")
    args = {"shards": SHARDS, "clip_seconds": CLIP, "storage": storage, "audio_root": corpus / "audio",
            "lock_timeout": 0}
    lock_dir = store.store_dir / ".locks"
    with held(lock_dir, shard_lock(0, shards=SHARDS), timeout=0, busy="test"), \
            held(lock_dir, "cache", timeout=0, busy="test"):
        assert build_shard(store, shard=1, task_id="other", **args).rows.height > 0
        with pytest.raises(StoreLockedError, match="cache-shard-0000-of-0004") as err:
            build_shard(store, shard=0, task_id="same", **args)
        assert "\n" not in str(err.value)
    assert [o.key.split("/")[-2] for o in storage.list()] == ["shard-0001"]


def test_the_mel_view_sharded_is_bit_identical_to_todays_build(corpus, tmp_path):
    """The default view (mel spectrograms, one compressed chunk per clip) at 5 s, computed anew."""
    shutil.copytree(corpus / "fresh", tmp_path / "store")
    store = ViewStore(tmp_path / "store", get_view("mel"))
    store.build(audio_root=corpus / "audio", clip_seconds=[5], workers=1)
    index = read_index(store.generation(5))
    fresh = ViewStore(tmp_path / "again", get_view("mel"))
    shutil.copytree(corpus / "fresh", tmp_path / "again")
    storage = LocalStorage(tmp_path / "objects")
    results = [build_shard(fresh, shard=k, shards=3, clip_seconds=5, storage=storage, audio_root=corpus / "audio",
                           task_id=f"mel-{k}", workers=1) for k in range(3)]
    assert sum(len(r.computed) for r in results) == index["song_id"].n_unique()
    rows = pl.concat([r.rows for r in results])
    assert as_today(rows, index.columns).equals(index.drop("hdf5_row").sort("clip_id"))
    t = store.tensors(clip_seconds=5, arrays=["mel"])
    by_id = {cid: i for i, cid in enumerate(t.index["clip_id"].to_list())}
    for r in results:
        got = read_shard(storage, r.object_key, view=fresh.view, clip_seconds=5, rows=r.rows)
        np.testing.assert_array_equal(got.arrays["mel"], t.x[[by_id[c] for c in got.clip_ids]])
    # the view's summary table (Parquet only, not in the objects) comes with the rows
    summary = pl.concat([r.tables["summary"] for r in results]).sort("clip_id")
    assert summary.equals(pl.read_parquet(store.generation(5) / "summary.parquet").sort("clip_id"))
