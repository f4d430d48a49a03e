"""Training from a version of an index table (training/lake_feed.py, training/table_train.py).

The tiny demo corpus (10 labels x 3 songs x 6 s) is ingested, and its timbre view at 5 s is
published as 4 shards into a local object folder, one commit each (versions 1 to 4).
"""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import polars as pl
import pytest

from feature_store import ingest
from feature_store.engine.lake import Lineage
from feature_store.engine.sharded import index_table, publish_shard, read_clips
from feature_store.engine.storage import LocalStorage
from feature_store.engine.store import ViewStore
from feature_store.errors import ParameterError
from feature_store.integrity import IntegrityError
from training.lake_feed import ShardFeed, table_feed
from training.predict import Predictor
from training.record import RunRecord
from training.report import _setup_lines
from training.table_train import train_from_table
from training.views import training_view

SHARDS = 4
CLIP = 5
LINEAGE = Lineage(params_hash="timbre", code_version="test", run_id="run-1")


def view():
    return training_view("timbre").engine


def publish(root, storage, k: int) -> int:
    store = ViewStore(root / "store", view())
    done = publish_shard(store, storage=storage, shard=k, shards=SHARDS, clip_seconds=CLIP,
                         audio_root=root / "audio", task_id=f"run-1.shard-{k}", lineage=LINEAGE, workers=1)
    return done.version


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_corpus):
    """The tiny corpus ingested, every shard published (versions 1..4) into ``objects``."""
    root = tmp_path_factory.mktemp("lake_feed")
    shutil.copytree(tiny_corpus / "genres_original", root / "audio" / "genres_original")
    ingest(root / "audio", root / "store")
    storage = LocalStorage(root / "objects")
    assert [publish(root, storage, k) for k in range(SHARDS)] == [1, 2, 3, 4]
    return root


def objects(corpus):
    return LocalStorage(corpus / "objects")


def epoch_clips(feed: ShardFeed, epoch: int) -> list[tuple[np.ndarray, int, str]]:
    return list(feed.clip_stream(epoch))


