"""Candidate row checksums side by side (issue 13): why the stores digest rows with xxh3-64.

Each candidate hashes the same rows one row at a time, as a reader checks the rows it serves:
rows of the size of a stored 5 s mel clip (128 x 216 float32, 110.6 KB) and of a timbre row
(50 float32, 200 B), ``--mb`` MB of each kind, best of ``--repeats``. Reported per candidate:
GB/s, and ms per song for the bytes of one song's rows in the four clip lengths of the mel
view (1.125 MB, as ``bench_store.py`` counts them). The baseline is a plain copy of the same
bytes (``bytes(row)``), measured in the same run.

Usage::

    .venv/bin/python benchmarks/bench_hashes.py [--mb 256] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import xxhash

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_store import machine  # noqa: E402

#: Bytes of one song's mel rows over the clip lengths 1, 5, 15 and 30 s (float32).
MEL_SONG_BYTES = 1_125_376
CANDIDATES = {
    "copy (baseline)": lambda b: bytes(b),
    "xxh3-64 (chosen)": xxhash.xxh3_64_intdigest,
    "crc32 (zlib)": zlib.crc32,
    "blake2b-64": lambda b: hashlib.blake2b(b, digest_size=8).digest(),
    "md5": lambda b: hashlib.md5(b).digest(),
    "sha256": lambda b: hashlib.sha256(b).digest(),
}


def throughput(fn, rows: list[memoryview], repeats: int) -> float:
    """Best seconds to hash every row once."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for r in rows:
            fn(r)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    kinds = {"mel row (110.6 KB)": (128, 216), "timbre row (200 B)": (50,)}
    out: dict = {"date": dt.date.today().isoformat(), "machine": machine(),
                 "command": "python benchmarks/bench_hashes.py " + " ".join(sys.argv[1:]),
                 "xxhash": xxhash.VERSION, "loadavg_1min_before": os.getloadavg()[0], "kinds": {}}
    for kind, shape in kinds.items():
        row_bytes = 4 * int(np.prod(shape))
        n = max(1, int(args.mb * 1e6 // row_bytes))
        block = rng.standard_normal((n, *shape), dtype=np.float32)
        rows = [memoryview(block[i]).cast("B") for i in range(n)]
        total = n * row_bytes
        res = {}
        for name, fn in CANDIDATES.items():
            s = throughput(fn, rows, args.repeats)
            res[name] = {"seconds": s, "gb_per_s": total / s / 1e9, "ms_per_mel_song": 1000 * s * MEL_SONG_BYTES / total}
            print(f"{kind:<20} {name:<18} {res[name]['gb_per_s']:7.2f} GB/s  "
                  f"{res[name]['ms_per_mel_song']:7.3f} ms per song's mel rows")
        out["kinds"][kind] = {"rows": n, "bytes": total, "candidates": res}
    out["loadavg_1min_after"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
