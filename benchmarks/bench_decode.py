"""Decoding cost and memory (issue 13): per-song decode time on real clips, and the peak
memory of ingest, build and streaming on files whose headers lie.

Every measurement runs in a child process on one code tree: this checkout, and with
``--against REF`` also the code of git revision ``REF`` (exported to a temporary folder), so
that before and after are measured side by side in one run, alternating ``--rounds`` times.

1. *Per song*, on ``../shared/data/gtzan-mini`` (100 FLAC clips of about 30 s at 22050 Hz),
   each song in turn ``--repeats`` times (median per song, then the median over rounds):

   * ``libsndfile``: ``soundfile.read`` of the file's bytes, float32 (the baseline);
   * ``decode``: ``feature_store.audio.decode(path, sr=22050, data=bytes)``, as a build's
     worker calls it;
   * ``inspect``: ``feature_store.catalog.inspect_file``, what ingest does per file.

   A SHA-256 of every decoded array tells whether two trees give the same samples.
2. *Memory* (``--memory``), each in a fresh child under a ``--cap`` GiB address-space limit
   (a MemoryError is reported, not suffered): peak RSS of ingest, then of ingest plus a build
   of every clip length, over the lying corpus of ``tests/reliability/_lying.py`` (ten small
   files, an hour of FLAC silence among them, plus ten good songs); and of reading the hour
   of silence whole at 22050 Hz (``stream`` where the tree has it, else ``decode``).

Usage::

    .venv/bin/python benchmarks/bench_decode.py [--against REF] [--rounds 2] [--repeats 3]
        [--memory] [--cap 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent.parent / "shared" / "data" / "gtzan-mini"

TIMING_CHILD = textwrap.dedent("""
    import hashlib, io, json, statistics, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    import soundfile as sf
    from feature_store.audio import decode
    from feature_store.catalog import inspect_file
    genre_root, repeats = Path(sys.argv[2]), int(sys.argv[3])

    def timed(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    out = {"libsndfile": {}, "decode": {}, "inspect": {}, "sha256": {}}
    for path in sorted(p for p in genre_root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        key, data = path.relative_to(genre_root).as_posix(), path.read_bytes()
        out["sha256"][key] = hashlib.sha256(decode(path, sr=22050, data=data).y.tobytes()).hexdigest()
        per = {k: [] for k in ("libsndfile", "decode", "inspect")}
        for _ in range(repeats):  # alternate, so that a busy moment hits all three
            per["libsndfile"].append(timed(lambda: sf.read(io.BytesIO(data), dtype="float32")))
            per["decode"].append(timed(lambda: decode(path, sr=22050, data=data)))
            per["inspect"].append(timed(lambda: inspect_file(path, genre_root=genre_root, genre=path.parent.name)))
        for k, v in per.items():
            out[k][key] = statistics.median(v)
    print(json.dumps(out))
""")

MEMORY_CHILD = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, sys.argv[1])
    what, corpus, work, cap = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    resource.setrlimit(resource.RLIMIT_AS, (cap << 30, cap << 30))
    out = {}
    try:
        if what == "stream_hour":
            import feature_store.audio as A
            hour = corpus + "/genres_original/pop/pop.00099.flac"
            if hasattr(A, "stream"):
                out["samples"] = sum(b.size for b in A.stream(hour, sr=22050))
            else:
                out["samples"] = int(A.decode(hour, sr=22050, nominal_seconds=None).y.size)
        else:
            from feature_store import FeatureStore, ingest
            from feature_store.params import CLIP_SECONDS
            cat = ingest(corpus, work).catalog
            out["quarantined"] = cat.filter(cat["status"] == "quarantined").height
            if what == "ingest_build":
                report = FeatureStore(work).build(audio_root=corpus, clip_seconds=CLIP_SECONDS, workers=1)
                out["failed"] = report.failed.height
    except MemoryError as exc:
        out["error"] = "MemoryError: " + str(exc)[:100]
    with open("/proc/self/status") as fh:  # not ru_maxrss of self: Linux carries the parent's over exec
        hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    out["peak_mib"] = round(max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024)
    print(json.dumps(out))
""")


def export(ref: str, into: Path) -> Path:
    """The files of git revision ``ref`` under ``into``."""
    archive = into / "tree.tar"
    with open(archive, "wb") as fh:
        subprocess.run(["git", "-C", str(REPO), "archive", ref], stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"


def child(code: str, *args: object) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.splitlines()[-1])


def timing(trees: dict[str, Path], corpus: Path, rounds: int, repeats: int) -> dict:
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(rounds):
        for name, tree in trees.items():
            runs[name].append(child(TIMING_CHILD, tree, corpus / "genres_original", repeats))
    out = {}
    for name, rs in runs.items():
        med = {k: {song: statistics.median(r[k][song] for r in rs) for song in rs[0][k]}
               for k in ("libsndfile", "decode", "inspect")}
        total = {k: sum(v.values()) for k, v in med.items()}
        out[name] = {
            "median_ms_per_song": {k: round(statistics.median(v.values()) * 1e3, 2) for k, v in med.items()},
            "total_s": {k: round(v, 3) for k, v in total.items()},
            "decode_over_libsndfile": round(total["decode"] / total["libsndfile"], 3),
            "inspect_over_libsndfile": round(total["inspect"] / total["libsndfile"], 3),
            "sha256": rs[0]["sha256"],
        }
    if len(out) == 2:
        a, b = (out[n]["sha256"] for n in trees)
        out["identical_samples"] = f"{sum(a[k] == b.get(k) for k in a)}/{len(a)}"
    return out


def memory(trees: dict[str, Path], cap: int) -> dict:
    sys.path.insert(0, str(REPO / "tests" / "reliability"))
    from _lying import write_corpus

    out: dict[str, dict] = {name: {} for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp))
        for what in ("ingest", "ingest_build", "stream_hour"):
            for name, tree in trees.items():
                with tempfile.TemporaryDirectory() as work:
                    out[name][what] = child(MEMORY_CHILD, tree, what, corpus, Path(work) / "store", cap)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--against", help="a git revision to measure side by side (the baseline code)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory", action="store_true", help="also measure peak memory on the lying corpus")
    ap.add_argument("--cap", type=int, default=3, help="address-space limit of the memory children, GiB")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not (args.corpus / "genres_original").is_dir():
        sys.exit(f"no corpus at {args.corpus}")
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this checkout": REPO}
        if args.against:
            trees = {args.against: export(args.against, Path(tmp)), **trees}
        result = {
            "date": dt.datetime.now().isoformat(timespec="seconds"),
            "machine": f"{platform.node()} {platform.machine()}",
            "python": platform.python_version(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "timing": timing(trees, args.corpus, args.rounds, args.repeats),
        }
        if args.memory:
            result["memory"] = memory(trees, args.cap)
    shown = json.loads(json.dumps(result))
    for v in shown["timing"].values():
        if isinstance(v, dict):
            v.pop("sha256", None)
    print(json.dumps(shown, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
