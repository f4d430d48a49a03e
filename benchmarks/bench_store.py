"""Feature-store benchmark (issue 3): build speed, store size and selective-query speed.

Corpus: ``../shared/data/gtzan-mini`` replicated ``--copies`` times (default 10: 1000 real
files) into a temporary folder. Measured side by side, in one run:

1. *baseline*: the study's pipeline, as its code ran (one process): for each clip length,
   ``librosa.load(duration=N)`` + mel of every file, then pickle the list.
2. *floor*: the bare load + mel of each song once (our ``decode`` and ``mel_spectrogram``),
   across ``--workers`` processes.
3. *ours*: ``FeatureStore.build`` of all four clip lengths into HDF5 + Parquet, across
   ``--workers`` processes (catalog and split tables written before, not timed), from an
   empty store and cache each time.
4. *timbre*: ``ViewStore(root, get_view("timbre")).build`` of all four clip lengths, the
   same way, against the same floor.

Floor, ours and timbre alternate ``--repeats`` times (default 3); the ratios use the medians,
and the CPU seconds of each (this process and its workers) are recorded beside the wall times.
5. What the checksums cost: the xxh3 digest of every stored row alone (the rows read back
   from the built stores, only the hashing timed), per song, against the build's CPU.
6. Store size (float16 option) against the raw float32 bytes of the same clips.
7. A selective query, the held-out 5 s clips of one genre: index query + tensors, against
   unpickling the baseline's 5 s pickle and filtering it; and the share of ``tensors()``
   spent hashing the rows it read (their digests computed again, timed alone).
8. ``ViewStore.verify()`` (what ``gtzan features verify`` runs per view) of the float32 mel
   store and of the timbre store: rows and MB per second.

The 1-minute load average before and after is recorded: the machine may be shared.

Usage::

    .venv/bin/python benchmarks/bench_store.py [--copies 10] [--workers 2] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from study_baseline import pickle_features, study_features, unpickle_features  # noqa: E402

from feature_store import CLIP_SECONDS, FeatureParams, FeatureStore, ingest  # noqa: E402
from feature_store.audio import decode  # noqa: E402
from feature_store.features import mel_spectrogram  # noqa: E402
from feature_store.engine.read import read_rows  # noqa: E402
from feature_store.engine.store import ViewStore  # noqa: E402
from feature_store.engine.worker import single_threaded_worker  # noqa: E402
from feature_store.integrity import digest, row_digests  # noqa: E402
from feature_store.views import get_view  # noqa: E402


def replicate(src: Path, dst: Path, copies: int) -> list[tuple[str, Path]]:
    """Copy the mini corpus ``copies`` times, renumbering songs 00000..; returns (genre, path).

    Every copy after the first differs from its source in one sample's lowest bit, so that
    all files are distinct songs to the store (which deduplicates identical content).
    """
    files = []
    for gdir in sorted(p for p in src.iterdir() if p.is_dir()):
        out = dst / "genres_original" / gdir.name
        out.mkdir(parents=True, exist_ok=True)
        songs = sorted(gdir.iterdir())
        n = 0
        for k in range(copies):
            for f in songs:
                target = out / f"{gdir.name}.{n:05d}{f.suffix}"
                if k == 0:
                    shutil.copyfile(f, target)
                else:
                    # a distinct file: byte-identical copies would be deduplicated by content
                    # hash (and kept in one split part), which is not the work being measured
                    data, sr = sf.read(f, dtype="int16")
                    data[k] = np.int16(int(data[k]) ^ 1)
                    sf.write(target, data, sr, format="FLAC", subtype="PCM_16")
                files.append((gdir.name, target))
                n += 1
    return files


def _floor_one(path: str) -> int:
    y = decode(path, sr=22050).y
    return mel_spectrogram(y, params=FeatureParams()).shape[1]


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def floor(files: list[tuple[str, Path]], workers: int) -> tuple[float, float]:
    """Wall and CPU seconds of the bare decode + mel of every file across ``workers``."""
    import multiprocessing as mp

    t0, c0 = time.perf_counter(), cpu_seconds()
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=single_threaded_worker) as pool:
        list(pool.map(_floor_one, [str(p) for _, p in files], chunksize=8))
    return time.perf_counter() - t0, cpu_seconds() - c0


def main_cpu_seconds() -> float:
    """CPU seconds of this process alone (all its threads)."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def ours(audio: Path, root: Path, workers: int) -> tuple[float, float, float]:
    """Wall, CPU and main-process CPU seconds of a build of all four clip lengths from an
    empty store. The main process's share tells how many workers it can keep up with."""
    shutil.rmtree(root / "features", ignore_errors=True)
    shutil.rmtree(root / "cache", ignore_errors=True)
    t0, c0, m0 = time.perf_counter(), cpu_seconds(), main_cpu_seconds()
    FeatureStore(root).build(audio_root=audio, workers=workers)
    return time.perf_counter() - t0, cpu_seconds() - c0, main_cpu_seconds() - m0


