"""Delta Lake against Iceberg for the feature index (issue 19): why the index is a Delta table.

Measured in one run, for both formats, on the same synthetic index rows (10 labels, the
three split schemes, object key and row, an xxh3 stored as int64, lineage columns):

1. *commit*: the latency of one shard's commit of ``--shard-rows`` rows (median and p90
   over the commits of the small table below).
2. *query*: a new reader's selective query (one label, one split part: ``seed == test``)
   at ``--small`` rows in ``--shards`` shard commits and at ``--large`` rows in as many
   commits (bigger shards); the median of ``--repeats`` new readers, and the data files the
   query read against the table's total. For Delta also after ``compact()`` (one file per
   label), what a table that many small commits wrote needs.
3. *concurrent*: ``--procs`` processes (spawned) each committing ``--per-proc`` shards at
   once: rows lost, wall time, and ``retries``: for Delta the commits that delta-rs rebased
   over concurrent commits (each shard commit records the version it read), for Iceberg
   the commits pyiceberg and this script tried again after a ``CommitFailedException``.

Delta is :class:`feature_store.engine.lake.IndexTable` (deltalake, delta-rs) on a local
folder: its commits (one checksummed file per label, flushed to disk, committed with the
idempotent application transaction), and its checked reads. Iceberg is
pyiceberg with a SQL catalog on SQLite (the cluster would use its PostgreSQL: the same
optimistic compare-and-swap of the metadata pointer) and a warehouse in a local folder,
partitioned by identity(label); a conflict (``CommitFailedException``) is retried here after
a refresh. Iceberg has no atomic per-task idempotence: a retried task would have to look for
its id in snapshot summaries first, a read-then-write race.

Usage::

    .venv/bin/python benchmarks/bench_table_format.py [--small 20000] [--large 200000] [--shards 200] \
        [--shard-rows 100] [--procs 4] [--per-proc 25] [--repeats 5] [--json out.json]

Needs ``pyiceberg[sql-sqlite]`` (the ``bench`` extra: ``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_store import machine  # noqa: E402

from feature_store.engine.lake import IndexTable, Lineage  # noqa: E402
from feature_store.engine.lake.records import to_stored  # noqa: E402

LABELS = 10
LINEAGE = Lineage(params_hash="p" * 16, code_version="bench", run_id="bench-run")


def rows(shard: int, n: int) -> pl.DataFrame:
    """``n`` index rows of one shard (deterministic)."""
    key = (pl.int_range(n, eager=True) * 7919 + shard * 104729) % 1000
    return pl.DataFrame({
        "song_id": [f"s{shard}.{k // 3}" for k in range(n)],
        "clip_id": [f"s{shard}.{k // 3}#05s#{k % 3:02d}" for k in range(n)],
        "genre": [f"g{(k * 31 + shard) % LABELS}" for k in range(n)],
        "label": [(k * 31 + shard) % LABELS for k in range(n)],
        "seed": ["test" if v < 200 else "train" for v in key.to_list()],
        "stratified": ["valid" if v % 5 == 0 else "train" for v in key.to_list()],
        "fault_filtered": ["excluded" if v % 11 == 0 else "train" for v in key.to_list()],
        "object_key": [f"shards/{shard:05d}-0123456789abcdef.h5"] * n,
        "object_row": list(range(n)),
        "xxh3_clips": pl.Series([(shard * 2654435761 + k * 40503) * 11400714819323198485 % 2**64 for k in range(n)],
                                dtype=pl.UInt64),
    })


# -- Delta ------------------------------------------------------------------------------------
def delta_commit(uri: str, shard: int, n: int) -> int:
    """Commit one shard; returns the retries it needed."""
    return IndexTable(uri).commit_shard(rows(shard, n), shard=shard, task_id=f"t{shard}", lineage=LINEAGE).retries


def delta_query(uri: str) -> tuple[float, int, int]:
    """Seconds of a new reader's selective query, files read, rows."""
    t0 = time.perf_counter()
    df = IndexTable(uri).scan(labels=[3], scheme="seed", parts=["test"]).collect()
    took = time.perf_counter() - t0
    return took, len(IndexTable(uri).files(labels=[3], scheme="seed", parts=["test"])), df.height


# -- Iceberg ----------------------------------------------------------------------------------
def iceberg_catalog(folder: str):
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog("bench", uri=f"sqlite:///{folder}/catalog.db", warehouse=f"file://{folder}/warehouse")


def iceberg_create(folder: str) -> None:
    from pyiceberg.transforms import IdentityTransform

    cat = iceberg_catalog(folder)
    cat.create_namespace_if_not_exists("idx")
    arrow = iceberg_arrow(rows(0, 1)).schema
    table = cat.create_table("idx.clips", schema=arrow)
    with table.update_spec() as spec:
        spec.add_field("label", IdentityTransform(), "label")


def iceberg_arrow(df: pl.DataFrame):
    import pyarrow as pa

    t = to_stored(df).with_columns(
        pl.lit(LINEAGE.params_hash).alias("params_hash"), pl.lit(LINEAGE.code_version).alias("code_version"),
        pl.lit(LINEAGE.run_id).alias("run_id"), pl.lit("t").alias("task_id"), pl.lit(0, pl.Int64).alias("shard"),
    ).to_arrow()
    return t.cast(pa.schema([pa.field(f.name, pa.string() if pa.types.is_large_string(f.type)
                                      or pa.types.is_string_view(f.type) else f.type) for f in t.schema]))


