"""Readers during rebuilds, and two builds of the same partition at once.

* A reader process loops over ``FeatureStore.tensors()`` while this process rebuilds the store
  again and again, alternating between two catalogs (20 and 30 songs), so every build publishes
  a new generation and deletes an old one. Every read must succeed and return exactly one of
  the two states, rows and arrays together: never an error, never a mix.
* Two processes build the same partitions at the same moment: one waits for the other's lock
  and finds the work done; the store ends whole and equal to a clean build.
* A build that may not wait (``lock_timeout=0``) for a held lock fails at once with
  ``StoreLockedError``, naming the lock, and leaves the published store as it was.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from _kill import Child, link_copy, temporaries
from filelock import FileLock

from feature_store import FeatureStore, ingest
from feature_store.demo import write_demo_corpus
from feature_store.datasets.gtzan import GENRES
from feature_store.store import clip_dirname

REBUILDS = 8


@pytest.fixture(scope="module")
def two_states(tmp_path_factory) -> dict:
    """Audio folders of 20 and 30 songs, and a store of the 20 whose cache holds all 30 mels."""
    base = tmp_path_factory.mktemp("concurrent")
    audio = {"b": base / "audio-30", "a": base / "audio-20"}
    write_demo_corpus(audio["b"], songs_per_genre=3, duration=6.0)
    for g in GENRES:
        (audio["a"] / "genres_original" / g).mkdir(parents=True)
        for i in range(2):
            shutil.copy(audio["b"] / "genres_original" / g / f"{g}.{i:05d}.wav", audio["a"] / "genres_original" / g)
    refs = {}
    for key in ("b", "a"):  # b first: its cache has every mel
        root = base / f"store-{key}"
        ingest(audio[key], root)
        FeatureStore(root).build(audio_root=audio[key], clip_seconds=[1, 5], workers=1)
        refs[key] = {c: FeatureStore(root).tensors(clip_seconds=c) for c in (1, 5)}
    cache = FeatureStore(base / "store-a").cache_dir
    for npy in FeatureStore(base / "store-b").cache_dir.iterdir():
        if not (cache / npy.name).exists():
            shutil.copy(npy, cache / npy.name)
    return {"audio": audio, "refs": refs, "store_a": base / "store-a", "store_b": base / "store-b"}


def test_reader_never_errors_nor_mixes_during_rebuilds(two_states, tmp_path):
    root = link_copy(two_states["store_a"], tmp_path / "store")
    states = [{"clip_ids": two_states["refs"][k][1].index["clip_id"].to_list(),
               "sha": hashlib.sha256(two_states["refs"][k][1].x.tobytes()).hexdigest()} for k in ("a", "b")]
    (tmp_path / "states.json").write_text(json.dumps(states))
    stop, out = tmp_path / "stop", tmp_path / "reader.json"
    reader = Child("read", {"store": str(root), "clip_seconds": 1, "states_json": str(tmp_path / "states.json"),
                            "stop_file": str(stop), "out": str(out)}, log=tmp_path / "reader.log")
    try:
        reader.wait_for("READY")
        time.sleep(0.3)
        store = FeatureStore(root)
        statuses = []
        for i in range(REBUILDS):
            key = "b" if i % 2 == 0 else "a"
            ingest(two_states["audio"][key], root)
            report = store.build(audio_root=two_states["audio"][key], clip_seconds=[1, 5], workers=1)
            statuses.append(report.clip_lengths[1]["status"])
            time.sleep(0.15)
        stop.touch()
        reader.result()
        assert reader.wait(timeout=60) == 0
    finally:
        if reader.proc.poll() is None:
            reader.kill()
    summary = json.loads(out.read_text())
    print("reader", {k: v for k, v in summary.items() if k != "errors"})
    assert statuses == ["built"] * REBUILDS  # every rebuild published a new generation
    assert summary["n_errors"] == 0, summary["errors"]
    assert summary["mixed"] == 0
    assert summary["reads"] >= REBUILDS
    assert summary["seen"] == [0, 1], summary  # it did read both states while they changed
    # old generations were collected under the reader's feet, and the store is whole
    gens = [p for p in store.clip_dir(1).iterdir() if p.name.startswith("gen-")]
    assert len(gens) == 2  # current and the one kept for readers
    assert temporaries(root) == []


def test_two_builds_of_one_partition_at_once(two_states, tmp_path):
    root = link_copy(two_states["store_a"], tmp_path / "store")
    store = FeatureStore(root)
    audio = str(two_states["audio"]["b"])
    # both children block on the cache lock held here, then race for every lock at once
    with FileLock(str(store.store_dir / ".locks" / "cache.lock")):
        kids = [Child("build", {"audio": audio, "store": str(root), "clip_seconds": [1, 5]},
                      log=tmp_path / f"build-{i}.log") for i in range(2)]
        for k in kids:
            k.wait_for("READY")
        time.sleep(1.0)  # both are past ingest and waiting for the lock
    results = [k.result() for k in kids]
    assert [k.wait(timeout=60) for k in kids] == [0, 0]
    for c in ("1", "5"):
        assert sorted(r["status"][c] for r in results) == ["built", "unchanged"], results
    assert sorted(r["computed"] for r in results) == [0, 0]  # the cache was warm
    for c in (1, 5):
        t, ref = store.tensors(clip_seconds=c), two_states["refs"]["b"][c]
        assert t.index.equals(ref.index) and np.array_equal(t.x, ref.x)
    assert temporaries(root) == []
    assert len([p for p in store.clip_dir(1).iterdir() if p.name.startswith("gen-")]) == 2


def test_a_build_that_may_not_wait_fails_cleanly(two_states, tmp_path):
    root = link_copy(two_states["store_a"], tmp_path / "store")
    ingest(two_states["audio"]["b"], root)
    store = FeatureStore(root)
    before = store.generation(5)
    lock_path = store.store_dir / ".locks" / f"{clip_dirname(5)}.lock"
    with FileLock(str(lock_path)):
        child = Child("build", {"audio": str(two_states["audio"]["b"]), "store": str(root), "clip_seconds": [5],
                                "ingest": False, "lock_timeout": 0}, log=tmp_path / "locked.log")
        child.wait_for("LOCKED")
        assert child.wait(timeout=60) == 3
    message = json.loads(child.seen[-1][1].split(" ", 1)[1])["error"]
    assert "another build is writing" in message and str(lock_path) in message
    assert store.generation(5) == before
    ref = two_states["refs"]["a"][5]
    t = store.tensors(clip_seconds=5)
    assert t.index.equals(ref.index) and np.array_equal(t.x, ref.x)
    assert temporaries(root) == []
    # once the lock is free the same build goes through
    FeatureStore(root).build(audio_root=two_states["audio"]["b"], clip_seconds=[5], workers=1)
    assert store.tensors(clip_seconds=5).index.equals(two_states["refs"]["b"][5].index)


def test_link_copies_share_no_written_file(two_states, tmp_path):
    """The hard-link copies above are sound only if a build never writes a file in place."""
    original = Path(two_states["store_a"])

    def digests() -> dict:
        return {p.relative_to(original): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in original.rglob("*") if p.is_file() and ".locks" not in p.parts}

    before = digests()
    root = link_copy(original, tmp_path / "store")
    ingest(two_states["audio"]["b"], root)
    FeatureStore(root).build(audio_root=two_states["audio"]["b"], clip_seconds=[1, 5], workers=1)
    assert FeatureStore(root).tensors(clip_seconds=1).index.equals(two_states["refs"]["b"][1].index)
    assert digests() == before
