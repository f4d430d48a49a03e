"""A shard object's chunk table (feature_store/engine/chunk_table.py): a few rows read without
HDF5, in two requests, checked; an object without a table read through HDF5 as before."""

from __future__ import annotations

import io
import struct
import uuid

import numpy as np
import pytest
from test_ranged import Counting, mel_object  # noqa: F401 (fixture)
from test_shards import corpus, storage, today  # noqa: F401 (fixtures)

from feature_store.engine import chunk_table
from feature_store.engine.shards import build_shard, read_shard
from feature_store.engine.storage import LocalStorage
from feature_store.integrity import IntegrityError
from feature_store.views import get_view

MEL = get_view("mel")


def _table(data: bytes, view, clip_seconds: int) -> chunk_table.ChunkTable:
    _, _, _, nbytes = chunk_table.parse_header(data[:512], label="x", view_hash=view.hash(),
                                               clip_seconds=clip_seconds, size=len(data))
    return chunk_table.parse(data[:512], data[512:512 + nbytes], label="x", view_hash=view.hash(),
                             clip_seconds=clip_seconds, size=len(data))


def test_the_table_names_every_chunk_hdf5_stores_for_row_and_block_arrays(corpus):  # noqa: F811
    import h5py

    store, _ = today(corpus)
    objects = LocalStorage(corpus.parent / f"ct-{uuid.uuid4().hex}")
    r = build_shard(store, shard=0, shards=1, clip_seconds=1, storage=objects, audio_root=corpus / "audio",
                    task_id="t")
    data = objects.get(r.object_key)
    table = _table(data, store.view, 1)
    assert table.rows == r.rows.height == 30
    assert set(table.arrays) == {"level", "frames"}
    assert table.arrays["frames"].step == 1 and table.arrays["level"].step == 30
    with h5py.File(io.BytesIO(data), "r") as h5:
        for name, a in table.arrays.items():
            for k, e in enumerate(table.ranges(name, np.arange(a.chunks))):
                info = h5[name].id.get_chunk_info_by_coord((k * a.step, 0) + (0,) * (h5[name].ndim - 2))
                assert (int(e["offset"]), int(e["size"]), int(e["mask"])) == (
                    info.byte_offset, info.size, info.filter_mask)
        ids = h5["clip_id"].asstr()[:].tolist()
    np.testing.assert_array_equal(table.ids, chunk_table.id_digests(ids))
    # every row, by the table and through HDF5 (the same object with its table's magic zeroed)
    plain = f"plain/{uuid.uuid4().hex}.h5"
    objects.put_new(plain, b"\0" * 8 + data[8:])
    for rows in (r.rows[[0, 7, 29]], r.rows[[5]]):
        by_table = read_shard(objects, r.object_key, view=store.view, clip_seconds=1, rows=rows)
        by_hdf5 = read_shard(objects, plain, view=store.view, clip_seconds=1, rows=rows)
        for name in ("level", "frames"):
            np.testing.assert_array_equal(by_table.arrays[name], by_hdf5.arrays[name])


def test_a_few_rows_cost_two_requests_and_no_hdf5(mel_object, monkeypatch):  # noqa: F811
    storage, result = mel_object  # noqa: F811
    whole = read_shard(storage, result.object_key, view=MEL, clip_seconds=5, rows=result.rows, whole=True)
    from feature_store import h5 as h5lib

    monkeypatch.setattr(h5lib, "h5py", lambda: pytest.fail("HDF5 opened for a read by the chunk table"))
    counting = Counting(storage)
    rows = result.rows[[25, 3, 17, 3]]  # any order, a row twice
    few = read_shard(counting, result.object_key, view=MEL, clip_seconds=5, rows=rows)
    for i, at in enumerate([25, 3, 17, 3]):
        np.testing.assert_array_equal(few.arrays["mel"][i], whole.arrays["mel"][at])
    assert counting.range_calls == 2 and counting.gets == 0  # the table's block, then the three chunks
    data = storage.get(result.object_key)
    table = _table(data, MEL, 5)
    assert counting.range_bytes == 64 * 1024 + int(table.ranges("mel", np.array([3, 17, 25]))["size"].sum())
    # a backend that gives the first block with the size (S3's ranged GET): one request each
    counting = Counting(storage, starts=True)
    again = read_shard(counting, result.object_key, view=MEL, clip_seconds=5, rows=rows)
    np.testing.assert_array_equal(again.arrays["mel"], few.arrays["mel"])
    assert (counting.start_calls, counting.heads, counting.range_calls, counting.gets) == (1, 0, 1, 0)


def _rewritten(data: bytes, entries: bytes, *, fix_digest: bool = True) -> bytes:
    """``data`` with its table's entries replaced by ``entries`` (and the header's digest of the
    table made to match, unless ``fix_digest`` is False): a table that lies, consistently."""
    table = _table(data, MEL, 5)
    out = bytearray(data)
    out[512:512 + len(entries)] = entries
    if fix_digest:
        body = 512 + table.entries.nbytes + table.ids.nbytes
        struct.pack_into("<Q", out, 24, chunk_table.digest(bytes(out[512:body])))
    return bytes(out)


