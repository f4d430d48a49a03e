"""Verifying a version of an index table and its shard objects, and repairing damaged shards
(feature_store/engine/lake_verify.py), on a local folder and on SeaweedFS's S3."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_shards import CLIP, SHARDS, corpus, flip, storage, today  # noqa: F401 (fixtures)
from toy_view import ToyView

from feature_store.engine.lake import Lineage
from feature_store.engine.lake_verify import repair_table, verify_table
from feature_store.engine.sharded import index_table, publish_shard, read_clips
from feature_store.engine.storage import LocalStorage
from feature_store.errors import StoreError
from feature_store.integrity import IntegrityError

LINEAGE = Lineage(params_hash="toy", code_version="test", run_id="run-1")
REPAIR = Lineage(params_hash="toy", code_version="test", run_id="repair-1")


def publish_all(corpus, storage) -> dict[int, str]:  # noqa: F811
    """Every shard published (versions 1 to SHARDS); the object key of each shard."""
    store, _ = today(corpus)
    keys = {}
    for k in range(SHARDS):
        done = publish_shard(store, storage=storage, shard=k, shards=SHARDS, clip_seconds=CLIP,
                             audio_root=corpus / "audio", task_id=f"run-1.shard-{k}", lineage=LINEAGE, workers=1)
        keys[k] = done.object_key
    return keys


def rot(storage, key: str) -> None:  # noqa: F811
    """Flip one byte of a row's chunk of the object in place, as bit rot on the disk or the
    server would: the object keeps its key and, on S3, the sha256 recorded when it was put."""
    import h5py

    data = storage.get(key)
    with h5py.File(io.BytesIO(data), "r") as h5:
        chunk = h5["frames"].id.get_chunk_info(0)
    overwrite(storage, key, flip(data, chunk.byte_offset + chunk.size // 2))


def overwrite(storage, key: str, data: bytes) -> None:  # noqa: F811
    """Replace an object's bytes in place, behind the store's back (on S3, keeping the sha256
    it was put with)."""
    if isinstance(storage, LocalStorage):
        Path(storage.uri(key)).write_bytes(data)
        return
    import obstore

    sha = storage.head(key).sha256
    assert sha is not None
    obstore.put(storage._store, key, data, attributes={"sha256": sha})


def arrays_of(storage, version=None):  # noqa: F811
    rows, got = read_clips(storage, ToyView(), clip_seconds=CLIP, version=version)
    return rows, got.arrays


def test_a_clean_table_verifies_every_object_and_row(corpus, storage):  # noqa: F811
    _, index = today(corpus)
    keys = publish_all(corpus, storage)
    check = verify_table(storage, ToyView(), clip_seconds=CLIP)
    assert check.ok and check.version == SHARDS and check.objects == () and check.table == ()
    assert check.objects_checked == len(set(keys.values())) == SHARDS
    assert check.rows_checked == index.height and check.files_checked >= SHARDS
    # an older version pins fewer objects
    first = verify_table(storage, ToyView(), clip_seconds=CLIP, version=1)
    assert first.ok and first.version == 1 and first.objects_checked == 1
    with pytest.raises(StoreError, match=r"has versions 0 to 4, not 9"):
        verify_table(storage, ToyView(), clip_seconds=CLIP, version=9)
    with pytest.raises(StoreError, match="no index table") as err:
        verify_table(storage, ToyView(), clip_seconds=5)
    assert "\n" not in str(err.value)


def test_a_flipped_byte_and_a_deleted_object_are_found_and_named(corpus, storage):  # noqa: F811
    _, index = today(corpus)
    keys = publish_all(corpus, storage)
    rot(storage, keys[1])
    storage.delete(keys[3])
    check = verify_table(storage, ToyView(), clip_seconds=CLIP)
    assert not check.ok and check.table == () and sorted(check.damaged_shards) == [1, 3]
    [rotten], [gone] = check.damaged_shards[1], check.damaged_shards[3]
    assert (rotten.key, rotten.missing, gone.key, gone.missing) == (keys[1], False, keys[3], True)
    table = index_table(storage, ToyView(), clip_seconds=CLIP).scan().collect()
    assert rotten.rows == table.filter(pl.col("shard") == 1).height > 0
    assert gone.rows == table.filter(pl.col("shard") == 3).height > 0
    # the reason is one line: a row's digest locally, the object's sha256 on S3
    assert "\n" not in rotten.reason and keys[1] in rotten.line() and "damaged" in rotten.line()
    expected = "fails its checksum" if isinstance(storage, LocalStorage) else "sha256 stored with it"
    assert expected in rotten.reason, rotten.reason
    assert gone.line() == f"object {keys[3]} ({gone.rows} rows) missing"
    # the sound objects were read in full
    assert check.objects_checked == SHARDS and check.rows_checked == index.height - rotten.rows - gone.rows
    # the reader refuses the damaged shard in one line, as before
    with pytest.raises(StoreError) as err:
        read_clips(storage, ToyView(), clip_seconds=CLIP)
    assert "\n" not in str(err.value)


def test_repair_rebuilds_damaged_shards_into_new_objects_with_the_same_rows(corpus, storage):  # noqa: F811
    store, _ = today(corpus)
    keys = publish_all(corpus, storage)
    rows_before, before = arrays_of(storage)
    rot(storage, keys[0])
    storage.delete(keys[2])
    check = verify_table(storage, ToyView(), clip_seconds=CLIP)
    assert sorted(check.damaged_shards) == [0, 2]
    done = repair_table(store, storage=storage, check=check, clip_seconds=CLIP, shards=SHARDS,
                        audio_root=corpus / "audio", lineage=REPAIR, task_prefix="repair-1", workers=1)
    assert [d.shard for d in done] == [0, 2] and [d.version for d in done] == [SHARDS + 1, SHARDS + 2]
    assert all(d.changed_rows == 0 for d in done)
    assert {d.object_key for d in done}.isdisjoint(keys.values())
    again = verify_table(storage, ToyView(), clip_seconds=CLIP)
    assert again.ok and again.version == SHARDS + 2 and again.rows_checked == rows_before.height
    rows_after, after = arrays_of(storage)
    # the same clips with the same index values and digests; bit-identical arrays
    same = [c for c in rows_before.columns if c not in ("object_key", "object_row", "run_id", "task_id")]
    assert rows_after.select(same).equals(rows_before.select(same))
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
        assert after[name].tobytes() == before[name].tobytes()
    moved = rows_after.filter(pl.col("shard").is_in([0, 2]))
    assert set(moved["object_key"]) == {d.object_key for d in done} and set(moved["run_id"]) == {"repair-1"}
    kept = rows_after.filter(~pl.col("shard").is_in([0, 2]))
    assert set(kept["object_key"]) == {keys[1], keys[3]} and set(kept["run_id"]) == {"run-1"}
    # nothing to repair now
    assert repair_table(store, storage=storage, check=again, clip_seconds=CLIP, shards=SHARDS,
                        audio_root=corpus / "audio", lineage=REPAIR, task_prefix="repair-2", workers=1) == []


def test_a_repair_that_cannot_keep_the_shards_clips_replaces_nothing(corpus, storage, monkeypatch):  # noqa: F811
    store, _ = today(corpus)
    keys = publish_all(corpus, storage)
    storage.delete(keys[1])
    check = verify_table(storage, ToyView(), clip_seconds=CLIP)
    args = {"storage": storage, "clip_seconds": CLIP, "audio_root": corpus / "audio", "lineage": REPAIR,
            "task_prefix": "repair-x", "workers": 1}
    objects = sorted(o.key for o in storage.list(""))
    # another shard count puts the shard's songs elsewhere
    with pytest.raises(StoreError, match=r"repair with the shard count it was published with") as err:
        repair_table(store, check=check, shards=SHARDS + 1, **args)
    assert "\n" not in str(err.value)
    # a check of an older version
    with pytest.raises(StoreError, match=r"is at version 4, the check was of version 2"):
        repair_table(store, check=verify_table(storage, ToyView(), clip_seconds=CLIP, version=2), shards=SHARDS,
                     **args)
    # a rebuild that lacks a clip the shard held (a song that failed this time)
    from feature_store.engine import lake_verify

    real = lake_verify.build_shard

    def short(*a, **kw):
        built = real(*a, **kw)
        return dataclasses.replace(built, rows=built.rows.tail(-1))

    monkeypatch.setattr(lake_verify, "build_shard", short)
    with pytest.raises(StoreError, match=r"rebuilding shard 1 gave 1 of its \d+ clips fewer .* nothing was replaced"):
        repair_table(store, check=check, shards=SHARDS, **args)
    assert index_table(storage, ToyView(), clip_seconds=CLIP).latest_version() == SHARDS
    assert sorted(o.key for o in storage.list("")) == objects


def test_a_damaged_table_file_is_reported_not_raised(corpus, storage):  # noqa: F811
    """A table data file with a flipped byte: its digest name (on S3, first its sha256) gives
    it away; repairing shards cannot bring its rows back, and says so in one line."""
    store, _ = today(corpus)
    publish_all(corpus, storage)
    table = index_table(storage, ToyView(), clip_seconds=CLIP)
    files = table.files()
    overwrite(table.storage, files[0].path, flip(table.storage.get(files[0].path), 40))
    check = verify_table(storage, ToyView(), clip_seconds=CLIP)
    assert not check.ok and check.objects == () and check.files_checked == len(files)
    [line] = check.table
    expected = "does not match the digest in its name" if isinstance(storage, LocalStorage) else "sha256"
    assert files[0].path in line and expected in line and "\n" not in line, line
    with pytest.raises(StoreError, match="the index table itself is damaged") as err:
        repair_table(store, storage=storage, check=check, clip_seconds=CLIP, shards=SHARDS,
                     audio_root=corpus / "audio", lineage=REPAIR, task_prefix="r", workers=1)
    assert "\n" not in str(err.value)
    with pytest.raises(IntegrityError):
        read_clips(storage, ToyView(), clip_seconds=CLIP)


def test_an_object_the_table_names_outside_its_shard_is_not_read(corpus, tmp_path):
    """Rows that name an object of another shard's folder (an edited or foreign table): the
    object is reported, never fetched, however sound it is."""
    from feature_store.engine.sharded import table_rows
    from feature_store.engine.shards import build_shard

    store, _ = today(corpus)
    storage = LocalStorage(tmp_path / "objects")
    built = build_shard(store, shard=0, shards=SHARDS, clip_seconds=CLIP, storage=storage,
                        audio_root=corpus / "audio", task_id="t0", workers=1)
    table = index_table(storage, ToyView(), clip_seconds=CLIP)
    table.commit_shard(table_rows(built.rows, table), shard=1, task_id="t0", lineage=LINEAGE)

    def fetched(key, **kw):
        raise AssertionError(f"{key} was fetched")

    storage.get = fetched  # type: ignore[method-assign]
    check = verify_table(storage, ToyView(), clip_seconds=CLIP)
    [bad] = check.objects
    assert (bad.shard, bad.key, bad.missing, bad.rows) == (1, built.object_key, False, built.rows.height)
    assert "the table names it for shard 1" in bad.reason and check.rows_checked == 0


def test_an_unreadable_object_is_listed_and_the_rest_checked(corpus, tmp_path):
    """An object the backend cannot read (an OSError: permissions, a disk error) is listed as
    damaged, and the other objects are still checked."""
    storage = LocalStorage(tmp_path / "objects")
    keys = publish_all(corpus, storage)
    real = storage.get

    def get(key, **kw):
        if key == keys[2]:
            raise PermissionError(13, "Permission denied", storage.uri(key))
        return real(key, **kw)

    storage.get = get  # type: ignore[method-assign]
    check = verify_table(storage, ToyView(), clip_seconds=CLIP)
    assert sorted(check.damaged_shards) == [2] and check.objects_checked == SHARDS
    [bad] = check.objects
    assert not bad.missing and "Permission denied" in bad.reason and check.rows_checked > 0
