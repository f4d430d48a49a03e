"""The sharded store at scale (issue 19): shard tasks at 5k to 20k songs, the index query to 1M
rows, and a new reader against unpickling.

Corpus: the synthetic demo corpus's generator (:func:`feature_store.demo.synthesize_song`, 10
genres), ``--duration`` seconds per song (default 6 s, so the ``mel`` view's 1 s and 5 s clip
lengths), written as 16-bit WAV under ``--workdir``. ``--base`` songs per genre are rendered;
song ``i`` of a genre past them is a copy of base song ``i % base`` with the lowest bit of
sample ``i // base`` flipped, so that every song is distinct content (the store deduplicates
identical files) at the cost of one rendering per base song. Smaller corpora are hard-linked
subsets of the largest (the first songs of every genre).

Per corpus size, from an ingested store root (ingest timed, in a child process), the ``mel``
view is built as shard tasks: :func:`feature_store.engine.sharded.publish_shard`, one task per
(shard, clip length), ``size / --songs-per-shard`` shards, objects and index tables in a local
folder, run by ``W`` long-lived worker processes side by side (a ``spawn`` pool, each worker
like a worker host that runs one task at a time with ``workers=1``, its computation in its own
process; BLAS single-threaded). Per task: wall and CPU seconds, the peak RSS of the worker
during that task (``VmHWM``, reset before each task through ``/proc/self/clear_refs``), and the
seconds of the task's commit (``IndexTable.commit_shard``). Then each clip length's table is
compacted (``IndexTable.compact``) and, on new readers (a new :class:`IndexTable` each time),
the selective query ``scan(labels=[one], scheme="seed", parts=["test"])`` is timed before and
after compaction, and ``read_clips`` of the same selection at 5 s (the index query, then every
object it names, rows checked against their digests).

Against unpickling (the study's way, at ``--pickle-size`` songs): every 5 s clip of the store as
a list of ``(mel, label)`` pickled into one file, then ``pickle.load`` of it and the
selection taken out (and, stricter, a pickle holding only the selection), against
``read_clips`` on a new reader. The pickles are written and read by ``study_baseline.py``, the
one module allowed to (the baseline being measured).

Synthetic index tables: rows of the built 5 s table replicated (new ids, random digests) to
``--table-rows`` rows, committed with ``IndexTable.commit_shard`` in ``--table-commits``
commits (objects need not exist for the index query), compacted, and queried the same way.

``--workers 1 2`` builds each size with 1 worker and the largest size again with 2 (a copy of
the ingested root, so the second build computes everything again). The 1-minute load average
is recorded before and after every step: the machine may be shared.

Usage::

    .venv/bin/python benchmarks/bench_shard_scale.py --workdir /work/scratch/scale19 \\
        [--sizes 5000 10000 20000] [--workers 1 2] [--songs-per-shard 1250] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

VIEW = "mel"
#: Single-threaded numerics in every worker: one task per core, as a worker host running one task.
THREADS = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}


def load() -> float:
    return round(os.getloadavg()[0], 2)


# ---------------------------------------------------------------------------------------
# shard tasks, in long-lived worker processes
# ---------------------------------------------------------------------------------------
_COMMIT: dict[str, float] = {}


def _worker_init() -> None:
    """Import what a task needs (a worker host has it imported) and time every commit."""
    from feature_store.engine.lake import IndexTable
    from feature_store.engine.sharded import publish_shard  # noqa: F401
    from feature_store.views import get_view

    get_view(VIEW)
    commit = IndexTable.commit_shard

    def timed(self, *a, **kw):
        t0 = time.perf_counter()
        try:
            return commit(self, *a, **kw)
        finally:
            _COMMIT["s"] = _COMMIT.get("s", 0.0) + time.perf_counter() - t0

    IndexTable.commit_shard = timed


def _status(field: str) -> float:
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field)) / 1024


def _ready(_: int) -> int:
    time.sleep(0.5)  # so that every worker of the pool takes one
    return os.getpid()


def run_task(spec: dict) -> dict:
    """One shard task: :func:`publish_shard` of one (shard, clip length), measured."""
    import resource

    from feature_store.engine.lake import Lineage
    from feature_store.engine.sharded import publish_shard
    from feature_store.engine.storage import open_storage
    from feature_store.engine.store import ViewStore
    from feature_store.views import get_view

    with open("/proc/self/clear_refs", "w") as fh:  # VmHWM from here on: this task's peak
        fh.write("5")
    rss0, _COMMIT["s"] = _status("VmRSS"), 0.0
    r0, t0, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), time.time()
    view = get_view(VIEW)
    done = publish_shard(ViewStore(spec["root"], view), storage=open_storage(spec["objects"]), shard=spec["shard"],
                         shards=spec["shards"], clip_seconds=spec["clip"], audio_root=spec["audio"],
                         task_id=f"{spec['run']}.c{spec['clip']}.shard-{spec['shard']}",
                         lineage=Lineage(params_hash=view.hash(), code_version="bench", run_id=spec["run"]), workers=1)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"shard": spec["shard"], "clip": spec["clip"], "pid": os.getpid(), "start": start, "end": time.time(),
            "wall_s": time.perf_counter() - t0, "cpu_s": r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime,
            "commit_s": _COMMIT["s"], "rows": done.rows, "version": done.version, "committed": done.committed,
            "rss_before_mib": rss0, "peak_rss_mib": _status("VmHWM")}


def build(root: Path, objects: Path, audio: Path, *, shards: int, clips: list[int], workers: int, run: str) -> dict:
    """Every (shard, clip length) task of the view, on ``workers`` worker processes."""
    import multiprocessing as mp

    specs = [{"root": str(root), "objects": str(objects), "audio": str(audio), "shard": k, "shards": shards,
              "clip": c, "run": run} for c in clips for k in range(shards)]
    with mp.get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
        pool.map(_ready, range(workers), chunksize=1)
        l0, t0 = load(), time.perf_counter()
        tasks = list(pool.imap_unordered(run_task, specs, chunksize=1))
        wall, l1 = time.perf_counter() - t0, load()
    bad = [t for t in tasks if not t["committed"]]
    if bad:
        raise SystemExit(f"tasks committed nothing: {bad[:2]}")
    return {"workers": workers, "shards": shards, "wall_s": wall, "load": [l0, l1], "tasks": tasks}


# ---------------------------------------------------------------------------------------
# queries
# ---------------------------------------------------------------------------------------
def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    return round(statistics.median(times), 2)


def _median_cpu_ms(fn, repeats: int) -> float:
    """Median CPU milliseconds of ``fn`` (all threads of this process): steadier than wall time
    on a shared machine."""
    times = []
    for _ in range(repeats):
        c0 = time.process_time()
        fn()
        times.append(1000 * (time.process_time() - c0))
    return round(statistics.median(times), 2)


def query(table_uri: str, *, arrays: list[str], label: int, repeats: int) -> dict:
    """A new reader's selective query (one label, the seed scheme's test part): median ms, rows, files read."""
    from feature_store.engine.lake import IndexTable

    def once():
        return IndexTable(table_uri, arrays=arrays).scan(labels=[label], scheme="seed", parts=["test"]).collect()

    def whole():
        """What a shard task reads before building (``publish_shard``'s check for rows already
        published): every row of the newest version, then its shard's."""
        import polars as pl

        return IndexTable(table_uri, arrays=arrays).scan().filter(pl.col("shard") == 0).select(
            "song_id", "task_id").collect()

    once()  # the files in the page cache, as in every query figure here
    t = IndexTable(table_uri, arrays=arrays)
    return {"ms": _median_ms(once, repeats), "cpu_ms": _median_cpu_ms(once, repeats), "rows": once().height,
            "files_read": len(t.files(labels=[label], scheme="seed", parts=["test"])), "files_total": len(t.files()),
            "whole_table_scan_ms": _median_ms(whole, max(3, repeats // 3))}


def compact(table_uri: str, *, arrays: list[str]) -> dict:
    from feature_store.engine.lake import IndexTable

    t, t0 = IndexTable(table_uri, arrays=arrays), time.perf_counter()
    version = t.compact()
    return {"seconds": round(time.perf_counter() - t0, 2), "version": version}


def read_selection(objects: Path, *, clip: int, label: int, repeats: int) -> dict:
    from feature_store.engine.sharded import read_clips
    from feature_store.engine.storage import open_storage
    from feature_store.views import get_view

    def once():
        return read_clips(open_storage(objects), get_view(VIEW), clip_seconds=clip, labels=[label], scheme="seed",
                          parts=["test"])

    def rows_only():
        """What ``read_clips`` would cost reading only the selected rows of each object (a local
        object opened in place, its chunks read as needed, rows checked): not the library's path,
        which fetches each named object whole."""
        from feature_store import h5 as h5lib
        from feature_store import integrity
        from feature_store.engine.read import read_rows
        from feature_store.engine.sharded import index_table

        view = get_view(VIEW)
        rows = index_table(open_storage(objects), view, clip_seconds=clip).scan(
            labels=[label], scheme="seed", parts=["test"]).collect().sort("clip_id")
        out = []
        for (key,), part in rows.group_by("object_key", maintain_order=True):
            where = part["object_row"].to_numpy()
            order = np.argsort(where, kind="stable")
            with h5lib.h5py().File(objects / str(key), "r") as h5:
                values = read_rows(h5["mel"], where[order])
            integrity.check_rows(values, part["xxh3_mel"].to_numpy()[order], path=str(key), array="mel",
                                 clip_ids=[part["clip_id"][int(i)] for i in order])
            out.append(values)
        return out

    rows, got = once()
    if not np.array_equal(np.concatenate(rows_only()).sum(), got.arrays["mel"].sum()):
        raise SystemExit("the rows-only read disagrees with read_clips")
    return {"ms": _median_ms(once, repeats), "clips": rows.height, "objects": rows["object_key"].n_unique(),
            "objects_bytes": int(sum((objects / str(k)).stat().st_size for k in rows["object_key"].unique())),
            "bytes": int(sum(a.nbytes for a in got.arrays.values())),
            "rows_only_ms": _median_ms(rows_only, repeats)}


# ---------------------------------------------------------------------------------------
# against unpickling (the study's way; the only pickle, the baseline being measured)
# ---------------------------------------------------------------------------------------
def against_pickle(objects: Path, workdir: Path, *, clip: int, label: int, repeats: int) -> dict:
    """``read_clips`` of one label's test clips on a new reader against unpickling the same clips
    (through ``study_baseline.py``, the one module allowed to pickle: the baseline)."""
    from study_baseline import pickle_features, unpickle_features

    from feature_store.engine.sharded import read_clips
    from feature_store.engine.storage import open_storage
    from feature_store.views import get_view

    storage, view = open_storage(objects), get_view(VIEW)
    rows, every = read_clips(storage, view, clip_seconds=clip, arrays=["mel"])
    mels, labels = every.arrays["mel"], rows["label"].to_list()
    wanted = ((rows["label"] == label) & (rows["seed"] == "test")).to_numpy().nonzero()[0]
    whole, part = workdir / f"study-{clip:02d}s.pkl", workdir / f"study-{clip:02d}s-selection.pkl"
    pickle_features([(mels[i], labels[i]) for i in range(len(labels))], whole)
    pickle_features([(mels[i], labels[i]) for i in wanted], part)
    del every, mels

    def study():
        data = unpickle_features(whole)
        return np.stack([data[i][0] for i in wanted])

    def study_selection():
        return np.stack([m for m, _ in unpickle_features(part)])

    def ours():
        return read_clips(open_storage(objects), view, clip_seconds=clip, labels=[label], scheme="seed",
                          parts=["test"], arrays=["mel"])[1].arrays["mel"]

    a, b = study(), ours()
    if not np.array_equal(a, b):
        raise SystemExit("read_clips and the pickle disagree on the selected clips")
    out = {"clips_in_pickle": len(labels), "clips_selected": int(len(wanted)), "pickle_bytes": whole.stat().st_size,
           "selection_pickle_bytes": part.stat().st_size, "unpickle_and_select_ms": _median_ms(study, repeats),
           "unpickle_selection_only_ms": _median_ms(study_selection, max(repeats, 7)),
           "read_clips_ms": _median_ms(ours, max(repeats, 7))}
    out["ratio_vs_unpickle"] = round(out["unpickle_and_select_ms"] / out["read_clips_ms"], 1)
    out["ratio_vs_selection_pickle"] = round(out["unpickle_selection_only_ms"] / out["read_clips_ms"], 2)
    whole.unlink()
    part.unlink()
    return out


# ---------------------------------------------------------------------------------------
# synthetic index tables
# ---------------------------------------------------------------------------------------
def synthetic_table(template_uri: str, where: Path, *, rows: int, commits: int, arrays: list[str], label: int,
                    repeats: int) -> dict:
    """A table of ``rows`` rows like the template's, in ``commits`` shard commits, compacted, queried."""
    import polars as pl

    from feature_store.engine.lake import IndexTable, Lineage

    t = IndexTable(str(where), arrays=arrays)
    proto = IndexTable(template_uri, arrays=arrays).scan().collect().select(list(t.input_schema))
    rng, per = np.random.default_rng(0), -(-rows // commits)
    lineage = Lineage(params_hash="synthetic", code_version="bench", run_id="synthetic")
    l0, t0, commit_s = load(), time.perf_counter(), []
    for k in range(commits):
        n = min(per, rows - k * per)
        if n <= 0:
            break
        take = proto.sample(n, with_replacement=n > proto.height, seed=k)
        ids = pl.Series([f"s{k:05d}.{i:06d}" for i in range(n)])
        batch = take.with_columns(song_id=ids, clip_id=ids + "#05s#00", object_key=pl.lit(f"synthetic/{k:05d}.h5"),
                                  object_row=pl.int_range(n, dtype=pl.Int64),
                                  **{c: pl.Series(rng.integers(0, 2**63, n, dtype=np.uint64)) for c in t.input_schema
                                     if c.startswith("xxh3_")})
        c0 = time.perf_counter()
        t.commit_shard(batch.cast(t.input_schema), shard=k, task_id=f"synthetic.shard-{k}", lineage=lineage)
        commit_s.append(time.perf_counter() - c0)
    written = time.perf_counter() - t0
    before = query(str(where), arrays=arrays, label=label, repeats=repeats)
    packed = compact(str(where), arrays=arrays)
    after = query(str(where), arrays=arrays, label=label, repeats=repeats)
    return {"rows": rows, "commits": len(commit_s), "rows_per_commit": per, "write_s": round(written, 1),
            "commit_ms_median": round(1000 * statistics.median(commit_s), 1),
            "commit_ms_p90": round(1000 * float(np.percentile(commit_s, 90)), 1),
            "query_before_compact": before, "compact": packed, "query_after_compact": after, "load": [l0, load()]}


# ---------------------------------------------------------------------------------------
# the steps
# ---------------------------------------------------------------------------------------
def ingest_child(audio: Path, root: Path) -> dict:
    code = ("import json, resource, sys, time; from feature_store import ingest; t0 = time.perf_counter(); "
            "r = ingest(sys.argv[1], sys.argv[2]); w = time.perf_counter() - t0; "
            "a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN); "
            "print(json.dumps({'wall_s': w, 'cpu_s': a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime, "
            "'songs': r.catalog.height, 'quarantined': r.quarantined.height}))")
    l0 = load()
    out = subprocess.run([sys.executable, "-c", code, str(audio), str(root)], cwd=REPO, check=True,
                         capture_output=True, text=True)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "load": [l0, load()]}


def summarize(b: dict, songs: int) -> dict:
    tasks = b["tasks"]
    cpu = sum(t["cpu_s"] for t in tasks)
    by_clip = {c: [t for t in tasks if t["clip"] == c] for c in sorted({t["clip"] for t in tasks})}
    commit = [t["commit_s"] for t in tasks]
    return {"workers": b["workers"], "shards": b["shards"], "tasks": len(tasks), "songs": songs,
            "wall_s": round(b["wall_s"], 1), "load": b["load"],
            "cpu_s": round(cpu, 1), "cpu_ms_per_song": round(1000 * cpu / songs, 2),
            "wall_ms_per_song": round(1000 * b["wall_s"] / songs, 2),
            "cpu_s_per_clip_length": {c: round(sum(t["cpu_s"] for t in ts), 1) for c, ts in by_clip.items()},
            "rows_per_clip_length": {c: sum(t["rows"] for t in ts) for c, ts in by_clip.items()},
            "task_cpu_s_median": round(statistics.median(t["cpu_s"] for t in tasks), 2),
            "task_peak_rss_mib": {"median": round(statistics.median(t["peak_rss_mib"] for t in tasks), 1),
                                  "max": round(max(t["peak_rss_mib"] for t in tasks), 1),
                                  "rss_before_median": round(statistics.median(t["rss_before_mib"] for t in tasks), 1)},
            "commit_s": {"median": round(statistics.median(commit), 3), "p90": round(float(np.percentile(commit, 90)), 3),
                         "max": round(max(commit), 3)},
            "final_versions": {c: max(t["version"] for t in ts) for c, ts in by_clip.items()}}


def _git() -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=False).stdout.strip()


def one_size(args: argparse.Namespace, size: int, audio: Path, workers: list[int]) -> list[dict]:
    """Ingest ``size`` songs, then build them with each worker count asked for; queries on the first."""
    from feature_store.engine.sharded import index_table
    from feature_store.engine.storage import open_storage
    from feature_store.views import get_view

    view, base = get_view(VIEW), args.workdir / f"n{size}" / "base"
    ingested = ingest_child(audio, base)
    print(f"{size} songs: ingest {ingested}", flush=True)
    out = []
    for w in workers:
        root = args.workdir / f"n{size}" / f"w{w}"
        shutil.copytree(base, root)
        b = build(root, root / "objects", audio, shards=max(1, size // args.songs_per_shard), clips=args.clips,
                  workers=w, run=f"bench-n{size}-w{w}")
        s = {"size": size, "ingest": ingested, **summarize(b, ingested["songs"])}
        storage = open_storage(root / "objects")
        tables = {c: index_table(storage, view, clip_seconds=c) for c in args.clips}
        s["table_uri"] = {c: t.uri for c, t in tables.items()}
        arrays = s["arrays"] = list(tables[5].arrays)
        s["query_before_compact"] = query(tables[5].uri, arrays=arrays, label=args.label, repeats=args.query_repeats)
        s["compact"] = {c: compact(t.uri, arrays=arrays) for c, t in tables.items()}
        s["query_after_compact"] = query(tables[5].uri, arrays=arrays, label=args.label, repeats=args.query_repeats)
        s["read_clips"] = read_selection(root / "objects", clip=5, label=args.label, repeats=args.query_repeats)
        s["store_bytes"] = int(sum(f.stat().st_size for f in (root / "objects").rglob("*") if f.is_file()))
        if size == args.pickle_size and w == workers[0]:
            l0 = load()
            s["against_pickle"] = {**against_pickle(root / "objects", args.workdir, clip=5, label=args.label,
                                                    repeats=3), "load": [l0, load()]}
        print(json.dumps({k: v for k, v in s.items() if k != "tasks"}), flush=True)
        s["tasks"] = b["tasks"]
        out.append(s)
    return out


def run_all(args: argparse.Namespace, result: dict, save) -> None:
    """The corpus, every size's builds and queries, then the synthetic tables, saved as they come."""
    from bench_scale import subset
    from scale_corpus import make_corpus

    full = args.workdir / "audio" / "full"
    l0 = load()
    result["corpus"] = {**make_corpus(full, size=max(args.sizes), base=args.base, duration=args.duration,
                                      workers=os.cpu_count() or 1), "load": [l0, load()]}
    print(f"corpus: {result['corpus']}", flush=True)
    template = None
    for size in sorted(args.sizes):
        audio = full
        if size != max(args.sizes):
            audio = args.workdir / "audio" / f"n{size}"
            subset(full, audio, size)
        workers = args.workers if size == max(args.sizes) else args.workers[:1]
        for s in one_size(args, size, audio / "genres_original", workers):
            result["sizes"].append(s)
            save()
            template = (s["table_uri"][5], s["arrays"])
        if size != max(args.sizes) and not args.keep:
            shutil.rmtree(args.workdir / f"n{size}")
    for rows in args.table_rows:
        where = args.workdir / "tables" / f"rows-{rows}"
        s = synthetic_table(template[0], where, rows=rows, commits=args.table_commits,
                            arrays=template[1], label=args.label, repeats=args.query_repeats)
        print(json.dumps(s), flush=True)
        result["tables"].append(s)
        save()
        shutil.rmtree(where, ignore_errors=True)
    result["load_end"] = load()
    save()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True, help="scratch folder, outside the repository")
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker processes; past the first "
                    "only at the largest size")
    ap.add_argument("--songs-per-shard", type=int, default=1250)
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--base", type=int, default=100, help="rendered songs per genre")
    ap.add_argument("--clips", type=int, nargs="+", default=[5, 1])
    ap.add_argument("--label", type=int, default=5, help="the label queried (5: jazz)")
    ap.add_argument("--query-repeats", type=int, default=15)
    ap.add_argument("--pickle-size", type=int, default=10000)
    ap.add_argument("--table-rows", type=int, nargs="*", default=[20000, 100000, 1000000])
    ap.add_argument("--table-commits", type=int, default=200)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args(argv)
    if args.workdir.resolve().is_relative_to(REPO):
        ap.error("--workdir must be outside the repository")
    os.environ.update(THREADS)
    result = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "git": _git(),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                         f"Python {platform.python_version()}", "command": " ".join(sys.argv),
              "duration_s": args.duration, "songs_per_shard": args.songs_per_shard, "sizes": [], "tables": []}

    def save() -> None:
        if args.json:
            args.json.write_text(json.dumps(result, indent=1, default=str))

    try:
        run_all(args, result, save)
    except BaseException:
        save()
        raise
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