def timbre(audio: Path, root: Path, workers: int) -> tuple[float, float, float]:
    """Wall, CPU and main-process CPU seconds of a timbre build of all four clip lengths from
    an empty timbre store and cache (the mel store is left alone)."""
    store = ViewStore(root, get_view("timbre"))
    shutil.rmtree(store.store_dir, ignore_errors=True)
    for d in (root / "cache").glob("timbre-*"):
        shutil.rmtree(d, ignore_errors=True)
    t0, c0, m0 = time.perf_counter(), cpu_seconds(), main_cpu_seconds()
    store.build(audio_root=audio, workers=workers)
    return time.perf_counter() - t0, cpu_seconds() - c0, main_cpu_seconds() - m0


def digest_cost(store: ViewStore) -> dict[str, float]:
    """Seconds to compute the xxh3 digest of every stored row of every clip length, alone.

    The rows are read back from the built store block by block (not timed) and hashed as the
    build hashes them: each row's bytes in the stored dtype, one digest per row.
    """
    import h5py

    seconds, rows, nbytes = 0.0, 0, 0
    for c in CLIP_SECONDS:
        gen = store.generation(c)
        with h5py.File(gen / store.view.data_file, "r") as h5:
            for spec in store.view.array_specs(c):
                if not spec.hdf5:
                    continue
                ds = h5[spec.name]
                for start in range(0, ds.shape[0], 256):
                    block = read_rows(ds, np.arange(start, min(start + 256, ds.shape[0])))
                    t0 = time.perf_counter()
                    row_digests(block)
                    seconds += time.perf_counter() - t0
                    rows += block.shape[0]
                    nbytes += block.nbytes
    return {"seconds": seconds, "rows": rows, "bytes": nbytes}


def verify_throughput(store: ViewStore) -> dict[str, float]:
    """``store.verify()`` (every row of every current generation, the catalog and splits), timed."""
    t0 = time.perf_counter()
    check = store.verify()
    seconds = time.perf_counter() - t0
    assert check.ok, check.problems[:3]
    stored = sum(f.stat().st_size for c in CLIP_SECONDS for f in store.generation(c).iterdir())
    raw = 0
    for c in CLIP_SECONDS:
        per_row = sum(int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize for s in store.view.array_specs(c) if s.hdf5)
        raw += per_row * check.clip_lengths[c].clips
    return {"seconds": seconds, "rows": check.rows_checked, "stored_bytes": stored, "row_bytes": raw,
            "rows_per_s": check.rows_checked / seconds, "stored_mb_per_s": stored / 1e6 / seconds,
            "row_mb_per_s": raw / 1e6 / seconds}


def baseline(files: list[tuple[str, Path]], out: Path) -> float:
    t0 = time.perf_counter()
    for c in CLIP_SECONDS:
        data = study_features(files, c)
        pickle_features(data, out / f"study-{c:02d}s.pkl")
        del data
    return time.perf_counter() - t0


