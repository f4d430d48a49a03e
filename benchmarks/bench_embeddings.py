"""Embedding throughput (issue 8): musicnn clip embeddings per second on this machine's cores.

Corpus: ``../shared/data/gtzan-mini`` (100 real songs, read in place, never written). For each
clip length, a cold build of the embeddings view (``first`` mode: one clip per song, so clips
per second = songs per second) into a fresh temporary store root, timed end to end: start-up
(worker processes, the network built from the checkpoint), read + sha256 check, decode +
resample to 16 kHz, log-mel, the network over every 3 s patch, HDF5 + Parquet writing. Side
by side in one run:

* *parallel*: ``workers=2`` (the default on 2 cores): two processes decode and log-mel while
  the network runs in the calling process, TensorFlow on every core;
* *serial*: ``workers=1``: everything in the calling process;
* *floor*: decode + log-mel of every song, no network, across the same 2 processes: what
  any embedding pipeline must spend before the network runs.

Usage::

    nice .venv/bin/python benchmarks/bench_embeddings.py [--clips 1 5 15 30] [--serial 5 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from feature_store import ingest  # noqa: E402
from feature_store.embeddings import EmbeddingStore  # noqa: E402
from feature_store.embeddings import musicnn as mn  # noqa: E402


def _floor_one(path: str) -> int:
    from feature_store.audio import decode

    return mn.log_mel(decode(path, sr=mn.SR).y).shape[0]


def floor(paths: list[str], workers: int) -> float:
    import multiprocessing as mp

    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(_floor_one, paths, chunksize=4))
    return time.perf_counter() - t0


def timed_build(audio: Path, work: Path, name: str, clip: int, workers: int) -> dict:
    root = work / name
    ingest(audio, root)
    t0 = time.perf_counter()
    rep = EmbeddingStore(root).build(audio_root=audio, clip_seconds=[clip], workers=workers)
    seconds = time.perf_counter() - t0
    clips = rep.clip_lengths[clip]["clips"]
    return {
        "clip_seconds": clip, "workers": workers, "seconds": seconds, "clips": clips,
        "clips_per_second": clips / seconds, "patches_per_clip": rep.clip_lengths[clip]["patches_per_clip"],
        "embed_ms_per_clip_in_worker": rep.clip_lengths[clip]["embed_ms_per_clip"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "gtzan-mini")
    ap.add_argument("--clips", type=int, nargs="+", default=[1, 5, 15, 30])
    ap.add_argument("--serial", type=int, nargs="*", default=[5, 30], help="clip lengths also timed with workers=1")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    audio = args.data / "genres_original"
    paths = sorted(str(p) for p in audio.rglob("*") if p.is_file())
    work = Path(tempfile.mkdtemp(prefix="bench-emb-"))
    res: dict = {
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average_before": os.getloadavg(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "nice .venv/bin/python benchmarks/bench_embeddings.py " + " ".join(sys.argv[1:]),
        "songs": len(paths),
        "weights_sha256": mn.weights_sha256("MSD_musicnn"),
        "floor_seconds": floor(paths, args.workers),
        "builds": [],
    }
    print(f"floor (decode + log-mel, {args.workers} processes): {res['floor_seconds']:.1f} s", flush=True)
    for clip in args.clips:
        b = timed_build(audio, work, f"par-{clip}", clip, args.workers)
        res["builds"].append(b)
        print(f"{clip:2d} s, workers={args.workers}: {b['clips']} clips in {b['seconds']:.1f} s = "
              f"{b['clips_per_second']:.2f} clips/s", flush=True)
        if clip in args.serial:
            s = timed_build(audio, work, f"ser-{clip}", clip, 1)
            res["builds"].append(s)
            print(f"{clip:2d} s, workers=1: {s['clips']} clips in {s['seconds']:.1f} s = "
                  f"{s['clips_per_second']:.2f} clips/s", flush=True)
    res["load_average_after"] = os.getloadavg()
    print()
    print(f"| clip | patches / clip | workers | clips / s | seconds for {len(paths)} songs | vs floor |")
    print("|---|---|---|---|---|---|")
    for b in res["builds"]:
        print(f"| {b['clip_seconds']} s | {b['patches_per_clip']} | {b['workers']} | {b['clips_per_second']:.2f} | "
              f"{b['seconds']:.1f} | {b['seconds'] / res['floor_seconds']:.1f}x |")
    print(f"| floor: decode + log-mel only | – | {args.workers} | {len(paths) / res['floor_seconds']:.2f} | "
          f"{res['floor_seconds']:.1f} | 1.0x |")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
