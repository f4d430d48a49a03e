"""Keras runs that stream a table version (training/table_source.py): whole shard objects.

The tiny demo corpus (10 labels x 3 songs x 6 s) is ingested, and its mel view at 1 s is
published as 3 shards into a local object folder.
"""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest

from feature_store import ingest
from feature_store.engine.lake import Lineage
from feature_store.engine.sharded import publish_shard
from feature_store.engine.storage import LocalStorage
from feature_store.engine.store import ViewStore
from training.config import TrainConfig
from training.feeding import make_source
from training.normalizer import BandNormalizer
from training.table_source import ShardFeeder, shard_feeder
from training.table_train import open_table, train_from_table
from training.views import training_view

SHARDS = 3
LINEAGE = Lineage(params_hash="mel", code_version="test", run_id="run-1")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_corpus):
    root = tmp_path_factory.mktemp("table_source")
    shutil.copytree(tiny_corpus / "genres_original", root / "audio" / "genres_original")
    ingest(root / "audio", root / "store")
    store, storage = ViewStore(root / "store", training_view("mel").engine), LocalStorage(root / "objects")
    for k in range(SHARDS):
        publish_shard(store, storage=storage, shard=k, shards=SHARDS, clip_seconds=1, audio_root=root / "audio",
                      task_id=f"mel.{k}", lineage=LINEAGE, workers=1)
    return root


def table(corpus):
    return open_table(storage=LocalStorage(corpus / "objects"), view=training_view("mel").engine, clip_seconds=1)


def test_a_pass_in_order_fetches_each_object_once_and_reads_the_same_clips_as_memory(corpus):
    store = table(corpus)
    index = store.clips(clip_seconds=1).collect()
    view = training_view("mel")
    streamed = make_source(view, store, index, clip_seconds=1, stream=True)
    memory = make_source(view, store, index, clip_seconds=1, stream=False)
    x = np.concatenate(list(streamed.chunks(np.arange(len(streamed)), size=7)))
    objects = set(store.version_rows["object_key"].to_list())
    assert streamed.reader.fetches == dict.fromkeys(objects, 1) and len(objects) == SHARDS
    # the same clips, bit for bit, once each, in object order instead of clip order
    by_id = dict(zip(memory.index["clip_id"].to_list(), memory.x, strict=True))
    ids = streamed.index["clip_id"].to_list()
    assert sorted(ids) == sorted(by_id) and len(ids) == 30
    assert all(np.array_equal(x[i], by_id[c]) for i, c in enumerate(ids))
    assert streamed.y.tolist() == [int(streamed.index["label"][i]) for i in range(len(ids))]
    # random access still answers right, fetching again as it must
    pos = np.array([len(ids) - 1, 0, 5])
    assert np.array_equal(streamed.read(pos), x[pos])


def test_shard_feeder_batches_every_training_clip_once_per_epoch_with_its_label(corpus):
    store = table(corpus)
    index = store.clips(clip_seconds=1).collect()
    labels = sorted(set(index["genre"].to_list()))
    src = make_source(training_view("mel"), store, index, clip_seconds=1, stream=True)
    normalizer = BandNormalizer.fit_chunks(src.chunks(np.arange(len(src))))
    feed = shard_feeder(store, index, labels=labels, source=src, positions=np.arange(len(src)),
                        normalizer=normalizer, layout="mels_frames_1", n_classes=len(labels), batch_size=4, seed=3)
    assert isinstance(feed, ShardFeeder) and feed.n_batches == 8  # 30 clips in batches of 4
    for epoch in range(2):
        batches = list(feed.batches())
        assert len(batches) == feed.n_batches
        y = np.concatenate([b[1] for b in batches])
        assert y.shape == (30, len(labels)) and np.all(y.sum(axis=1) == 1)
        assert Counter(y.argmax(axis=1).tolist()) == Counter(labels.index(g) for g in index["genre"].to_list())
        assert feed.shard_feed.stats.objects_fetched == dict.fromkeys(feed.shard_feed.object_keys, epoch + 1)
    assert feed.shard_feed.stats.peak_objects_held == 1


def test_a_keras_run_streams_a_table_version_object_by_object(corpus, tmp_path, monkeypatch):
    import training.table_source as ts

    made: list[ShardFeeder] = []

    def spy(*args, **kwargs):
        made.append(shard_feeder(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ts, "shard_feeder", spy)
    storage = LocalStorage(corpus / "objects")
    run = train_from_table(storage=storage, model_root=tmp_path / "m", model="cnn", clip_seconds=1,
                           config=TrainConfig(epochs=2, batch_size=8, stream="stream"))
    assert run.streamed and run.table_version == SHARDS and len(run.history["loss"]) == 2
    # the training batches came from whole objects: each fetched once per epoch, one held at a time
    (feeder,) = made
    stats = feeder.shard_feed.stats
    assert stats.objects_fetched == dict.fromkeys(feeder.shard_feed.object_keys, 2) and stats.peak_objects_held == 1
    assert feeder.shard_feed.clips == run.train_clips - run.valid_clips
    assert run.train_clips + run.test_clips == 30
    memory = train_from_table(storage=storage, model_root=tmp_path / "m2", model="cnn", clip_seconds=1,
                              config=TrainConfig(epochs=2, batch_size=8, stream="memory"))
    # the same clips were trained on and scored, whichever way they were read
    assert (memory.train_clips, memory.test_clips, memory.streamed) == (run.train_clips, run.test_clips, False)
