"""Per-song decode cost on real clips (issue 13): our ``decode`` against bare libsndfile.

Corpus: ``../shared/data/gtzan-mini`` (100 FLAC clips of about 30 s at 22050 Hz). Measured
side by side, in one run, each song in turn, ``--repeats`` times (medians per song):

1. *libsndfile*: ``soundfile.read`` of the file's bytes, float32 (the baseline);
2. *decode*: ``feature_store.audio.decode(path, sr=22050, data=bytes)``, as a build's worker
   calls it (the bytes are already in memory);
3. *inspect*: ``feature_store.catalog.inspect_file``, what ingest does per file (hash, header,
   decode, notes).

The JSON output also holds a SHA-256 of every decoded array, so that two runs (before and
after a change) can be compared sample for sample with ``--compare other.json``.

Usage::

    .venv/bin/python benchmarks/bench_decode.py [--repeats 5] [--json out.json] [--compare before.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from feature_store.audio import decode  # noqa: E402
from feature_store.catalog import inspect_file  # noqa: E402

DEFAULT_CORPUS = REPO.parent.parent / "shared" / "data" / "gtzan-mini"


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--compare", type=Path, help="a JSON of an earlier run: compare the decoded samples")
    args = ap.parse_args()
    genre_root = args.corpus / "genres_original"
    if not genre_root.is_dir():
        sys.exit(f"no corpus at {args.corpus}")
    files = sorted(p for p in genre_root.rglob("*") if p.is_file() and not p.name.startswith("."))
    times: dict[str, list[list[float]]] = {"libsndfile": [], "decode": [], "inspect": []}
    digests: dict[str, str] = {}
    for path in files:
        data = path.read_bytes()
        y = decode(path, sr=22050, data=data).y
        digests[path.relative_to(genre_root).as_posix()] = hashlib.sha256(y.tobytes()).hexdigest()
        per = {k: [] for k in times}
        for _ in range(args.repeats):  # alternate, so that a busy moment hits all three
            per["libsndfile"].append(_timed(lambda: sf.read(io.BytesIO(data), dtype="float32")))  # noqa: B023
            per["decode"].append(_timed(lambda: decode(path, sr=22050, data=data)))  # noqa: B023
            per["inspect"].append(_timed(lambda: inspect_file(path, genre_root=genre_root, genre=path.parent.name)))  # noqa: B023
        for k in times:
            times[k].append(per[k])
    med = {k: statistics.median(statistics.median(v) for v in rows) for k, rows in times.items()}
    total = {k: sum(statistics.median(v) for v in rows) for k, rows in times.items()}
    out = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "files": len(files),
        "repeats": args.repeats,
        "median_ms_per_song": {k: round(v * 1e3, 2) for k, v in med.items()},
        "total_s": {k: round(v, 3) for k, v in total.items()},
        "decode_over_libsndfile": round(total["decode"] / total["libsndfile"], 3),
        "inspect_over_libsndfile": round(total["inspect"] / total["libsndfile"], 3),
        "sha256": digests,
    }
    if args.compare:
        before = json.loads(args.compare.read_text())["sha256"]
        same = [k for k in digests if before.get(k) == digests[k]]
        out["identical_to_compare"] = f"{len(same)}/{len(digests)}"
    print(json.dumps({k: v for k, v in out.items() if k != "sha256"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