def test_every_clip_of_the_version_once_per_epoch_with_its_label_and_arrays(corpus):
    storage = objects(corpus)
    feed, pin = table_feed(storage=storage, view=view(), clip_seconds=CLIP, scheme="seed", parts=["train"],
                           buffer=4, batch_size=5, seed=3)
    assert pin.version == 4 and pin.digest == index_table(storage, view(), clip_seconds=CLIP).version_digest(4)
    rows, arrays = read_clips(storage, view(), clip_seconds=CLIP, scheme="seed", parts=["train"])
    want = dict(zip(rows["clip_id"].to_list(), arrays.arrays["timbre"], strict=True))
    genre = dict(zip(rows["clip_id"].to_list(), rows["genre"].to_list(), strict=True))
    assert feed.labels == sorted(set(genre.values())) and len(feed.object_keys) == SHARDS and feed.clips == rows.height
    orders = []
    for epoch in (0, 1):
        got = epoch_clips(feed, epoch)
        ids = [c for _, _, c in got]
        assert Counter(ids) == Counter(list(want))  # every training clip, exactly once
        for x, y, c in got:
            np.testing.assert_array_equal(x, want[c].reshape(-1))
            assert feed.labels[y] == genre[c]
        orders.append(ids)
    assert orders[0] != orders[1]  # another epoch, another order
    assert feed.stats.objects_fetched == {k: 2 for k in feed.object_keys}  # each object once per epoch
    # batches: the same clips, (x, y) of at most batch_size
    batches = list(feed.batches())
    assert [len(y) for _, y in batches] == [5] * (rows.height // 5) + ([rows.height % 5] if rows.height % 5 else [])
    assert all(x.shape[1:] == feed.input_shape == (want[c].size,) and x.dtype == np.float32 for x, _ in batches
               for c in list(want)[:1])
    assert Counter(np.concatenate([y for _, y in batches]).tolist()) == Counter(
        feed.labels.index(g) for g in genre.values())


def test_shards_are_visited_in_an_order_seeded_by_seed_and_epoch(corpus):
    storage = objects(corpus)
    key_of = dict(read_clips(storage, view(), clip_seconds=CLIP)[0].select("clip_id", "object_key").iter_rows())
    seen = {}
    for seed in (0, 1):
        feed, _ = table_feed(storage=storage, view=view(), clip_seconds=CLIP, buffer=1, seed=seed)
        # a buffer of one clip does not mix: the clips come object by object, in the shard order
        visited = list(dict.fromkeys(key_of[c] for _, _, c in feed.clip_stream(0)))
        assert visited == feed.shard_order(0) and sorted(visited) == feed.object_keys
        seen[seed] = visited
        assert feed.shard_order(0) == table_feed(storage=storage, view=view(), clip_seconds=CLIP,
                                                 seed=seed)[0].shard_order(0)  # the same seed, the same order
    assert seen[0] != seen[1]


def test_memory_holds_at_most_the_buffer_and_one_object(corpus):
    storage = objects(corpus)
    feed, _ = table_feed(storage=storage, view=view(), clip_seconds=CLIP, buffer=3, batch_size=2)
    per_object = read_clips(storage, view(), clip_seconds=CLIP)[0]["object_key"].value_counts()["count"]
    n = sum(len(y) for _, y in feed.batches())
    assert n == per_object.sum()
    s = feed.stats
    assert s.peak_objects_held == 1 and s.peak_rows_buffered == 3
    assert 3 < s.peak_rows_held <= 3 + per_object.max()


def test_a_pinned_version_does_not_see_later_commits(corpus, tmp_path):
    root = tmp_path
    shutil.copytree(corpus / "audio", root / "audio")
    shutil.copytree(corpus / "store", root / "store")  # its per-song cache: nothing is computed again
    storage = LocalStorage(root / "objects")
    assert [publish(root, storage, k) for k in (0, 1)] == [1, 2]
    early, pin = table_feed(storage=storage, view=view(), clip_seconds=CLIP)
    assert pin.version == 2
    assert [publish(root, storage, k) for k in (2, 3)] == [3, 4]
    two = read_clips(storage, view(), clip_seconds=CLIP, version=2)[0]
    assert sorted(c for _, _, c in early.clip_stream(0)) == sorted(two["clip_id"].to_list())
    again, pin2 = table_feed(storage=storage, view=view(), clip_seconds=CLIP, version=2)
    assert pin2 == pin and sorted(c for _, _, c in again.clip_stream(0)) == sorted(two["clip_id"].to_list())
    newest, pin4 = table_feed(storage=storage, view=view(), clip_seconds=CLIP)
    assert pin4.version == 4 and pin4.digest != pin.digest and newest.clips > early.clips == two.height
    assert set(two["shard"]) == {0, 1}


def test_a_damaged_object_is_a_one_line_integrity_error(corpus, tmp_path):
    storage = LocalStorage(tmp_path / "objects")
    shutil.copytree(corpus / "objects", tmp_path / "objects", dirs_exist_ok=True)
    feed, _ = table_feed(storage=storage, view=view(), clip_seconds=CLIP, buffer=2)
    key = feed.shard_order(0)[1]
    data = bytearray(storage.get(key))
    import io

    import h5py

    with h5py.File(io.BytesIO(bytes(data)), "r") as h5:  # a byte in the middle of a row's chunk
        chunk = next(h5[n] for n in h5 if n != "clip_id" and h5[n].chunks).id.get_chunk_info(0)
    data[chunk.byte_offset + chunk.size // 2] ^= 0xFF
    storage.delete(key)
    storage.put_new(key, bytes(data))
    with pytest.raises(IntegrityError) as err:
        list(feed.batches())
    assert "\n" not in str(err.value) and key in str(err.value)


def test_bad_feed_parameters_are_one_line_errors(corpus):
    storage = objects(corpus)
    rows = index_table(storage, view(), clip_seconds=CLIP).scan().collect()
    for kwargs in ({"buffer": 0}, {"batch_size": True}, {"seed": 1.5}, {"arrays": ["nope"]}, {"labels": ["blues"]}):
        with pytest.raises(ParameterError) as err:
            ShardFeed(storage=storage, view=view(), clip_seconds=CLIP, rows=rows, **kwargs)
        assert "\n" not in str(err.value)


def test_a_model_trained_from_a_table_version_records_it(corpus, tmp_path):
    storage = objects(corpus)
    table = index_table(storage, view(), clip_seconds=CLIP)
    run = train_from_table(storage=str(corpus / "objects"), model_root=tmp_path / "m", model="timbre_logreg",
                           clip_seconds=CLIP, version=4)
    assert (run.table_uri, run.table_version, run.table_digest) == (table.uri, 4, table.version_digest(4))
    assert run.train_clips + run.test_clips == table.scan(version=4).collect().height == 30
    loaded = RunRecord.load(run.run_dir)
    assert (loaded.table_uri, loaded.table_version, loaded.table_digest) == (table.uri, 4, run.table_digest)
    assert run.store_root == f"{table.uri}@v4" and 0.0 <= run.metrics.song_accuracy <= 1.0
    # the same version again: the same digest; an earlier version: another
    same = train_from_table(storage=storage, model_root=tmp_path / "m2", model="timbre_logreg", clip_seconds=CLIP)
    assert (same.table_version, same.table_digest) == (4, run.table_digest)
    earlier = train_from_table(storage=storage, model_root=tmp_path / "m3", model="timbre_logreg", clip_seconds=CLIP,
                               version=3)
    assert earlier.table_version == 3 and earlier.table_digest not in (run.table_digest, None)
    assert earlier.train_clips + earlier.test_clips == table.scan(version=3).collect().height < 30
    # each version's run has a folder of its own: one of version 3 never replaces one of version 4
    both = train_from_table(storage=storage, model_root=tmp_path / "m", model="timbre_logreg", clip_seconds=CLIP,
                            version=3)
    assert (run.variant, both.variant) == ("table-v4", "table-v3") and both.run_dir != run.run_dir
    assert RunRecord.load(run.run_dir).table_version == 4
    # the report and prediction show it, one line each
    line = f"table {table.uri} version 4 ({run.table_digest})"
    assert [x for x in _setup_lines([loaded]) if x.startswith("**Table versions:**")] == [f"**Table versions:** {line}."]
    assert Predictor(run.run_dir).describe()["table"] == line


def test_runs_from_a_store_folder_write_and_show_no_table(corpus):
    record = RunRecord.from_dict({**_minimal_record(), "model": "timbre_logreg"})
    assert record.table_version is None and record.table_line() is None
    d = record.to_dict()
    assert not {"table_uri", "table_version", "table_digest"} & set(d)
    assert not [x for x in _setup_lines([record]) if "Table" in x]


def test_a_table_of_no_such_version_or_a_model_that_needs_a_store_table_is_refused(corpus, tmp_path):
    from feature_store.errors import StoreError

    with pytest.raises(StoreError, match="versions 0 to 4, not 9"):
        train_from_table(storage=objects(corpus), model_root=tmp_path, model="timbre_logreg", clip_seconds=CLIP,
                         version=9)
    with pytest.raises(ParameterError, match="not both"):
        train_from_table(storage=objects(corpus), model_root=tmp_path, model="timbre_logreg", clip_seconds=CLIP,
                         version=1, as_of="2026-01-01T00:00:00Z")


def _minimal_record() -> dict:
    metrics = {"song_accuracy": 0.5}
    costs = {"parameters": 1, "model_mb": 0.0, "train_seconds": 0.0, "seconds_per_epoch": 0.0, "epochs_run": 1,
             "best_epoch": 1, "peak_rss_mb": 1.0, "inference_ms_per_clip": 0.0}
    return {"family": "vector", "view": "timbre", "variant": "", "trainer": "sklearn", "clip_seconds": 5, "seed": 0,
            "config": {"scheme": "seed"}, "feature_params": {"mode": "first"}, "params_hash": "h", "layout": "vector",
            "frames": 1, "labels": ["a", "b"], "store_root": "/s", "test_store_root": None, "held_out": "seed:test",
            "train_clips": 1, "train_songs": 1, "valid_clips": 0, "valid_songs": 0, "test_clips": 1, "test_songs": 1,
            "streamed": False, "songs": {}, "metrics": metrics, "history": {}, "costs": costs}


def test_the_dataset_wrapper_gives_the_same_batches(corpus):
    storage = objects(corpus)
    feed, _ = table_feed(storage=storage, view=view(), clip_seconds=CLIP, buffer=4, batch_size=8, seed=2)
    want = list(feed.batches(0))
    feed.epoch = 0
    got = [(x.numpy(), y.numpy()) for x, y in feed.dataset()]
    assert len(got) == len(want)
    for (gx, gy), (wx, wy) in zip(got, want, strict=True):
        np.testing.assert_array_equal(gx, wx)
        np.testing.assert_array_equal(gy, wy)
    assert feed.epoch == 1 and pl.Series(np.concatenate([y for _, y in got])).len() == feed.clips


def test_as_of_pins_the_last_version_at_that_time(corpus, tmp_path):
    table = index_table(objects(corpus), view(), clip_seconds=CLIP)
    third = next(v for v in table.history() if v.version == 3)
    run = train_from_table(storage=objects(corpus), model_root=tmp_path, model="timbre_logreg", clip_seconds=CLIP,
                           as_of=third.timestamp)
    assert (run.table_version, run.table_digest) == (3, table.version_digest(3))


def test_a_keras_model_trains_from_a_table_version_of_the_mel_view(corpus, tmp_path):
    from training.config import TrainConfig

    mel = training_view("mel").engine
    storage = LocalStorage(tmp_path / "objects")
    for k in range(2):
        publish_shard(ViewStore(corpus / "store", mel), storage=storage, shard=k, shards=2, clip_seconds=1,
                      audio_root=corpus / "audio", task_id=f"mel.{k}", lineage=LINEAGE, workers=1)
    run = train_from_table(storage=storage, model_root=tmp_path / "m", model="cnn", clip_seconds=1,
                           config=TrainConfig(epochs=1, batch_size=8))
    table = index_table(storage, mel, clip_seconds=1)
    assert (run.table_version, run.table_digest) == (2, table.version_digest(2)) and not run.streamed
    assert run.train_clips + run.test_clips == 30 and run.history["loss"]
