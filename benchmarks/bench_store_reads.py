"""Reads of a kept sharded store, again: on the local folder and over S3, and an S3 put's memory.

Three measurements on a store that ``bench_shard_scale.py --keep`` left (its
``n<size>/w<workers>/objects`` folder), each printed as one JSON line:

* ``local``: a new reader's selective query (one label, the ``seed`` scheme's test part, at
  5 s) and ``read_clips`` of the same clips, then the same after compacting the 5 s table again
  (``--recompact``: a table compacted by an older version is rewritten in today's layout);
* ``s3``: the 5 s objects and index table uploaded as they are to ``--s3-url`` (the endpoint
  and keys from the AWS variables, as ``make object-store`` writes them in
  ``.object-store/env``), the arrays read back checked equal to the local folder's, then the
  query and ``read_clips`` over S3, ``read_clips`` with one object at a time and with 8
  (``Storage.concurrent_reads``), alternated;
* ``put``: the peak memory above resting (``VmHWM``) of one S3 ``put_new`` of a ``--put-mib``
  file, against a baseline that holds the file's chunks and their join (what ``bytes_of``
  did before it appended the chunks to one buffer), each in its own process.

Usage::

    .venv/bin/python benchmarks/bench_store_reads.py local --objects DIR [--recompact]
    set -a; . .object-store/env; set +a
    .venv/bin/python benchmarks/bench_store_reads.py s3 --objects DIR --s3-url s3://gtzan/reads
    .venv/bin/python benchmarks/bench_store_reads.py put --s3-url s3://gtzan/put --put-mib 112
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

CLIP, LABEL = 5, 5


def _median(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of ``fn``."""
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return round(1000 * float(np.median(walls)), 1), round(1000 * float(np.median(cpus)), 1)


def _selection(url_or_dir: str):
    from feature_store.engine.sharded import index_table, read_clips
    from feature_store.engine.storage import open_storage
    from feature_store.views import get_view

    view = get_view("mel")

    def query():
        return index_table(open_storage(url_or_dir), view, clip_seconds=CLIP).scan(
            labels=[LABEL], scheme="seed", parts=["test"]).collect()

    def clips():
        return read_clips(open_storage(url_or_dir), view, clip_seconds=CLIP, labels=[LABEL], scheme="seed",
                          parts=["test"], arrays=["mel"])
    return query, clips


def local(objects: Path, *, recompact: bool) -> dict:
    import bench_shard_scale as b

    from feature_store.engine.sharded import index_table
    from feature_store.engine.storage import open_storage
    from feature_store.views import get_view

    uri = index_table(open_storage(objects), get_view("mel"), clip_seconds=CLIP).uri
    out: dict = {"query": b.query(uri, arrays=["mel"], label=LABEL, repeats=15)}
    if recompact:
        from feature_store.engine.lake import IndexTable

        t0 = time.perf_counter()
        IndexTable(uri, arrays=["mel"]).compact()
        out["recompact_s"] = round(time.perf_counter() - t0, 2)
        out["query_recompacted"] = b.query(uri, arrays=["mel"], label=LABEL, repeats=15)
    out["read_clips"] = b.read_selection(objects, clip=CLIP, label=LABEL, repeats=15)
    return out


def s3(objects: Path, url: str) -> dict:
    from feature_store.engine.storage import open_storage
    from feature_store.engine.storage.s3 import S3Storage
    from feature_store.views import get_view

    view, store = get_view("mel"), open_storage(url)
    root = objects / f"mel-{view.hash()}" / f"clip-{CLIP:02d}s"
    t0, n = time.perf_counter(), 0
    for p in sorted(root.rglob("*")):
        if p.is_file():
            store.put_new(f"{root.relative_to(objects).as_posix()}/{p.relative_to(root).as_posix()}", p)
            n += 1
    out: dict = {"uploaded": n, "upload_s": round(time.perf_counter() - t0, 1)}
    query, clips = _selection(url)
    rows, got = clips()
    want = _selection(str(objects))[1]()[1]
    if not np.array_equal(got.arrays["mel"], want.arrays["mel"]):
        raise SystemExit("the clips read over S3 are not the local folder's")
    out.update(clips=rows.height, objects=rows["object_key"].n_unique(), query_ms=_median(query, 15))
    for _ in range(2):
        for k in (1, 8):
            S3Storage.concurrent_reads = k
            out.setdefault(f"read_clips_ms_{k}_at_once", []).append(_median(clips, 7))
    return out


def _joined(data, *, what: str):
    """The baseline: the file's chunks held in a list, then joined (the data twice)."""
    from feature_store.engine.storage import base

    h = hashlib.sha256()
    parts = list(base.put_chunks(data, h, what=what))
    return (parts[0] if len(parts) == 1 else b"".join(parts)), h.hexdigest()


def put_once(url: str, path: Path, *, baseline: bool) -> float:
    """MiB above resting memory at the peak of one put of ``path`` (this process)."""
    from feature_store.engine.storage import open_storage
    from feature_store.engine.storage import s3 as s3mod

    if baseline:
        s3mod.bytes_of = _joined
    store = open_storage(url)
    store.put_new(f"warm/{uuid.uuid4().hex}", b"x" * 1000)

    def kib(field: str) -> int:
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field))
    Path("/proc/self/clear_refs").write_text("5")
    resting = kib("VmRSS:")
    store.put_new(f"put/{uuid.uuid4().hex}", path)
    return round((kib("VmHWM:") - resting) / 1024, 1)


def put(url: str, mib: int) -> dict:
    out: dict = {"mib": mib}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "object.bin"
        path.write_bytes(np.random.default_rng(0).bytes(mib << 20))
        for _ in range(2):
            for kind in ("baseline", "today"):
                peak = subprocess.run([sys.executable, __file__, "put-one", "--s3-url", url, "--path", str(path)]
                                      + (["--baseline"] if kind == "baseline" else []),
                                      check=True, capture_output=True, text=True).stdout.strip()
                out.setdefault(f"{kind}_peak_mib", []).append(float(peak))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["local", "s3", "put", "put-one"])
    parser.add_argument("--objects", type=Path, help="the objects folder of a kept bench_shard_scale store")
    parser.add_argument("--s3-url")
    parser.add_argument("--recompact", action="store_true")
    parser.add_argument("--put-mib", type=int, default=112)
    parser.add_argument("--path", type=Path)
    parser.add_argument("--baseline", action="store_true")
    args = parser.parse_args(argv)
    if args.what == "put-one":
        print(put_once(args.s3_url, args.path, baseline=args.baseline))
        return 0
    head = {"what": args.what, "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                                     capture_output=True, text=True).stdout.strip(),
            "load_before": round(os.getloadavg()[0], 2)}
    if args.what == "local":
        body = local(args.objects, recompact=args.recompact)
    elif args.what == "s3":
        body = s3(args.objects, args.s3_url)
    else:
        body = put(args.s3_url, args.put_mib)
    print(json.dumps({**head, **body, "load_after": round(os.getloadavg()[0], 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
