"""`make run` of two source trees, alternated, with the features they stored compared (issue 19).

Issue 19 asks that `make run` on the local backend stays as it was: the same features, and a
wall time within 10 % of the tree before it. This benchmark checks out nothing itself: it takes
two trees, each with its own installed ``.venv`` (for example ``git worktree add --detach
/tmp/before 7f98323 && make -C /tmp/before install``, and this checkout), and runs
``make -s -o .venv/.installed run`` in each (the install step taken as done), alternating the
order every repeat (before, after; after, before; ...), each from an empty ``GTZAN_DATA_DIR``
and a fresh ``DAGSTER_HOME`` as on a fresh clone (as ``bench_make_run.py`` does for one tree).

Per run: wall seconds, CPU seconds of the whole process tree (``RUSAGE_CHILDREN``), the
1-minute load average before and after, and a digest of the features stored: the sha256 of the
sorted xxh3 row digests of every view, clip length and array of the store's current
generations (``bench_redesign.py``'s digest). Ratios are ``after / before`` of the medians; the
features must be equal in every run of both trees.

Usage::

    nice .venv/bin/python benchmarks/bench_run_wall.py --before /tmp/before [--after .] \\
        [--repeats 3] [--run-args "..."] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def store_digest(store: Path) -> str:
    """sha256 of the sorted xxh3 row digests of every view, clip length and array of ``store``."""
    import polars as pl

    h = hashlib.sha256()
    indexes = sorted(store.glob("features/*/clip-*/current/index.parquet"))
    if not indexes:
        raise SystemExit(f"no current generation under {store}/features: did the run build features?")
    for index in indexes:
        df = pl.read_parquet(index)
        for col in sorted(c for c in df.columns if c.startswith("xxh3_")):
            h.update(f"{index.parts[-4]}/{index.parts[-3]}/{col}".encode())
            h.update(df[col].sort().to_numpy().tobytes())
    return h.hexdigest()


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_once(tree: Path, run_args: str) -> dict:
    """One ``make run`` in ``tree`` from empty data and Dagster home folders."""
    with tempfile.TemporaryDirectory(prefix="bench_run_wall_") as tmp:
        env = {**os.environ, "DAGSTER_HOME": f"{tmp}/home", "GTZAN_DATA_DIR": f"{tmp}/data"}
        for var in ("GTZAN_DIR", "GTZAN_STORE_DIR", "GTZAN_MODEL_DIR", "GTZAN_REPORT_DIR", "GTZAN_STORE_URL",
                    "PYTHONPATH", "VIRTUAL_ENV"):
            env.pop(var, None)
        load0, cpu0, t0 = os.getloadavg()[0], _cpu_children(), time.perf_counter()
        proc = subprocess.run(["make", "-s", "-o", ".venv/.installed", "run", f"RUN_ARGS={run_args}"],
                              cwd=tree, env=env, capture_output=True, text=True)
        wall, cpu, load1 = time.perf_counter() - t0, _cpu_children() - cpu0, os.getloadavg()[0]
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"make run failed in {tree} (exit {proc.returncode})")
        return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "load_1min": [round(load0, 2), round(load1, 2)],
                "features_sha256": store_digest(Path(tmp) / "data" / "store")}


def _commit(tree: Path) -> str:
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="the tree before (with its own .venv installed)")
    ap.add_argument("--after", type=Path, default=REPO)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--run-args", default="", help="passed to make as RUN_ARGS")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    for name, tree in trees.items():
        if not (tree / ".venv" / ".installed").exists():
            print(f"{name} tree {tree} has no installed .venv: run `make install` there first", file=sys.stderr)
            return 2
    rows: dict[str, list[dict]] = {"before": [], "after": []}
    for r in range(args.repeats):
        for name in (("before", "after") if r % 2 == 0 else ("after", "before")):
            x = run_once(trees[name], args.run_args)
            rows[name].append(x)
            print(f"repeat {r + 1} {name}: wall {x['wall_s']:.1f} s, cpu {x['cpu_s']:.1f} s, load {x['load_1min']}, "
                  f"features {x['features_sha256'][:16]}", flush=True)
    summary = {name: {"wall_s_median": statistics.median(x["wall_s"] for x in v),
                      "cpu_s_median": statistics.median(x["cpu_s"] for x in v),
                      "features": sorted({x["features_sha256"] for x in v})} for name, v in rows.items()}
    ratios = {k: summary["after"][f"{k}_median"] / summary["before"][f"{k}_median"] for k in ("wall_s", "cpu_s")}
    same = summary["before"]["features"] == summary["after"]["features"] and len(summary["after"]["features"]) == 1
    out = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
           "trees": {k: f"{v} (git {_commit(v)})" for k, v in trees.items()}, "run_args": args.run_args,
           "repeats": args.repeats, "summary": summary, "ratios_after_over_before": ratios,
           "same_features": same, "rows": rows}
    print(json.dumps({k: out[k] for k in ("trees", "summary", "ratios_after_over_before", "same_features")}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