def machine() -> str:
    cpu = platform.processor() or "unknown cpu"
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        cpu = model
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "gtzan-mini" / "genres_original")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not args.source.is_dir():
        print(f"no corpus at {args.source}", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench_store_"))
    try:
        files = replicate(args.source, tmp / "audio", args.copies)
        n = len(files)
        print(f"{n} files in {tmp}")
        # warm the page cache and librosa's lazy imports for everyone
        for _, p in files:
            p.read_bytes()
        study_features(files[:1], 1)

        ingest(tmp / "audio", tmp / "store")
        floors, builds, timbres = [], [], []
        for r in range(args.repeats):
            floors.append(floor(files, args.workers))
            builds.append(ours(tmp / "audio", tmp / "store", args.workers))
            timbres.append(timbre(tmp / "audio", tmp / "store", args.workers))
            print(f"repeat {r + 1}: floor {floors[-1][0]:.2f} s, ours {builds[-1][0]:.2f} s, "
                  f"timbre {timbres[-1][0]:.2f} s (cpu {floors[-1][1]:.1f} s, {builds[-1][1]:.1f} s, "
                  f"{timbres[-1][1]:.1f} s; main process {builds[-1][2]:.1f} s, {timbres[-1][2]:.1f} s)")
        t_floor = float(np.median([w for w, _ in floors]))
        t_ours = float(np.median([b[0] for b in builds]))
        t_timbre = float(np.median([b[0] for b in timbres]))
        print(f"floor (load+mel once, {args.workers} processes): {t_floor:.1f} s")
        print(f"ours (4 clip lengths to HDF5+Parquet, {args.workers} processes): {t_ours:.1f} s")

        (tmp / "study").mkdir()
        t_base = baseline(files, tmp / "study")
        print(f"baseline (study, 1 process, 4 clip lengths, pickled): {t_base:.1f} s")

        store = FeatureStore(tmp / "store")
        t0 = time.perf_counter()
        store.build(audio_root=tmp / "audio", workers=args.workers)
        t_rerun = time.perf_counter() - t0
        timbre_store = ViewStore(tmp / "store", get_view("timbre"))
        digests = {"mel": digest_cost(store), "timbre": digest_cost(timbre_store)}
        verified = {"mel": verify_throughput(store), "timbre": verify_throughput(timbre_store)}

        f16 = FeatureStore(tmp / "store", params=FeatureParams(dtype="float16"))
        f16.build(audio_root=tmp / "audio", workers=args.workers)
        sizes = {}
        for c in CLIP_SECONDS:
            gen = f16.generation(c)
            stored = sum(p.stat().st_size for p in gen.iterdir())
            raw = n * 128 * FeatureParams().clip_frames(c) * 4
            sizes[c] = {"stored_bytes": stored, "raw_float32_bytes": raw, "ratio": stored / raw}
        total_ratio = sum(v["stored_bytes"] for v in sizes.values()) / sum(v["raw_float32_bytes"] for v in sizes.values())
        f32_gen_bytes = sum(sum(p.stat().st_size for p in store.generation(c).iterdir()) for c in CLIP_SECONDS)
        pickle_bytes = sum((tmp / "study" / f"study-{c:02d}s.pkl").stat().st_size for c in CLIP_SECONDS)

        # selective query: held-out 5 s clips of one genre. "cold" opens a new FeatureStore
        # each time (a fresh reader); "warm" reuses one, which keeps the generation's index
        # and HDF5 file open. tensors() includes the index query.
        reps = 7
        t_index, t_cold, t_warm, t_hash = [], [], [], []
        for _ in range(reps):
            fresh = FeatureStore(tmp / "store")
            t0 = time.perf_counter()
            fresh.clips(clip_seconds=5, genre="jazz", split="test").collect()
            t_index.append(time.perf_counter() - t0)
            fresh = FeatureStore(tmp / "store")
            t0 = time.perf_counter()
            x, y, _ = fresh.tensors(clip_seconds=5, genre="jazz", split="test")
            t_cold.append(time.perf_counter() - t0)
            fresh.close()
            # what tensors() spent checking: the digests of the rows it read, computed again alone
            t0 = time.perf_counter()
            for row in x:
                digest(np.ascontiguousarray(row))
            t_hash.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            store.tensors(clip_seconds=5, genre="jazz", split="test")
            t_warm.append(time.perf_counter() - t0)
        t_unpickle = []
        for _ in range(3):
            t0 = time.perf_counter()
            data = unpickle_features(tmp / "study" / "study-05s.pkl")
            # the study's split: the last 10 % of each genre's list are held out
            jazz = [i for i, (_, lab) in enumerate(data) if lab == 5]
            held = [data[i][0] for i in jazz[-len(jazz) // 10 :]]
            t_unpickle.append(time.perf_counter() - t0)
            del data
        assert x.shape[0] == len(held), (x.shape, len(held))
        build_cpu = {"mel": float(np.median([b[1] for b in builds])), "timbre": float(np.median([b[1] for b in timbres]))}
        main_cpu = {"mel": float(np.median([b[2] for b in builds])), "timbre": float(np.median([b[2] for b in timbres]))}
        result = {
            "date": dt.date.today().isoformat(),
            "loadavg_1min_before_after": [load_before, os.getloadavg()[0]],
            "machine": machine(),
            "command": "python benchmarks/bench_store.py " + " ".join(sys.argv[1:]),
            "files": n,
            "workers": args.workers,
            "repeats": args.repeats,
            "floor_runs": [{"wall_s": w, "cpu_s": c} for w, c in floors],
            "ours_runs": [{"wall_s": w, "cpu_s": c, "main_cpu_s": m} for w, c, m in builds],
            "floor_s": t_floor,
            "baseline_s": t_base,
            "ours_s": t_ours,
            "ours_over_floor_cpu": float(np.median([b[1] for b in builds]) / np.median([c for _, c in floors])),
            "timbre_runs": [{"wall_s": w, "cpu_s": c, "main_cpu_s": m} for w, c, m in timbres],
            "timbre_s": t_timbre,
            "timbre_over_floor": t_timbre / t_floor,
            "timbre_over_floor_cpu": build_cpu["timbre"] / float(np.median([c for _, c in floors])),
            "timbre_main_cpu_ms_per_song": 1000 * main_cpu["timbre"] / n,
            "digest": {
                view: {**d, "ms_per_song": 1000 * d["seconds"] / n,
                       "share_of_build_cpu": d["seconds"] / build_cpu[view],
                       "share_of_main_cpu": d["seconds"] / main_cpu[view],
                       "gb_per_s": d["bytes"] / 1e9 / d["seconds"]}
                for view, d in digests.items()
            },
            "verify": verified,
            "main_cpu_ms_per_song": float(1000 * np.median([b[2] for b in builds]) / n),
            "rerun_s": t_rerun,
            "speedup_vs_baseline": t_base / t_ours,
            "ours_over_floor": t_ours / t_floor,
            "sizes_float16": sizes,
            "size_ratio_float16": total_ratio,
            "float32_store_bytes": f32_gen_bytes,
            "pickle_bytes": pickle_bytes,
            "index_query_ms": 1000 * float(np.median(t_index)),
            "query_cold_ms": 1000 * float(np.median(t_cold)),
            "query_warm_ms": 1000 * float(np.median(t_warm)),
            "unpickle_ms": 1000 * float(np.median(t_unpickle)),
            "query_speedup_cold": float(np.median(t_unpickle) / np.median(t_cold)),
            "query_speedup_warm": float(np.median(t_unpickle) / np.median(t_warm)),
            "query_cold_hash_ms": 1000 * float(np.median(t_hash)),
            "query_cold_hash_share": float(np.median(t_hash) / np.median(t_cold)),
            "clips_selected": int(x.shape[0]),
            "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip(),
        }
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
