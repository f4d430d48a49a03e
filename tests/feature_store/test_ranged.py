"""Ranged reads (feature_store/engine/storage/ranged.py): a few clips of a shard object fetch
their chunks only, in one batch of ranges, on a local folder and on SeaweedFS's S3."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from test_shards import corpus, storage  # noqa: F401 (fixtures)

from feature_store.engine import shards as shards_mod
from feature_store.engine.shards import build_shard, chunk_ranges, read_shard
from feature_store.engine.storage import LocalStorage, ObjectTooLarge
from feature_store.engine.storage.ranged import RangedObject
from feature_store.integrity import IntegrityError
from feature_store.views import get_view


class Counting:
    """A storage that counts what is fetched through it."""

    def __init__(self, inner, *, starts=False):
        self.inner, self.gets, self.range_calls, self.range_bytes = inner, 0, 0, 0
        self.heads = self.start_calls = 0
        self.url = inner.url
        if starts:  # a backend that gives an object's first bytes and size in one request
            self.get_start = self._get_start

    def head(self, key):
        self.heads += 1
        return self.inner.head(key)

    def _get_start(self, key, *, length):
        self.start_calls += 1
        self.range_bytes += length
        return self.inner.get_start(key, length=length)

    def get(self, key, **kw):
        self.gets += 1
        return self.inner.get(key, **kw)

    def get_ranges(self, key, ranges, **kw):
        self.range_calls += 1
        self.range_bytes += sum(n for _, n in ranges)
        return self.inner.get_ranges(key, ranges, **kw)


def test_a_ranged_object_reads_like_the_bytes_and_is_bounded(storage):  # noqa: F811
    data = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    storage.put_new("blob.bin", data)
    f = RangedObject(storage, "blob.bin", block=4096)
    for at, n in [(0, 10), (4090, 20), (299_990, 50), (123_456, 70_000)]:
        f.seek(at)
        assert f.read(n) == data[at : at + n]
    f.seek(0, 2)
    assert f.tell() == len(data) and f.read(5) == b""
    before = f.requests
    f.prefetch([(200_000, 10), (250_000, 10), (290_000, 10)])
    assert f.requests == before + 1  # three ranges, one request
    with pytest.raises(ObjectTooLarge):
        RangedObject(storage, "blob.bin", max_bytes=10_000).read(20_000)


@pytest.fixture(scope="module")
def mel_object(corpus, tmp_path_factory):  # noqa: F811
    """One shard object of the mel view at 5 s: 30 clips of 128 x 216 float32, one chunk each."""
    root = tmp_path_factory.mktemp("ranged")
    shutil.copytree(corpus / "fresh", root / "store")
    from feature_store.engine.store import ViewStore

    store = ViewStore(root / "store", get_view("mel"))
    objects = LocalStorage(root / "objects")
    result = build_shard(store, shard=0, shards=1, clip_seconds=5, storage=objects, audio_root=corpus / "audio",
                         task_id="mel-0", workers=1)
    return objects, result


def test_a_few_clips_fetch_their_chunks_only_and_read_as_the_whole_object(mel_object, monkeypatch):
    storage, result = mel_object  # noqa: F811
    rows = result.rows[[3, 17, 25]]
    whole = read_shard(storage, result.object_key, view=get_view("mel"), clip_seconds=5, rows=result.rows)
    counting = Counting(storage)
    few = read_shard(counting, result.object_key, view=get_view("mel"), clip_seconds=5, rows=rows)
    for i, at in enumerate([3, 17, 25]):
        np.testing.assert_array_equal(few.arrays["mel"][i], whole.arrays["mel"][at])
    assert few.clip_ids == rows["clip_id"].to_list()
    size = storage.head(result.object_key).size
    assert counting.gets == 0 and counting.range_bytes < size / 4
    assert counting.range_calls <= 8  # metadata blocks, then every chunk wanted in one batch
    # more rows than a lookup: one whole read (its sha256 checked where the backend records one)
    counting = Counting(storage)  # a reader that asks for the whole object (lake-verify) gets it whole
    read_shard(counting, result.object_key, view=get_view("mel"), clip_seconds=5, rows=rows, whole=True)
    assert (counting.gets, counting.range_calls) == (1, 0)
    monkeypatch.setattr(shards_mod, "RANGED_MAX_ROWS", 2)
    counting = Counting(storage)
    read_shard(counting, result.object_key, view=get_view("mel"), clip_seconds=5, rows=rows)
    assert (counting.gets, counting.range_calls) == (1, 0)


def test_a_damaged_chunk_read_by_range_is_a_one_line_integrity_error(mel_object, tmp_path):
    import io

    import h5py

    storage, result = mel_object  # noqa: F811
    data = bytearray(storage.get(result.object_key))
    with h5py.File(io.BytesIO(bytes(data)), "r") as h5:
        (offset, length), = chunk_ranges([h5["mel"]], np.array([17]))
    data[offset + length // 2] ^= 0xFF
    damaged = LocalStorage(tmp_path / "objects")
    damaged.put_new(result.object_key, bytes(data))
    with pytest.raises(IntegrityError) as err:
        read_shard(damaged, result.object_key, view=get_view("mel"), clip_seconds=5, rows=result.rows[[17]])
    assert "\n" not in str(err.value) and "lake-verify --repair" in str(err.value)
    # the clips beside it are still read, right
    ok = read_shard(damaged, result.object_key, view=get_view("mel"), clip_seconds=5, rows=result.rows[[3]])
    assert ok.clip_ids == [result.rows["clip_id"][3]]