def test_a_damaged_or_lying_table_is_a_one_line_error_and_fetches_nothing_it_claims(mel_object, tmp_path):  # noqa: F811
    storage, result = mel_object  # noqa: F811
    data = storage.get(result.object_key)
    table = _table(data, MEL, 5)
    huge = table.entries.copy()
    huge[17] = (512, 128 * 216 * 4 + 17, 0)  # inside the object, larger than a frame of one row's bytes
    outside = table.entries.copy()
    outside["offset"][17] = len(data) - 10  # bytes past the end
    swapped = table.entries.copy()
    swapped[[3, 17]] = swapped[[17, 3]]  # two rows' chunks swapped: each row fails its digest
    cases = {
        "fails its checksum": _rewritten(data, huge.tobytes(), fix_digest=False),  # damage without a new digest
        "more bytes than its rows": _rewritten(data, huge.tobytes()),
        "outside the object": _rewritten(data, outside.tobytes()),
        "clip .* fails its checksum": _rewritten(data, swapped.tobytes()),
        "layout": b"GTZCHNK1" + struct.pack("<I", 9) + data[12:],
        "is not a 1 s object|is not a 5 s object": data[:12] + struct.pack("<I", 1) + data[16:],
    }
    damaged = LocalStorage(tmp_path / "objects")
    for match, blob in cases.items():
        key = f"bad/{uuid.uuid4().hex}.h5"
        damaged.put_new(key, blob)
        counting = Counting(damaged)
        with pytest.raises(IntegrityError, match=match) as err:
            read_shard(counting, key, view=MEL, clip_seconds=5, rows=result.rows[[3, 17]])
        assert "\n" not in str(err.value) and "lake-verify --repair" in str(err.value), match
        assert counting.range_bytes <= 64 * 1024 + 2 * 200_000, match  # never what the table claims
    # a whole read (lake-verify's) checks the table against HDF5's own chunk index and clip ids,
    # so a table that lies consistently is found even where no row of it is read by range
    key = f"bad/{uuid.uuid4().hex}.h5"
    damaged.put_new(key, _rewritten(data, swapped.tobytes()))
    with pytest.raises(IntegrityError, match="does not name chunk 3 of 'mel'"):
        read_shard(damaged, key, view=MEL, clip_seconds=5, rows=result.rows[[0]], whole=True)
    ids = bytearray(data)
    ids[512 + table.entries.nbytes] ^= 1
    struct.pack_into("<Q", ids, 24, chunk_table.digest(bytes(ids[512:512 + table.entries.nbytes + table.ids.nbytes])))
    key = f"bad/{uuid.uuid4().hex}.h5"
    damaged.put_new(key, bytes(ids))
    with pytest.raises(IntegrityError, match="clip ids are not the object's"):
        read_shard(damaged, key, view=MEL, clip_seconds=5, rows=result.rows[[0]], whole=True)
    read_shard(storage, result.object_key, view=MEL, clip_seconds=5, rows=result.rows, whole=True)
    # the index naming other clips at those rows, or rows the object does not have
    with pytest.raises(IntegrityError, match="does not hold the clips"):
        read_shard(storage, result.object_key, view=MEL, clip_seconds=5,
                   rows=result.rows[[3, 17]].with_columns(result.rows["clip_id"][[17, 3]].alias("clip_id")))
    import polars as pl

    with pytest.raises(IntegrityError, match="rows, fewer than"):
        read_shard(storage, result.object_key, view=MEL, clip_seconds=5,
                   rows=result.rows[[3]].with_columns(pl.lit(10_000, pl.Int64).alias("object_row")))


def test_a_blosc_frame_that_lies_about_its_size_is_refused_before_it_is_decoded():
    from numcodecs import blosc

    rows = np.arange(1000, dtype=np.float32)
    frame = blosc.compress(rows.tobytes(), b"lz4", 5, blosc.SHUFFLE)
    np.testing.assert_array_equal(
        chunk_table.decode_chunk(frame, nbytes=4000, mask=0, label="o", name="mel").view(np.float32), rows)
    lying = bytearray(frame)
    struct.pack_into("<I", lying, 4, 1 << 30)  # claims 1 GiB
    with pytest.raises(IntegrityError, match="claims 1073741824 bytes"):
        chunk_table.decode_chunk(bytes(lying), nbytes=4000, mask=0, label="o", name="mel")
    with pytest.raises(IntegrityError, match="not the 4000 bytes"):
        chunk_table.decode_chunk(b"\0" * 10, nbytes=4000, mask=1, label="o", name="mel")
    assert chunk_table.decode_chunk(rows.tobytes(), nbytes=4000, mask=1, label="o", name="mel").nbytes == 4000
