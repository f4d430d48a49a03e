"""Build and query speed of two versions of the code side by side, in one run (issue 18).

The redesign (datasets as declarations, views as declarations, typed records) must not make
the store slower. This benchmark checks out nothing itself: it takes two source trees (for
example ``git worktree add /tmp/before 2b0fba0``, and this checkout) and runs the same
measurement in a child process per tree (``PYTHONPATH`` and the working directory set to
the tree, so that the child imports that tree's ``feature_store``), alternating the trees
``--repeats`` times on one corpus. Each tree ingests its own store once (not timed); each
repeat then measures, from an empty feature folder and cache:

* the ``mel`` build of all four clip lengths (``FeatureStore.build``), wall and CPU seconds
  (the child and its reaped workers);
* the ``timbre`` build of all four clip lengths (``ViewStore(root, get_view("timbre"))``);
* a selective query on a new reader (the held-out 5 s clips of one genre): the index query
  alone and ``tensors()``, medians of ``--queries`` runs.

It also checks that both trees stored the same features: the sorted xxh3 row digests of every
clip length of both views must be equal. Ratios are ``after / before`` of the medians.

Usage::

    git worktree add /tmp/before 2b0fba0
    .venv/bin/python benchmarks/bench_redesign.py --before /tmp/before --after . [--copies 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cpu() -> float:
    """CPU seconds of this process and of its children that have been waited for."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(fn) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), _cpu()
    fn()
    return time.perf_counter() - t0, _cpu() - c0


def _digests(root: Path) -> str:
    """sha256 of the sorted xxh3 row digests of every view, clip length and array of a store."""
    import hashlib

    import polars as pl

    h = hashlib.sha256()
    for index in sorted((root / "features").glob("*/clip-*/current/index.parquet")):
        df = pl.read_parquet(index)
        for col in sorted(c for c in df.columns if c.startswith("xxh3_")):
            h.update(f"{index.parts[-4].split('-')[0]}/{index.parts[-3]}/{col}".encode())
            h.update(df[col].sort().to_numpy().tobytes())
    return h.hexdigest()


def child(args: argparse.Namespace) -> int:
    """One repeat in one tree: builds and queries, printed as one JSON line."""
    import feature_store
    from feature_store import FeatureStore
    from feature_store.engine.store import ViewStore
    from feature_store.views import get_view

    root, audio = Path(args.store), Path(args.audio)
    shutil.rmtree(root / "features", ignore_errors=True)
    shutil.rmtree(root / "cache", ignore_errors=True)
    mel = _timed(lambda: FeatureStore(root).build(audio_root=audio, workers=args.workers))
    timbre = _timed(lambda: ViewStore(root, get_view("timbre")).build(audio_root=audio, workers=args.workers))
    index_ms, tensors_ms = [], []
    for _ in range(args.queries):
        t0 = time.perf_counter()
        FeatureStore(root).clips(clip_seconds=5, genre="jazz", split="test").collect()
        index_ms.append(1000 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        x, _y, _ = FeatureStore(root).tensors(clip_seconds=5, genre="jazz", split="test")
        tensors_ms.append(1000 * (time.perf_counter() - t0))
    print(json.dumps({
        "module": feature_store.__file__, "mel": mel, "timbre": timbre, "clips": int(x.shape[0]),
        "index_ms": statistics.median(index_ms), "tensors_ms": statistics.median(tensors_ms),
        "digest": _digests(root),
    }))
    return 0


def _run_child(tree: Path, store: Path, audio: Path, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--store", str(store), "--audio", str(audio),
           "--workers", str(args.workers), "--queries", str(args.queries)]
    out = subprocess.run(cmd, cwd=tree, env=env, check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(result["module"]).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"the child for {tree} imported {result['module']}: set up the trees as the docstring says")
    return result


def _ingest(tree: Path, audio: Path, store: Path) -> None:
    code = "import sys; from feature_store import ingest; ingest(sys.argv[1], sys.argv[2])"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, "-c", code, str(audio), str(store)], cwd=tree, env=env, check=True)


def _median(rows: list[dict], key: str, part: int | None = None) -> float:
    return statistics.median(r[key][part] if part is not None else r[key] for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path)
    ap.add_argument("--after", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/gtzan-mini/genres_original")
    ap.add_argument("--copies", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--queries", type=int, default=15)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--audio", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.before is None or not args.source.is_dir():
        print("give --before TREE and a corpus (--source, default ../shared/data/gtzan-mini/genres_original)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_store import replicate

    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench_redesign_"))
    try:
        files = replicate(args.source, tmp / "audio", args.copies)
        trees = {"before": args.before.resolve(), "after": args.after.resolve()}
        for name, tree in trees.items():
            _ingest(tree, tmp / "audio", tmp / name)
        rows: dict[str, list[dict]] = {"before": [], "after": []}
        for r in range(args.repeats):
            for name in (("before", "after") if r % 2 == 0 else ("after", "before")):
                rows[name].append(_run_child(trees[name], tmp / name, tmp / "audio", args))
                x = rows[name][-1]
                print(f"repeat {r + 1} {name}: mel {x['mel'][0]:.2f} s, timbre {x['timbre'][0]:.2f} s, "
                      f"index {x['index_ms']:.2f} ms, tensors {x['tensors_ms']:.2f} ms", flush=True)
        summary = {name: {"mel_wall": _median(v, "mel", 0), "mel_cpu": _median(v, "mel", 1),
                          "timbre_wall": _median(v, "timbre", 0), "timbre_cpu": _median(v, "timbre", 1),
                          "index_ms": _median(v, "index_ms"), "tensors_ms": _median(v, "tensors_ms"),
                          "digests": sorted({x["digest"] for x in v})} for name, v in rows.items()}
        ratios = {k: summary["after"][k] / summary["before"][k] for k in summary["after"] if k != "digests"}
        same = summary["before"]["digests"] == summary["after"]["digests"] and len(summary["after"]["digests"]) == 1
        out = {"date": dt.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "songs": len(files), "workers": args.workers, "repeats": args.repeats,
               "trees": {k: str(v) for k, v in trees.items()}, "summary": summary, "ratios_after_over_before": ratios,
               "same_features": same, "load_before": load_before, "load_after": os.getloadavg()[0], "rows": rows}
        print(json.dumps({k: out[k] for k in ("songs", "summary", "ratios_after_over_before", "same_features",
                                               "load_before", "load_after")}, indent=1))
        if args.json:
            args.json.write_text(json.dumps(out, indent=1))
        return 0 if same else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
