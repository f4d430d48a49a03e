"""The feature store's scale curve (issue 14, item 5): 1k, 5k and 10k songs on one machine.

Corpus: ``../shared/data/gtzan-mini`` (100 real FLAC clips, 10 per genre) replicated to the
largest size asked for, in the Kaggle layout ``genres_original/<genre>/<genre>.NNNNN.flac``
under ``--workdir``. As in ``bench_store.py``, every copy after the first differs from its
source in one sample's lowest bit, so that the store, which deduplicates identical content,
does all the work. Smaller corpora are hard-linked subsets of the largest (the first songs of
every genre), so they cost no disk.

Per corpus size, from an empty store root, each step in a child process of its own (so that
its peak memory is its own):

* ingest (catalog and splits; ``ingest()``, which hashes and decodes every file in one
  process per core);
* a build of each default view, ``mel`` then ``timbre``, all four clip lengths, ``--workers``
  processes: wall and CPU seconds, peak RSS of the main process (``VmHWM``) and of the
  largest worker (``ru_maxrss`` of the children), and the time spent in the build's phases
  (planning, computing and streaming rows, publishing each clip length: the HDF5 file
  closed, the index written, ``current`` switched; the registry);
* a re-run of the ``mel`` build on the unchanged corpus (which verifies every row of every
  generation before calling it ``unchanged``);
* after the queries below, a ``mel`` build after 1 % of the songs left the catalog (every
  hundredth song dropped from ``catalog.parquet`` and ``splits.parquet``, as an ingest of a
  corpus without them would write them): what any change to the set of songs costs, since
  every clip length is then published as a new generation written whole from the cache;
* store size on disk, per view and clip length (the generation's files) and of each view's
  per-song cache (bytes and files);
* the index query ``clips(clip_seconds=5, genre="jazz", split=...).collect()`` and
  ``tensors()`` of the same clips, each on a new store object, median of ``--query-repeats``,
  for the held-out (``test``) and the training (``train``) part of the ``seed`` scheme.

The store root of a size is deleted before the next size (``--keep`` keeps everything).
The 1-minute load average is recorded before and after every step: the machine may be shared.

Usage::

    .venv/bin/python benchmarks/bench_scale.py --workdir /work/scratch/scale \\
        [--sizes 1000 5000 10000] [--workers 2] [--json out.json] [--delete-corpus]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VIEWS = ("mel", "timbre")
CLIPS = (1, 5, 15, 30)


# ---------------------------------------------------------------------------------------
# the corpus
# ---------------------------------------------------------------------------------------
def _write_copy(task: tuple[str, int, str]) -> None:
    """Copy ``k`` of one source file: byte-identical for k = 0, else one sample's lowest bit flipped."""
    import soundfile as sf

    src, k, target = task
    tmp = Path(target + ".part")
    if k == 0:
        shutil.copyfile(src, tmp)
    else:
        data, sr = sf.read(src, dtype="int16")
        data[k] = np.int16(int(data[k]) ^ 1)
        sf.write(tmp, data, sr, format="FLAC", subtype="PCM_16")
    tmp.replace(target)


def make_corpus(source: Path, dst: Path, size: int, workers: int) -> dict:
    """``size`` songs (10 genres x size/10) under ``dst/genres_original``; files already there are kept."""
    genres = sorted(p for p in source.iterdir() if p.is_dir())
    per_genre = size // len(genres)
    tasks = []
    for gdir in genres:
        out = dst / "genres_original" / gdir.name
        out.mkdir(parents=True, exist_ok=True)
        songs = sorted(f for f in gdir.iterdir() if f.is_file())
        for n in range(per_genre):
            k, f = divmod(n, len(songs))
            target = out / f"{gdir.name}.{n:05d}{songs[f].suffix}"
            if not target.exists():
                tasks.append((str(songs[f]), k, str(target)))
    t0 = time.perf_counter()
    if tasks:
        import multiprocessing as mp

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            list(pool.map(_write_copy, tasks, chunksize=16))
    return {"written": len(tasks), "seconds": time.perf_counter() - t0, "bytes": _du(dst)[0]}


def subset(full: Path, dst: Path, size: int) -> None:
    """The first size/10 songs of every genre of ``full``, hard-linked into ``dst``."""
    genres = sorted(p for p in (full / "genres_original").iterdir() if p.is_dir())
    per_genre = size // len(genres)
    for gdir in genres:
        out = dst / "genres_original" / gdir.name
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted(f for f in gdir.iterdir() if not f.name.endswith(".part"))[:per_genre]:
            if not (out / f.name).exists():
                os.link(f, out / f.name)


