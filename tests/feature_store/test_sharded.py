"""Shard tasks end to end (feature_store/engine/sharded.py): each shard built into one object
and committed to the index table of its view, on a local folder and on SeaweedFS's S3; a new
reader's query of one version reads today's arrays back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from test_shards import CLIP, SHARDS, corpus, storage, today  # noqa: F401 (fixtures)
from toy_view import ToyView

from feature_store.engine.lake import Lineage
from feature_store.engine.sharded import index_table, publish_shard, read_clips, table_rows, unreferenced_objects
from feature_store.engine.shards import build_shard, shards_of
from feature_store.integrity import IntegrityError

LINEAGE = Lineage(params_hash="toy", code_version="test", run_id="run-1")


def publish(corpus, storage, k: int, task: str | None = None):
    store, _ = today(corpus)
    return publish_shard(store, storage=storage, shard=k, shards=SHARDS, clip_seconds=CLIP,
                         audio_root=corpus / "audio", task_id=task or f"run-1.shard-{k}", lineage=LINEAGE, workers=1)


def test_shards_committed_then_queried_by_a_new_reader_give_todays_arrays(corpus, storage):  # noqa: F811
    store, index = today(corpus)
    done = [publish(corpus, storage, k) for k in range(SHARDS)]
    assert all(d.committed for d in done) and [d.version for d in done] == [1, 2, 3, 4]
    assert sum(d.rows for d in done) == index.height
    # a retried task adds no row, and its new object is deleted at once
    again = publish(corpus, storage, 2)
    assert not again.committed and again.rows == 0 and again.object_key is None
    assert sorted(o.key for o in storage.list("") if o.key.endswith(".h5")) == sorted(d.object_key for d in done)
    # a new reader: one label, the held-out part, the newest version
    label = int(index["label"][0])
    rows, got = read_clips(storage, ToyView(), clip_seconds=CLIP, labels=[label], scheme="seed", parts=["test"])
    want = index.filter((pl.col("label") == label) & (pl.col("seed") == "test")).sort("clip_id")
    assert rows["clip_id"].to_list() == want["clip_id"].to_list() and rows.height > 0
    t = store.tensors(clip_seconds=CLIP, arrays=["level", "frames"])
    pos = [t.index["clip_id"].to_list().index(c) for c in rows["clip_id"]]
    flat = np.concatenate([got.arrays["level"], got.arrays["frames"].reshape(len(pos), -1)], axis=1)
    np.testing.assert_array_equal(flat, t.x[pos])
    # time travel: the version after two shards holds exactly those shards' rows
    two = read_clips(storage, ToyView(), clip_seconds=CLIP, version=2)[0]
    assert set(two["shard"]) == {0, 1} and two.height == done[0].rows + done[1].rows
    history = index_table(storage, ToyView(), clip_seconds=CLIP).history()
    assert [v.task_id for v in history][-SHARDS:] == [f"run-1.shard-{k}" for k in range(SHARDS)]
    assert history[-1].total_rows == index.height and {v.run_id for v in history[-SHARDS:]} == {"run-1"}
    assert unreferenced_objects(storage, ToyView(), clip_seconds=CLIP) == []


def test_an_object_no_commit_names_is_listed_for_deletion_and_a_damaged_one_is_refused(corpus, storage):  # noqa: F811
    store, _ = today(corpus)
    kept = publish(corpus, storage, 0)
    # a task killed between its put and its commit: an object no version references
    orphan = build_shard(store, shard=1, shards=SHARDS, clip_seconds=CLIP, storage=storage,
                         audio_root=corpus / "audio", task_id="run-2.shard-1", workers=1)
    later = datetime.now(UTC) + timedelta(hours=2)
    assert unreferenced_objects(storage, ToyView(), clip_seconds=CLIP, retention_hours=1, now=later) == [
        orphan.object_key]
    assert read_clips(storage, ToyView(), clip_seconds=CLIP)[0]["object_key"].unique().to_list() == [kept.object_key]
    # the committed object swapped for another shard's bytes: refused in one line
    storage.delete(kept.object_key)
    storage.put_new(kept.object_key, storage.get(orphan.object_key))
    with pytest.raises(IntegrityError) as err:
        read_clips(storage, ToyView(), clip_seconds=CLIP)
    assert "\n" not in str(err.value)


def test_a_published_shard_is_never_added_twice(corpus, storage):  # noqa: F811
    """The table only appends: a shard published by one task is left alone by another, and
    refused in one line when the songs it would hold are no longer those published."""
    from feature_store.errors import StoreError

    first = publish(corpus, storage, 0)
    other = publish(corpus, storage, 0, task="run-2.shard-0")
    assert first.committed and not other.committed and other.rows == 0 and other.object_key is None
    assert "published before" in other.note
    assert read_clips(storage, ToyView(), clip_seconds=CLIP)[0].height == first.rows
    assert [o.key for o in storage.list("") if o.key.endswith(".h5")] == [first.object_key]
    store, _ = today(corpus)
    with pytest.raises(StoreError, match="pass replace") as err:  # another shard count: other songs
        publish_shard(store, storage=storage, shard=0, shards=3, clip_seconds=CLIP, audio_root=corpus / "audio",
                      task_id="run-3.shard-0", lineage=LINEAGE, workers=1)
    assert "\n" not in str(err.value)


def test_a_shard_whose_songs_changed_is_replaced_in_one_commit(corpus, storage):  # noqa: F811
    """With replace, a shard whose songs changed (here: by another shard count) is rebuilt into
    a new object and its rows replaced in one commit; the version before still reads the old
    rows from the old object."""
    store, _ = today(corpus)
    first = publish(corpus, storage, 0)
    table = index_table(storage, ToyView(), clip_seconds=CLIP)

    def replace(task: str):
        return publish_shard(store, storage=storage, shard=0, shards=3, clip_seconds=CLIP,
                             audio_root=corpus / "audio", task_id=task, lineage=LINEAGE, workers=1, replace=True)

    done = replace("run-3.shard-0")
    assert done.committed and done.version == first.version + 1 and done.object_key != first.object_key
    rows, arrays = read_clips(storage, ToyView(), clip_seconds=CLIP)
    assert rows.height == done.rows and rows["clip_id"].n_unique() == rows.height
    assert rows["object_key"].unique().to_list() == [done.object_key]
    ok = store.catalog().filter(pl.col("status") == "ok")
    assert set(rows["song_id"]) <= set(ok.filter(shards_of(ok["sha256"], shards=3) == 0)["song_id"])
    t = store.tensors(clip_seconds=CLIP, arrays=["level"])
    pos = [t.index["clip_id"].to_list().index(c) for c in rows["clip_id"]]
    np.testing.assert_array_equal(arrays.arrays["level"], t.x[pos])
    # the version before still reads the old rows, from the old object
    old, old_arrays = read_clips(storage, ToyView(), clip_seconds=CLIP, version=first.version)
    assert old["object_key"].unique().to_list() == [first.object_key] and old.height == first.rows
    assert old_arrays.arrays["level"].shape[0] == first.rows and set(old["song_id"]) != set(rows["song_id"])
    last = table.history()[-1]
    assert (last.version, last.operation, last.rows_added, last.rows_removed) == (done.version, "REPLACE",
                                                                                  done.rows, first.rows)
    # retried: nothing added, and no object left behind
    again = replace("run-3.shard-0")
    assert not again.committed and table.latest_version() == done.version
    assert sorted(o.key for o in storage.list("") if o.key.endswith(".h5")) == sorted(
        [first.object_key, done.object_key])


def test_vacuum_deletes_an_unreferenced_object_only_once_it_is_old(corpus, storage):  # noqa: F811
    """An object put and not yet committed (a publish in flight) looks unreferenced: its age
    keeps it until the retention has passed; a referenced object is kept at any age."""
    store, _ = today(corpus)
    kept = publish(corpus, storage, 0)
    in_flight = build_shard(store, shard=1, shards=SHARDS, clip_seconds=CLIP, storage=storage,
                            audio_root=corpus / "audio", task_id="run-2.shard-1", workers=1)

    def listed(**kw):
        return unreferenced_objects(storage, ToyView(), clip_seconds=CLIP, **kw)

    assert listed() == [] and listed(retention_hours=0) == []  # new: a publish may be about to commit it
    week = datetime.now(UTC) + timedelta(days=8)
    assert listed(now=week) == [in_flight.object_key]  # older than the default retention
    assert listed(retention_hours=24, now=datetime.now(UTC) + timedelta(hours=23)) == []
    assert listed(retain_versions=1, retention_hours=0, now=datetime.now(UTC) + timedelta(days=400)) == [
        in_flight.object_key]  # the referenced object, however old, never
    # committed after all: referenced now, so never listed
    table = index_table(storage, ToyView(), clip_seconds=CLIP)
    table.commit_shard(table_rows(in_flight.rows, table), shard=1, task_id="run-2.shard-1", lineage=LINEAGE)
    assert listed(now=week) == [] and kept.object_key not in listed(now=week)


def _publish_in_child(corpus: str, url: str, env: dict | None, task: str) -> tuple[bool, str]:
    from pathlib import Path

    from feature_store.engine.storage import LocalStorage
    from feature_store.engine.storage.s3 import S3Config, S3Storage

    storage = LocalStorage(url) if env is None else S3Storage(url, config=S3Config.from_env(env))
    done = publish(Path(corpus), storage, 2, task=task)
    return done.committed, done.note


def test_two_builds_of_a_shard_racing_from_processes_commit_once(corpus, storage, request):  # noqa: F811
    """Two runs (other task ids) build shard 2 at once in two processes: one commits, the other
    adds nothing, says so in one line, and deletes its object."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    env = None if storage.storage_options() == {} else request.getfixturevalue("s3_server").env
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        futures = [pool.submit(_publish_in_child, str(corpus), storage.url, env, f"run-{r}.shard-2") for r in "ab"]
        results = [f.result(timeout=300) for f in futures]
    assert sorted(ok for ok, _ in results) == [False, True]
    note = next(n for ok, n in results if not ok)
    assert ("already published" in note or "published before" in note) and "\n" not in note
    rows = read_clips(storage, ToyView(), clip_seconds=CLIP)[0]
    assert rows.height > 0 and rows["clip_id"].n_unique() == rows.height and set(rows["shard"]) == {2}
    assert [o.key for o in storage.list("") if o.key.endswith(".h5")] == rows["object_key"].unique().to_list()


def test_a_finished_build_compacts_each_label_into_a_file_per_split_part_with_the_same_rows(corpus, storage):  # noqa: F811
    from collections import Counter

    from feature_store.engine.sharded import compact_table

    for k in range(SHARDS):
        publish(corpus, storage, k)
    table = index_table(storage, ToyView(), clip_seconds=CLIP)
    before = table.scan().collect().sort("clip_id")
    assert max(Counter(f.label for f in table.files()).values()) > 1  # one file per shard of a label
    version = compact_table(storage, ToyView(), clip_seconds=CLIP)
    assert version == table.latest_version() and table.history()[-1].operation == "COMPACT"
    parts = before.group_by("label").agg(pl.col("seed").n_unique()).rows()
    assert sorted(Counter(f.label for f in table.files()).items()) == sorted(parts)
    assert all(f.stats["seed"][0] == f.stats["seed"][1] for f in table.files())  # each file one part
    assert table.scan().collect().sort("clip_id").equals(before)
    assert compact_table(storage, ToyView(), clip_seconds=CLIP) is None  # nothing left to compact
