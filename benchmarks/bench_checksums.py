"""What the checksums cost (issue 13): the mel build and the selective query of this checkout
against the code just before them, side by side in one run.

``--against REF`` (default ``5aab373``, the parent of ``51c930a``, the commit that added the per-row
digests, Parquet page checksums, checked JSON and cache trailers) is exported to a temporary
folder; every measurement runs in a child process on one tree, the trees alternating
``--rounds`` times, on the corpus of ``bench_store.py`` (``../shared/data/gtzan-mini``
replicated ``--copies`` times, every copy a distinct song). Each tree ingests into a store
root of its own once (not timed).

* *build*: ``FeatureStore(root).build`` of all four clip lengths from an empty store and cache,
  ``--workers`` processes: wall, CPU (the child and its workers) and the main process's CPU;
* *query*: the held-out 5 s clips of one genre on a new ``FeatureStore`` each time (median of
  ``--queries``): ``clips(...).collect()`` alone, and ``tensors(...)``.

Usage::

    .venv/bin/python benchmarks/bench_checksums.py [--against 5aab373] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_decode import export  # noqa: E402
from bench_store import machine, replicate  # noqa: E402

CHILD = textwrap.dedent("""
    import json, resource, shutil, statistics, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from feature_store import FeatureStore, ingest
    audio, root, what, n = Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], int(sys.argv[5])

    def cpu():
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime

    def main():
        if not (root / "catalog.parquet").exists():
            ingest(audio, root)
        out = {}
        if what == "build":
            shutil.rmtree(root / "features", ignore_errors=True)
            shutil.rmtree(root / "cache", ignore_errors=True)
            (m0, k0), t0 = cpu(), time.perf_counter()
            FeatureStore(root).build(audio_root=audio, workers=n)
            (m1, k1), wall = cpu(), time.perf_counter() - t0
            out = {"wall_s": wall, "cpu_s": m1 - m0 + k1 - k0, "main_cpu_s": m1 - m0}
        else:
            t_index, t_tensors = [], []
            for i in range(n + 1):
                store = FeatureStore(root)
                t0 = time.perf_counter()
                store.clips(clip_seconds=5, genre="jazz", split="test").collect()
                t1 = time.perf_counter()
                store = FeatureStore(root)
                t2 = time.perf_counter()
                x = store.tensors(clip_seconds=5, genre="jazz", split="test").x
                t3 = time.perf_counter()
                store.close()
                if i:  # the first is a warm-up
                    t_index.append(t1 - t0)
                    t_tensors.append(t3 - t2)
            out = {"index_query_ms": 1000 * statistics.median(t_index),
                   "tensors_ms": 1000 * statistics.median(t_tensors), "clips": int(x.shape[0])}
        print(json.dumps(out))

    if __name__ == "__main__":
        main()
""")


def child(tree: Path, audio: Path, root: Path, what: str, n: int, script: Path) -> dict:
    proc = subprocess.run([sys.executable, str(script), str(tree), str(audio), str(root), what, str(n)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{what} on {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", default="5aab373", help="the code before the checksums (default: %(default)s)")
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queries", type=int, default=15)
    ap.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "gtzan-mini" / "genres_original")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not args.source.is_dir():
        print(f"no corpus at {args.source}", file=sys.stderr)
        return 2
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_checksums_") as tmp:
        tmp = Path(tmp)
        (tmp / "before").mkdir()
        trees = {"before": export(args.against, tmp / "before"), "now": REPO}
        files = replicate(args.source, tmp / "audio", args.copies)
        # the child is a file (a spawned worker re-imports its main module)
        script = tmp / "child.py"
        script.write_text(CHILD)
        builds: dict[str, list[dict]] = {k: [] for k in trees}
        queries: dict[str, list[dict]] = {k: [] for k in trees}
        for r in range(args.rounds):
            for name, tree in trees.items():
                builds[name].append(child(tree, tmp / "audio", tmp / f"store-{name}", "build", args.workers, script))
                print(f"round {r + 1}: {name} build {builds[name][-1]['wall_s']:.2f} s", flush=True)
        for _r in range(args.rounds):
            for name, tree in trees.items():
                queries[name].append(child(tree, tmp / "audio", tmp / f"store-{name}", "query", args.queries, script))

    def med(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    summary = {name: {**{k: med(builds[name], k) for k in ("wall_s", "cpu_s", "main_cpu_s")},
                      **{k: med(queries[name], k) for k in ("index_query_ms", "tensors_ms")}} for name in trees}
    ratios = {k: summary["now"][k] / summary["before"][k] for k in summary["now"]}
    result = {
        "date": dt.date.today().isoformat(), "machine": machine(),
        "command": "python benchmarks/bench_checksums.py " + " ".join(sys.argv[1:]),
        "against": args.against, "files": len(files), "workers": args.workers, "rounds": args.rounds,
        "loadavg_1min_before_after": [load, os.getloadavg()[0]],
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True).stdout.strip(),
        "builds": builds, "queries": queries, "median": summary, "now_over_before": ratios,
    }
    print(json.dumps({k: result[k] for k in ("median", "now_over_before", "loadavg_1min_before_after")}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
