"""SIGKILL a feature build at random moments, 20 times, against a store that already exists.

The store holds the 1 s and 5 s clips of 20 songs (two per genre). Each round copies it,
starts ``ingest`` + ``build`` of the same folder grown to 30 songs in a child process, and
kills the child's process group at a random moment of the work (stratified over the measured
length of a build, so that the kills spread over catalog, cache, HDF5, index, registry and
clean-up writes). After every kill:

* the store opens, and every clip length reads exactly as before the build, or, if the kill
  came after that length was published, exactly as a clean build of the 30 songs;
* no temporary file is taken for a store (current generations, catalog, splits, registry
  and cache are all whole; leftovers are hidden ``.tmp-*`` names);
* a re-run completes, sweeps the leftovers and matches a clean build bit for bit.

17 rounds find every mel already cached (the child imports no librosa, so a round costs
about a second); 2 rounds start with a cold cache, so that kills also land in decoding and mel
computation; 1 round builds with a pool of two worker processes and is killed while the
workers are filling the cache. After every kill the whole process group is gone (no orphaned
worker keeps writing). A round whose child finished before the kill is repeated with a
shorter delay, so the 20 kills are all real.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from _kill import Child, killed, link_copy, temporaries

from feature_store import FeatureStore, ingest
from feature_store.demo import write_demo_corpus
from feature_store.datasets.gtzan import GENRES

LENGTHS = [1, 5]
KILLS_WARM, KILLS_COLD = 17, 2
WORKERS = {"warm": 1, "cold": 1, "pool": 2}


def snapshot(root: Path) -> dict:
    """Everything a reader sees of a store, as exact values."""
    store = FeatureStore(root)
    out = {"catalog": pl.read_parquet(root / "catalog.parquet"), "splits": pl.read_parquet(root / "splits.parquet"),
           "registry": {c: store.describe()["clip_lengths"][str(c)]["clips"] for c in LENGTHS}}
    for c in LENGTHS:
        t = store.tensors(clip_seconds=c)
        out[c] = (t.index, t.x, store.summary(clip_seconds=c).collect())
    return out


def same_rows(a: tuple, b: tuple) -> bool:
    return a[0].equals(b[0]) and a[1].dtype == b[1].dtype and np.array_equal(a[1], b[1]) and a[2].equals(b[2])


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict:
    """The 30-song folder, its clean build, and the 20-song stores (warm and cold cache)."""
    base = tmp_path_factory.mktemp("killbuild")
    full = base / "audio-30"
    write_demo_corpus(full, songs_per_genre=3, duration=6.0)
    old_audio = base / "audio-20"
    for g in GENRES:
        (old_audio / "genres_original" / g).mkdir(parents=True)
        for i in range(2):
            shutil.copy(full / "genres_original" / g / f"{g}.{i:05d}.wav", old_audio / "genres_original" / g)
    clean = base / "clean"
    ingest(full, clean)
    FeatureStore(clean).build(audio_root=full, clip_seconds=LENGTHS, workers=1)
    cold = base / "old-cold"
    ingest(old_audio, cold)
    FeatureStore(cold).build(audio_root=old_audio, clip_seconds=LENGTHS, workers=1)
    warm = link_copy(cold, base / "old-warm")
    for npy in FeatureStore(clean).cache_dir.iterdir():  # every mel of the 30 songs, already computed
        dst = FeatureStore(warm).cache_dir / npy.name
        if not dst.exists():
            shutil.copy(npy, dst)
    return {"full": full, "clean": snapshot(clean), "old": snapshot(cold), "cold": cold, "warm": warm,
            "clean_root": clean, "base": base}


def check_after_kill(root: Path, old: dict, new: dict) -> dict:
    """The store reads as the old one or the new one, per published part; never torn."""
    state = {}
    for name in ("catalog", "splits"):
        df = pl.read_parquet(root / f"{name}.parquet")
        assert df.equals(old[name]) or df.equals(new[name]), f"{name}.parquet is neither the old nor the new one"
    store = FeatureStore(root)
    reg = store.describe()  # the registry parses
    for c in LENGTHS:
        gen = store.generation(c)
        assert gen.name.startswith("gen-") and not gen.name.startswith(".tmp-")
        assert sorted(p.name for p in gen.iterdir()) == ["index.parquet", "manifest.json", "mel.h5", "summary.parquet"]
        t = store.tensors(clip_seconds=c)
        got = (t.index, t.x, store.summary(clip_seconds=c).collect())
        if same_rows(got, old[c]):
            state[c] = "old"
        else:
            assert same_rows(got, new[c]), f"{c} s reads neither as before the build nor as a clean build"
            state[c] = "new"
        assert reg["clip_lengths"][str(c)]["clips"] in (old["registry"][c], new["registry"][c])
    # no reader takes a temporary for a store: only hidden .tmp- names are partial
    for p in root.rglob("*"):
        if ".tmp-" in str(p.relative_to(root)):
            continue
        if p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)  # every visible cache file is whole
            assert arr.shape[0] == 128 and np.isfinite(arr).all()
        if p.name == "registry.json":
            json.loads(p.read_text())
    return state


def test_sigkill_a_feature_build_twenty_times(stores, tmp_path):
    rng = random.Random(7)
    full, clean, old = stores["full"], stores["clean"], stores["old"]
    # how long a build takes in a child, from READY to DONE (measured, not asserted)
    durations = {}
    for mode in ("warm", "cold"):
        probe = link_copy(stores[mode], tmp_path / f"probe-{mode}")
        child = Child("build", {"audio": str(full), "store": str(probe), "clip_seconds": LENGTHS,
                                "warm": mode == "cold", "workers": WORKERS[mode]}, log=tmp_path / f"probe-{mode}.log")
        t0 = child.wait_for("READY")
        child.result()
        durations[mode] = child.seen[-1][0] - t0
        assert child.wait() == 0
        assert check_after_kill(probe, old, clean) == {1: "new", 5: "new"}
    plan = [("warm", (i + rng.random()) / KILLS_WARM) for i in range(KILLS_WARM)]
    plan += [("cold", (i + rng.random()) / KILLS_COLD) for i in range(KILLS_COLD)]
    plan += [("pool", rng.random())]
    outcomes = []
    for n, (mode, share) in enumerate(plan):
        root = tmp_path / f"round-{n:02d}"
        for attempt in range(4):
            shutil.rmtree(root, ignore_errors=True)
            link_copy(stores["warm" if mode == "warm" else "cold"], root)
            child = Child("build", {"audio": str(full), "store": str(root), "clip_seconds": LENGTHS,
                                   "warm": mode != "warm", "workers": WORKERS[mode]},
                          log=tmp_path / f"round-{n:02d}.log")
            ready = child.wait_for("READY")
            if mode == "pool":  # kill while the workers write the cache: after their first mel
                cache = FeatureStore(root).cache_dir
                start = len(list(cache.glob("*.npy")))
                while len(list(cache.glob("*.npy"))) == start and child.proc.poll() is None:
                    time.sleep(0.005)
                ready, delay = time.monotonic(), share * 0.2
            else:
                delay = share * durations[mode] * 0.9 / (2**attempt)
            time.sleep(max(0.0, ready + delay - time.monotonic()))
            rc = child.kill()
            assert child.group_gone(), "a process of the killed build survived it"
            if killed(rc):
                break
            assert rc == 0, child.stderr()[-2000:]
        else:
            pytest.fail(f"round {n}: the build always finished before the kill")
        leftovers = temporaries(root)
        state = check_after_kill(root, old, clean)
        # the re-run completes, sweeps what the killed build left and matches a clean build
        ingest(full, root)
        FeatureStore(root).build(audio_root=full, clip_seconds=LENGTHS, workers=1)
        after = snapshot(root)
        for c in LENGTHS:
            assert same_rows(after[c], clean[c])
        assert after["catalog"].equals(clean["catalog"]) and after["splits"].equals(clean["splits"])
        assert after["registry"] == clean["registry"]
        store = FeatureStore(root)
        assert {p.name for p in store.cache_dir.iterdir()} == {
            p.name for p in FeatureStore(stores["clean_root"]).cache_dir.iterdir()}
        assert temporaries(root) == []
        outcomes.append((mode, round(delay, 3), state[1], state[5], len(leftovers)))
        shutil.rmtree(root)
    print("durations", durations, "outcomes", outcomes)
    assert len(outcomes) == KILLS_WARM + KILLS_COLD + 1
    # the kills did land mid-write: some left a half-written temporary behind, some hit before
    # anything was published, and the store was always whole
    assert any(o[4] for o in outcomes), outcomes
    assert any(o[2] == "old" for o in outcomes), outcomes
