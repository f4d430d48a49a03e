"""Silent corruption: flip bytes at random offsets of every kind of stored file, 50 times each.

Each flip must be either *detected* (reading raises a one-line StoreError that names the file)
or *harmless* (everything the store serves is exactly what it served before: padding, free
space, statistics, metadata that no reader uses). Anything else is a silent corruption. Then
``verify`` finds damage spread over several files and ``repair`` restores the very same data.
"""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from feature_store import ingest
from feature_store.engine.cache import CacheError, SongCache
from feature_store.engine.store import ViewStore
from feature_store.errors import StoreError
from feature_store.views import get_view

FLIPS = 50
VIEWS = ("mel", "timbre", "embeddings")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, tiny_corpus):
    """Two genres, every view built at 1 s (and mel at 5 s): the files to damage, and what they serve."""
    pytest.importorskip("musicnn", reason="the embeddings view needs the musicnn weights package")
    root = tmp_path_factory.mktemp("flips")
    for g in ("rock", "jazz"):
        shutil.copytree(tiny_corpus / "genres_original" / g, root / "audio" / "genres_original" / g)
    ingest(root / "audio", root / "store")
    for name in VIEWS:
        ViewStore(root / "store", get_view(name)).build(audio_root=root / "audio", clip_seconds=[1], workers=1)
    return root, {name: served(root / "store", name) for name in VIEWS}


def served(store_root: Path, view: str) -> dict:
    """Everything a reader gets from one view's store (a new reader each time)."""
    store = ViewStore(store_root, get_view(view))
    specs = [s for s in store.view.array_specs(1)]
    out = {
        "catalog": store.catalog(), "splits": store.splits(), "clips": store.clips(clip_seconds=1).collect(),
        "registry": {k: v for k, v in store.describe().items() if k != "checksum"},
    }
    for spec in specs:
        if spec.hdf5:
            out[spec.name] = store.tensors(clip_seconds=1, arrays=[spec.name]).x
        if spec.columns:
            out[f"table:{spec.name}"] = store.table(spec.name, clip_seconds=1).collect()
    store.close()
    return out


def same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, pl.DataFrame):
            if not (x.schema == y.schema and x.equals(y)):
                return False
        elif isinstance(x, np.ndarray):
            if not (x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y, equal_nan=True)):
                return False
        elif x != y:
            return False
    return True


def flip(path: Path, rng: np.random.Generator) -> int:
    data = bytearray(path.read_bytes())
    at = int(rng.integers(len(data)))
    data[at] ^= int(rng.integers(1, 256))
    path.write_bytes(bytes(data))
    return at


def files_of(root: Path, view: str) -> dict[str, Path]:
    """The files of one view's 1 s store under ``root/store``."""
    store = ViewStore(root / "store", get_view(view))
    gen = store.generation(1)
    out = {"index": gen / "index.parquet", "hdf5": gen / store.view.data_file, "registry": store.registry_path}
    for spec in store.view.array_specs(1):
        if spec.columns:
            out[f"table:{spec.name}"] = gen / f"{spec.name}.parquet"
    return out


KINDS = [(v, k) for v in VIEWS for k in ("hdf5", "index", "registry")] + [
    ("mel", "table:summary"), ("timbre", "table:timbre"), ("mel", "catalog"), ("mel", "splits"),
]


@pytest.mark.parametrize(("view", "kind"), KINDS, ids=[f"{v}-{k}" for v, k in KINDS])
def test_a_flipped_byte_is_detected_or_harmless(pristine, tmp_path, view, kind):
    root, truth = pristine
    work = tmp_path / "store"
    shutil.copytree(root / "store", work, symlinks=True)
    target = files_of(tmp_path, view)[kind] if kind not in ("catalog", "splits") else work / f"{kind}.parquet"
    original = target.read_bytes()
    rng = np.random.default_rng(zlib.crc32(f"{view}/{kind}".encode()))
    outcomes = {"detected": 0, "harmless": 0}
    for _ in range(FLIPS):
        at = flip(target, rng)
        try:
            got = served(work, view)
        except StoreError as exc:
            message = str(exc)
            assert "\n" not in message and target.name in message, (at, message)
            outcomes["detected"] += 1
        else:
            assert same(got, truth[view]), f"silent corruption: byte {at} of {target.name} changed what is served"
            outcomes["harmless"] += 1
        target.write_bytes(original)
    assert outcomes["detected"] > 0, outcomes