def _du(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path``, hard links counted once."""
    seen, total, files = set(), 0, 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
            files += 1
    return total, files


# ---------------------------------------------------------------------------------------
# child processes: one step each, reporting JSON on stdout's last line
# ---------------------------------------------------------------------------------------
def _peaks() -> dict:
    """Peak RSS (MiB) of this process (VmHWM) and of its largest ended child (ru_maxrss)."""
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"main_peak_rss_mib": hwm / 1024, "worker_peak_rss_mib": kids / 1024}


def _cpu() -> tuple[float, float]:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def _timed(phases: dict[str, float], owner: object, name: str, label: str) -> None:
    """Wrap ``owner.name`` so that its calls add their seconds to ``phases[label]``."""
    fn = getattr(owner, name)

    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            phases[label] = phases.get(label, 0.0) + time.perf_counter() - t0

    setattr(owner, name, wrapper)


def child_ingest(audio: Path, root: Path) -> dict:
    from feature_store import ingest

    t0 = time.perf_counter()
    res = ingest(audio, root)
    wall = time.perf_counter() - t0
    me, kids = _cpu()
    return {"wall_s": wall, "cpu_s": me + kids, "main_cpu_s": me, "songs": res.catalog.height,
            "quarantined": res.quarantined.height, **_peaks()}


def child_build(audio: Path, root: Path, view: str, workers: int) -> dict:
    from feature_store.engine import build as build_mod
    from feature_store.engine import registry, writer
    from feature_store.engine.store import ViewStore
    from feature_store.views import get_view

    phases: dict[str, float] = {}
    # the build's phases, timed by wrapping the engine's own steps (nothing else changes)
    _timed(phases, build_mod.Builder, "_plan", "plan")
    _timed(phases, build_mod.Builder, "_compute", "compute and stream rows")
    _timed(phases, build_mod.Builder, "_sound", "verify current generation")
    _timed(phases, build_mod.Builder, "_publish", "publish (all clip lengths)")
    _timed(phases, writer.ClipWriter, "finish", "  of which: close HDF5, write tables")
    _timed(phases, build_mod, "write_index", "  of which: write index")
    _timed(phases, registry, "update", "registry")
    store = ViewStore(root, get_view(view))
    t0 = time.perf_counter()
    report = store.build(audio_root=audio, workers=workers)
    wall = time.perf_counter() - t0
    me, kids = _cpu()
    return {"wall_s": wall, "cpu_s": me + kids, "main_cpu_s": me, "computed": len(report.computed),
            "cached": report.cached, "failed": report.failed.height,
            "status": {c: info["status"] for c, info in report.clip_lengths.items()},
            "phases_s": phases, **_peaks()}


def run_child(*args: str) -> dict:
    load = os.getloadavg()[0]
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["loadavg_1min_before_after"] = [load, os.getloadavg()[0]]
    return result


# ---------------------------------------------------------------------------------------
# sizes and queries (in this process)
# ---------------------------------------------------------------------------------------
def store_sizes(root: Path) -> dict:
    from feature_store.engine.store import ViewStore
    from feature_store.views import get_view

    out: dict = {"catalog_and_splits_bytes": sum((root / f).stat().st_size
                                                 for f in ("catalog.parquet", "splits.parquet"))}
    for view in VIEWS:
        store = ViewStore(root, get_view(view))
        per_clip = {}
        for c in CLIPS:
            gen = store.generation(c)
            per_clip[c] = {f.name: f.stat().st_size for f in sorted(gen.iterdir())}
            per_clip[c]["total"] = sum(per_clip[c].values())
        cache_bytes, cache_files = 0, 0
        for d in (root / "cache").glob(f"{view}-*"):
            b, n = _du(d)
            cache_bytes, cache_files = cache_bytes + b, cache_files + n
        out[view] = {"clip_lengths": per_clip, "generations_bytes": sum(v["total"] for v in per_clip.values()),
                     "cache_bytes": cache_bytes, "cache_files": cache_files}
    return out


def queries(root: Path, repeats: int) -> dict:
    """Median ms of the index query and of tensors() on a new store object each time."""
    from feature_store.engine.store import ViewStore
    from feature_store.views import get_view

    out: dict = {}
    for view in VIEWS:
        for split in ("test", "train"):
            t_index, t_tensors, clips = [], [], 0
            for _ in range(repeats):
                store = ViewStore(root, get_view(view))
                t0 = time.perf_counter()
                idx = store.clips(clip_seconds=5, genre="jazz", split=split).collect()
                t_index.append(time.perf_counter() - t0)
                store = ViewStore(root, get_view(view))
                t0 = time.perf_counter()
                t = store.tensors(clip_seconds=5, genre="jazz", split=split)
                t_tensors.append(time.perf_counter() - t0)
                clips = t.x.shape[0]
                assert clips == idx.height, (clips, idx.height)
                store.close()
            out[f"{view} {split}"] = {"clips": clips, "bytes": int(t.x.nbytes),
                                      "index_query_ms": 1000 * float(np.median(t_index)),
                                      "tensors_ms": 1000 * float(np.median(t_tensors))}
    return out


def drop_songs(root: Path, every: int = 100) -> int:
    """Remove every ``every``-th song from the root's catalog and split table; how many were removed."""
    import polars as pl

    from feature_store.catalog import write_catalog
    from feature_store.engine.store import ViewStore
    from feature_store.splits import write_splits
    from feature_store.views import get_view

    store = ViewStore(root, get_view("mel"))
    catalog, splits = store.catalog(), store.splits()
    ids = catalog["song_id"].to_list()
    gone = ids[every - 1::every]
    write_catalog(catalog.filter(~pl.col("song_id").is_in(gone)), store.catalog_path)
    write_splits(splits.filter(~pl.col("song_id").is_in(gone)), store.splits_path)
    return len(gone)


def machine() -> str:
    cpu = platform.processor() or "unknown cpu"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def measure_size(n: int, corpus: Path, workdir: Path, workers: int, query_repeats: int, keep: bool) -> dict:
    root = workdir / f"store-{n}"
    shutil.rmtree(root, ignore_errors=True)
    res: dict = {"songs": n}
    res["ingest"] = run_child("ingest", str(corpus), str(root))
    print(f"{n}: ingest {res['ingest']['wall_s']:.1f} s", flush=True)
    for view in VIEWS:
        res[f"build {view}"] = run_child("build", str(corpus), str(root), view, str(workers))
        print(f"{n}: build {view} {res[f'build {view}']['wall_s']:.1f} s", flush=True)
    res["rerun mel"] = run_child("build", str(corpus), str(root), "mel", str(workers))
    print(f"{n}: re-run mel {res['rerun mel']['wall_s']:.1f} s", flush=True)
    res["sizes"] = store_sizes(root)
    res["queries"] = queries(root, query_repeats)
    res["dropped_songs"] = drop_songs(root)
    res["rebuild mel after 1% dropped"] = run_child("build", str(corpus), str(root), "mel", str(workers))
    print(f"{n}: mel after dropping {res['dropped_songs']} songs "
          f"{res['rebuild mel after 1% dropped']['wall_s']:.1f} s", flush=True)
    res["per_song"] = {
        "ingest_ms": 1000 * res["ingest"]["wall_s"] / n,
        **{f"build_{v}_ms": 1000 * res[f"build {v}"]["wall_s"] / n for v in VIEWS},
        "build_ms": 1000 * sum(res[f"build {v}"]["wall_s"] for v in VIEWS) / n,
        "build_cpu_ms": 1000 * sum(res[f"build {v}"]["cpu_s"] for v in VIEWS) / n,
        "rerun_mel_ms": 1000 * res["rerun mel"]["wall_s"] / n,
        "rebuild_mel_after_drop_ms": 1000 * res["rebuild mel after 1% dropped"]["wall_s"] / n,
        **{f"{v}_store_bytes": res["sizes"][v]["generations_bytes"] / n for v in VIEWS},
        **{f"{v}_cache_bytes": res["sizes"][v]["cache_bytes"] / n for v in VIEWS},
    }
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return res


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        if kind == "ingest":
            out = child_ingest(Path(rest[0]), Path(rest[1]))
        else:
            out = child_build(Path(rest[0]), Path(rest[1]), rest[2], int(rest[3]))
        print(json.dumps(out))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, required=True, help="corpora and stores go here (outside the repo)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "gtzan-mini" / "genres_original")
    ap.add_argument("--query-repeats", type=int, default=7)
    ap.add_argument("--json", type=Path, default=None, help="write the results here (after every size)")
    ap.add_argument("--keep", action="store_true", help="keep every store root")
    ap.add_argument("--delete-corpus", action="store_true", help="delete the corpora at the end")
    args = ap.parse_args()
    if not args.source.is_dir():
        print(f"no corpus at {args.source}", file=sys.stderr)
        return 2
    if any(n % 100 for n in args.sizes):
        print("--sizes must be multiples of 100 (10 genres of 10 source songs)", file=sys.stderr)
        return 2
    workdir = args.workdir.resolve()
    if workdir == REPO or REPO in workdir.parents:
        print("--workdir must be outside the repository", file=sys.stderr)
        return 2
    workdir.mkdir(parents=True, exist_ok=True)
    sizes = sorted(set(args.sizes))
    full = workdir / f"corpus-{sizes[-1]}"
    result: dict = {
        "date": dt.date.today().isoformat(), "machine": machine(),
        "command": "python benchmarks/bench_scale.py " + " ".join(sys.argv[1:]), "workers": args.workers,
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True).stdout.strip(),
        "loadavg_1min_start": os.getloadavg()[0], "sizes": {},
    }
    result["corpus"] = make_corpus(args.source, full, sizes[-1], args.workers)
    print(f"corpus of {sizes[-1]} songs: {result['corpus']}", flush=True)
    try:
        for n in sizes:
            corpus = full if n == sizes[-1] else workdir / f"corpus-{n}"
            if corpus != full:
                subset(full, corpus, n)
            result["sizes"][n] = measure_size(n, corpus, workdir, args.workers, args.query_repeats, args.keep)
            result["loadavg_1min_end"] = os.getloadavg()[0]
            if args.json:
                args.json.write_text(json.dumps(result, indent=2))
    finally:
        if args.delete_corpus:
            for n in sizes:
                shutil.rmtree(workdir / f"corpus-{n}", ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