def iceberg_commit(folder: str, shard: int, n: int, tries: int = 200) -> int:
    from pyiceberg.exceptions import CommitFailedException

    data = iceberg_arrow(rows(shard, n))
    cat = iceberg_catalog(folder)
    for attempt in range(tries):
        try:
            cat.load_table("idx.clips").append(data)
            return attempt
        except CommitFailedException:
            time.sleep(0.005 * (attempt + 1))
        except Exception as exc:  # SQLite's "database is locked" under concurrent writers
            if "locked" not in str(exc):
                raise
            time.sleep(0.005 * (attempt + 1))
    raise RuntimeError(f"shard {shard}: {tries} conflicts in a row")


def iceberg_query(folder: str) -> tuple[float, int, int]:
    from pyiceberg.expressions import And, EqualTo

    t0 = time.perf_counter()
    table = iceberg_catalog(folder).load_table("idx.clips")
    scan = table.scan(row_filter=And(EqualTo("label", 3), EqualTo("seed", "test")))
    files = len(list(scan.plan_files()))
    df = scan.to_arrow()
    return time.perf_counter() - t0, files, df.num_rows


# -- the run ----------------------------------------------------------------------------------
def fill(fmt: str, where: str, *, total: int, shards: int) -> list[float]:
    """Commit ``shards`` shards of ``total`` rows in all, one after the other; their seconds."""
    n = total // shards
    out = []
    for s in range(shards):
        t0 = time.perf_counter()
        (delta_commit if fmt == "delta" else iceberg_commit)(where, s, n)
        out.append(time.perf_counter() - t0)
    return out


def queries(fmt: str, where: str, repeats: int) -> dict[str, float | int]:
    runs = [(delta_query if fmt == "delta" else iceberg_query)(where) for _ in range(repeats)]
    return {"median_ms": round(1000 * statistics.median(r[0] for r in runs), 2), "files_read": runs[0][1],
            "rows": runs[0][2]}


def total_files(fmt: str, where: str) -> int:
    if fmt == "delta":
        return len(IndexTable(where).files())
    return len(list(iceberg_catalog(where).load_table("idx.clips").scan().plan_files()))


class _Retries(logging.Handler):
    """Counts pyiceberg's own commit retries (it logs each one)."""

    count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "concurrent update" in record.getMessage():
            _Retries.count += 1


def _proc(args: tuple[str, str, int, int, int]) -> int:
    fmt, where, first, count, n = args
    logging.getLogger().addHandler(_Retries())
    commit = delta_commit if fmt == "delta" else iceberg_commit
    return sum(commit(where, s, n) for s in range(first, first + count)) + _Retries.count


def library_retries(where: str) -> int:
    """Commits that delta-rs rebased over concurrent commits (their version is past the one
    they read, which each shard commit records)."""
    return sum(1 for c in IndexTable(where)._load().history()
               if str(c.get("gtzan.read_version", "")).isdigit() and int(c["version"]) > int(c["gtzan.read_version"]) + 1)


def concurrent(fmt: str, where: str, *, procs: int, per_proc: int, n: int) -> dict[str, float | int]:
    jobs = [(fmt, where, p * per_proc, per_proc, n) for p in range(procs)]
    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        retries = pool.map(_proc, jobs)
    wall = time.perf_counter() - t0
    if fmt == "delta":
        got = IndexTable(where).scan().collect().height
        retries.append(library_retries(where))
    else:
        got = iceberg_catalog(where).load_table("idx.clips").scan().to_arrow().num_rows
    return {"commits": procs * per_proc, "rows_expected": procs * per_proc * n, "rows_lost": procs * per_proc * n - got,
            "retries": sum(retries), "wall_s": round(wall, 2)}


def one_format(fmt: str, args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    res: dict[str, object] = {}
    for size in ("small", "large"):
        where = str(tmp / f"{fmt}-{size}")
        os.makedirs(where, exist_ok=True)
        if fmt == "iceberg":
            iceberg_create(where)
        secs = fill(fmt, where, total=getattr(args, size), shards=args.shards)
        entry: dict[str, object] = {"rows": getattr(args, size), "commits": args.shards,
                                    "commit_ms_median": round(1000 * statistics.median(secs), 2),
                                    "commit_ms_p90": round(1000 * sorted(secs)[int(0.9 * len(secs))], 2),
                                    "files": total_files(fmt, where), "query": queries(fmt, where, args.repeats)}
        if fmt == "delta":
            IndexTable(where).compact()
            entry["query_after_compact"] = queries(fmt, where, args.repeats)
            entry["files_after_compact"] = total_files(fmt, where)
        res[size] = entry
        print(fmt, size, json.dumps(entry), flush=True)
    where = str(tmp / f"{fmt}-concurrent")
    os.makedirs(where, exist_ok=True)
    if fmt == "iceberg":
        iceberg_create(where)
    else:
        IndexTable(where).commit_shard(rows(10**6, 1), shard=10**6, task_id="create", lineage=LINEAGE)
    res["concurrent"] = concurrent(fmt, where, procs=args.procs, per_proc=args.per_proc, n=args.shard_rows)
    if fmt == "delta":  # the table's one creation row
        res["concurrent"]["rows_lost"] += 1  # type: ignore[index]
    print(fmt, "concurrent", json.dumps(res["concurrent"]), flush=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=20_000)
    ap.add_argument("--large", type=int, default=200_000)
    ap.add_argument("--shards", type=int, default=200)
    ap.add_argument("--shard-rows", type=int, default=100)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--per-proc", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--formats", nargs="+", default=["delta", "iceberg"], choices=["delta", "iceberg"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import deltalake
    import pyiceberg

    out: dict[str, object] = {"machine": machine(), "deltalake": deltalake.__version__,
                              "pyiceberg": pyiceberg.__version__, "polars": pl.__version__,
                              "load_before": os.getloadavg()[0], "args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="bench-table-format-") as tmp:
        for fmt in args.formats:
            out[fmt] = one_format(fmt, args, Path(tmp))
    out["load_after"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