@pytest.mark.parametrize("view", ["mel", "timbre", "embeddings"])
def test_a_damaged_cache_entry_never_spreads_into_a_generation(pristine, tmp_path, view):
    """Every flip of an entry is caught when it is loaded, or loads the very same values (so no
    build can copy damage into a generation); and a build over damaged entries computes them
    again."""
    root, truth = pristine
    work = tmp_path / "store"
    shutil.copytree(root / "store", work, symlinks=True)
    store = ViewStore(work, get_view(view))
    cache = SongCache(work / "cache" / store.view.cache_folder(store.view.provenance()))
    shapes = {s.name: s.shape for s in store.view.array_specs(1)}
    index = store.clips(clip_seconds=1).collect()
    rng = np.random.default_rng(7)

    def load(sha: str):
        if store.view.cache_scope == "song":
            return {"entry": cache.load_entry(sha, store.view.entry_shape())}
        segments = index.filter(pl.col("sha256") == sha)["segment"].to_list()
        return cache.load_rows(sha, 1, segments=segments, shapes=shapes)[0]

    shas = index["sha256"].unique(maintain_order=True).to_list()
    caught = 0
    for trial in range(FLIPS):
        sha = shas[trial % len(shas)]
        path = cache.entry_path(sha) if store.view.cache_scope == "song" else cache.rows_path(sha, 1)
        before, original = load(sha), path.read_bytes()
        flip(path, rng)
        try:
            after = load(sha)
            damaged = False
        except CacheError:
            damaged = True
            caught += 1
        if not damaged:
            assert all(np.array_equal(before[k], after[k]) for k in before), f"{path.name}: silent corruption"
        if trial < 3:  # and a build over the entry serves the right numbers, computing it again if damaged
            report = store.build(audio_root=root / "audio", clip_seconds=[1], workers=1, rebuild=[1])
            assert same(data_of(served(work, view)), data_of(truth[view]))
            songs = index.filter(pl.col("sha256") == sha)["song_id"].to_list()
            assert sorted(report.computed) == (sorted(songs) if damaged else [])
        path.write_bytes(original)
    assert caught > 0


def test_verify_finds_the_damage_and_repair_restores_the_same_data(pristine, tmp_path):
    root, truth = pristine
    work = tmp_path / "store"
    shutil.copytree(root / "store", work, symlinks=True)
    mel = ViewStore(work, get_view("mel"))
    timbre = ViewStore(work, get_view("timbre"))
    gen = mel.generation(1)
    # damage one mel row (a private copy of the file), the timbre index and the mel registry
    h5 = gen / "mel.h5"
    data = h5.read_bytes()
    h5.unlink()
    h5.write_bytes(data)
    import h5py
    import hdf5plugin  # noqa: F401

    with h5py.File(h5, "r+") as f:
        block = f["mel"][2]
        block[0, 0] += 1.0
        f["mel"][2] = block
    bad_song = mel.clips(clip_seconds=1).collect()["song_id"][2]
    for path in (timbre.generation(1) / "index.parquet", mel.registry_path):
        data = path.read_bytes()
        path.unlink()
        path.write_bytes(data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0x55]) + data[len(data) // 2 + 1:])
    with pytest.raises(StoreError, match="fails its checksum"):
        mel.tensors(clip_seconds=1)
    check = mel.verify()
    assert not check.ok and check.clip_lengths[1].damaged_songs == [bad_song] and check.registry_problem
    repaired = mel.repair(check, audio_root=root / "audio", workers=1)
    assert repaired.recomputed_songs == [bad_song] and repaired.build.computed == [bad_song]
    assert mel.verify().ok
    assert not timbre.verify().ok
    timbre.repair(timbre.verify(), audio_root=root / "audio", workers=1)
    assert timbre.verify().ok
    for name in ("mel", "timbre"):
        assert same(data_of(served(work, name)), data_of(truth[name]))


def data_of(served_: dict) -> dict:
    """What a store serves but its registry (which records when each generation was made)."""
    return {k: v for k, v in served_.items() if k != "registry"}


def test_cache_entries_carry_their_digest(tmp_path):
    cache = SongCache(tmp_path)
    entry = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = cache.save_entry("a" * 64, entry)
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), entry)  # still a plain .npy file
    np.testing.assert_array_equal(cache.load_entry("a" * 64, (3, 4)), entry)
    with pytest.raises(CacheError, match="not a \\(4, 3\\) float32 array"):
        cache.load_entry("a" * 64, (4, 3))
    data = bytearray(path.read_bytes())
    data[-20] ^= 1  # the last value
    path.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="fails its checksum"):
        cache.load_entry("a" * 64, (3, 4))
