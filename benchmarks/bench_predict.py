"""Predict on long files (issue 13): peak memory and time against the file's duration.

Each measurement runs in a fresh child process: imports, the run loaded
(:class:`training.predict.Predictor`), then ``Predictor.predict_file`` on one file, which is
what ``gtzan predict`` runs per file. The child reports:

* ``load_mib``: its peak resident set (``VmHWM``) once the run is loaded, before the file;
* ``peak_mib``: its peak resident set after the file (``VmHWM``, or ``ru_maxrss`` of any
  child process it waited for, whichever is larger; not its own ``ru_maxrss``, which Linux
  carries over from the parent through fork and exec);
* ``wall_s`` and ``cpu_s``: wall-clock and CPU time (user + system, every thread) of
  ``predict_file`` alone.

Baselines, measured in the same run and in children of their own:

* the same predict on a 30 s file (``0.5`` min): the fixed cost of a file;
* ``stream``: :func:`feature_store.audio_stream.stream` of the same file at the view's rate and
  nothing else, what reading the file costs, so that the report shows what predict adds.

Files are built from real audio: the clips of ``../shared/data/gtzan-mini`` (FLAC, 22050 Hz
mono) concatenated, in sorted order and cycling, to 0.5, 7.5, 15, 30 and 60 minutes, as
22050 Hz mono FLAC and as 44.1 kHz stereo FLAC (resampled with soxr, right channel 0.8 of
the left), written block by block into ``--work`` (a temporary folder by default, never the
repository). The models are trained there too, quickly, on a demo store of 3 songs per
genre (6 s): ``cnn`` and ``crnn_small`` for one epoch and ``timbre_logreg``, on 5 s clips
(720 windows in an hour). With ``--cli`` the 60-minute files also go through the real
command line (``gtzan predict --run ...``, in process in the child) for its end-to-end peak.

The children run under an address-space limit (``--cap`` GiB): a regression ends in a
``MemoryError`` that is reported, it does not take the machine down.

Usage::

    flock /tmp/gtzan-bench.lock .venv/bin/python benchmarks/bench_predict.py
        [--models cnn,crnn_small,timbre_logreg] [--minutes 7.5,15,30,60] [--variants mono22k,stereo44k]
        [--rounds 1] [--cli] [--work DIR] [--cap 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent.parent / "shared" / "data" / "gtzan-mini"
CLIP_SECONDS = 5
BASE_MINUTES = 0.5
VARIANTS = {"mono22k": (22050, 1), "stereo44k": (44100, 2)}

SETUP_CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    work, models, clip = Path(sys.argv[2]), sys.argv[3].split(","), int(sys.argv[4])
    from feature_store.demo import write_demo_corpus
    from feature_store.engine.store import ViewStore
    from feature_store.ingestion import ingest
    from feature_store.store import FeatureStore
    from feature_store.views import get_view
    from training.config import TrainConfig
    from training.families import get_family
    from training.runner import train_model
    audio = write_demo_corpus(work / "demo", songs_per_genre=3, duration=6.0)
    store = work / "store"
    ingest(audio, store)
    runs = {}
    for name in models:
        view = get_family(name).view
        if view == "mel":
            FeatureStore(store).build(audio_root=audio, clip_seconds=[clip], workers=1)
        else:
            ViewStore(store, get_view(view)).build(audio_root=audio, clip_seconds=[clip], workers=1)
        config = TrainConfig(epochs=1, seed=0) if view == "mel" else None
        r = train_model(store_root=store, model_root=work / "models", model=name, clip_seconds=clip, config=config)
        runs[name] = {"run_dir": str(r.run_dir), "sr": get_view(view).sample_rate}
    print(json.dumps(runs))
""")

PREDICT_CHILD = textwrap.dedent("""
    import json, resource, sys, time
    sys.path.insert(0, sys.argv[1])
    what, run_dir, path, cap = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    resource.setrlimit(resource.RLIMIT_AS, (cap << 30, cap << 30))

    def hwm_kib():
        with open("/proc/self/status") as fh:
            own = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
        return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)

    def cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    out = {}
    try:
        if what == "stream":  # run_dir is the rate here
            from feature_store.audio_stream import stream
            out["load_mib"] = round(hwm_kib() / 1024)
            t0, c0 = time.perf_counter(), cpu()
            out["samples"] = int(sum(b.size for b in stream(path, sr=int(run_dir))))
        else:
            from training.predict import Predictor
            p = Predictor(run_dir)
            out["load_mib"] = round(hwm_kib() / 1024)
            t0, c0 = time.perf_counter(), cpu()
        if what == "predict":
            res = p.predict_file(path)
            out.update(windows=int(res.window_starts.size), duration=res.duration, genre=res.genre,
                       probabilities=[round(float(v), 6) for v in res.probabilities])
        elif what == "cli":
            from pipelines.cli import main
            try:
                main(["predict", path, "--run", run_dir], prog_name="gtzan")
            except SystemExit as exc:
                out["exit"] = exc.code
        out["wall_s"] = round(time.perf_counter() - t0, 3)
        out["cpu_s"] = round(cpu() - c0, 3)
    except MemoryError as exc:
        out["error"] = "MemoryError: " + str(exc)[:100]
    out["peak_mib"] = round(hwm_kib() / 1024)
    print(json.dumps(out))
""")


# ---------------------------------------------------------------------------------------
# the long files
# ---------------------------------------------------------------------------------------
def write_long(out: Path, clips: list[Path], *, minutes: float, sr: int, channels: int) -> Path:
    """``minutes`` of the ``clips`` one after the other (cycling), as FLAC at ``sr`` with
    ``channels``, written clip by clip (memory: one clip)."""
    import numpy as np
    import soundfile as sf
    import soxr

    need = int(round(minutes * 60 * sr))
    done, k = 0, 0
    with sf.SoundFile(out, "w", samplerate=sr, channels=channels, format="FLAC", subtype="PCM_16") as f:
        while done < need:
            y, clip_sr = sf.read(clips[k % len(clips)], dtype="float32")
            k += 1
            if clip_sr != sr:
                y = soxr.resample(y, clip_sr, sr).astype(np.float32)
            y = y[: need - done]
            f.write(y if channels == 1 else np.stack([y, 0.8 * y], axis=1))
            done += y.size
    return out


def prepare_files(folder: Path, corpus: Path, minutes: list[float], variants: list[str]) -> dict:
    clips = sorted((corpus / "genres_original").glob("*/*.flac"))
    if not clips:
        sys.exit(f"no FLAC clips under {corpus / 'genres_original'}")
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[float, Path]] = {}
    for v in variants:
        sr, ch = VARIANTS[v]
        files[v] = {}
        for m in [BASE_MINUTES, *minutes]:
            path = folder / f"{v}-{m:g}min.flac"
            if not path.exists():
                tmp = path.with_suffix(".part.flac")
                write_long(tmp, clips, minutes=m, sr=sr, channels=ch)
                tmp.rename(path)
            files[v][m] = path
    return files


def prepare_models(work: Path, models: list[str]) -> dict[str, dict]:
    """Run folders of ``models`` trained under ``work/setup``, and their views' rates (reused
    when already there)."""
    marker = work / "runs.json"
    runs = json.loads(marker.read_text()) if marker.exists() else {}
    if any(m not in runs for m in models):
        setup = work / "setup"
        if setup.exists():
            import shutil

            shutil.rmtree(setup)
        runs = child(SETUP_CHILD, REPO, setup, ",".join(models), CLIP_SECONDS)
        if "error" in runs:
            sys.exit(f"training the models failed: {runs['error']}")
        marker.write_text(json.dumps(runs))
    return runs


# ---------------------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------------------
def child(code: str, *args: object) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=REPO)
    if proc.returncode:
        tail = proc.stderr.strip().splitlines()
        return {"error": tail[-1] if tail else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.splitlines()[-1])


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def measure(runs: dict[str, str], rates: dict[str, int], files: dict, *, minutes: list[float], rounds: int, cap: int,
            cli: bool) -> dict:
    """Every (model, variant, duration) in a child, ``rounds`` times, alternating; the stream
    baseline once per round, variant, duration and rate."""
    raw: dict = {}
    for _ in range(rounds):
        for v, by_minutes in files.items():
            for m in [BASE_MINUTES, *minutes]:
                for sr in sorted(set(rates.values())):
                    r = child(PREDICT_CHILD, REPO, "stream", sr, by_minutes[m], cap)
                    raw.setdefault("stream", {}).setdefault(v, {}).setdefault(sr, {}).setdefault(m, []).append(r)
                for model, run_dir in runs.items():
                    r = child(PREDICT_CHILD, REPO, "predict", run_dir, by_minutes[m], cap)
                    raw.setdefault(model, {}).setdefault(v, {}).setdefault(m, []).append(r)
    if cli:
        for v, by_minutes in files.items():
            for model, run_dir in runs.items():
                r = child(PREDICT_CHILD, REPO, "cli", run_dir, by_minutes[max(minutes)], cap)
                raw.setdefault("cli", {}).setdefault(model, {})[v] = r
    return raw


def summarize(raw: dict, runs: dict[str, str], rates: dict[str, int], minutes: list[float]) -> dict:
    """Per model and variant: peak memory (the largest over rounds), median times, and ratios
    against the 30 s file and against streaming the same file."""
    def med(rs: list[dict], key: str) -> float | None:
        vals = [r[key] for r in rs if key in r]
        return round(statistics.median(vals), 3) if vals else None

    out: dict = {}
    lo, hi = min(minutes), max(minutes)
    for model in runs:
        for v, by_m in raw[model].items():
            st = raw["stream"][v][rates[model]]
            rows = {}
            for m, rs in by_m.items():
                errors = sorted({r["error"] for r in rs if "error" in r})
                wall, s_wall = med(rs, "wall_s"), med(st[m], "wall_s")
                rows[f"{m:g}"] = {
                    "load_mib": max((r.get("load_mib", 0) for r in rs), default=None),
                    "peak_mib": max((r.get("peak_mib", 0) for r in rs), default=None),
                    "wall_s": wall, "cpu_s": med(rs, "cpu_s"),
                    "s_per_audio_min": round(wall / m, 3) if wall is not None else None,
                    "windows": rs[0].get("windows"),
                    "stream_peak_mib": max(r.get("peak_mib", 0) for r in st[m]),
                    "stream_wall_s": s_wall,
                    "predict_over_stream": round(wall / s_wall, 1) if wall and s_wall else None,
                    **({"errors": errors} if errors else {}),
                }
            a, b, base = rows[f"{lo:g}"], rows[f"{hi:g}"], rows[f"{BASE_MINUTES:g}"]
            ratio = hi / lo

            def over(key: str, x: dict = a, y: dict = b) -> float | None:
                return round(y[key] / x[key], 2) if x.get(key) and y.get(key) else None

            out.setdefault(model, {})[v] = {
                "rows": rows,
                f"wall_{hi:g}_over_{lo:g}": over("wall_s"),
                f"cpu_{hi:g}_over_{lo:g}": over("cpu_s"),
                "linear_would_be": ratio,
                f"peak_{hi:g}_minus_{BASE_MINUTES:g}_mib": (b["peak_mib"] - base["peak_mib"])
                if b.get("peak_mib") and base.get("peak_mib") else None,
                f"peak_{hi:g}_over_{BASE_MINUTES:g}": over("peak_mib", base, b),
            }
    return out


def table(summary: dict) -> str:
    """The figures as Markdown rows (model, variant, minutes, peak, times, ratios)."""
    lines = ["| model | file | minutes | windows | peak RSS MiB (loaded) | predict s (CPU s) | s per audio min | "
             "stream s (peak MiB) | predict / stream |", "|---|---|---|---|---|---|---|---|---|"]
    for model, by_v in summary.items():
        for v, s in by_v.items():
            for m, r in s["rows"].items():
                lines.append(f"| {model} | {v} | {m} | {r['windows']} | {r['peak_mib']} ({r['load_mib']}) | "
                             f"{r['wall_s']} ({r['cpu_s']}) | {r['s_per_audio_min']} | {r['stream_wall_s']} "
                             f"({r['stream_peak_mib']}) | {r['predict_over_stream']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--models", default="cnn,crnn_small,timbre_logreg")
    ap.add_argument("--minutes", default="7.5,15,30,60")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--cli", action="store_true", help="also run `gtzan predict` on the longest files")
    ap.add_argument("--work", type=Path, help="folder for the files and models, kept (default: temporary)")
    ap.add_argument("--cap", type=int, default=8, help="address-space limit of the children, GiB")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not (args.corpus / "genres_original").is_dir():
        sys.exit(f"no corpus at {args.corpus}")
    models = args.models.split(",")
    minutes = sorted(float(m) for m in args.minutes.split(","))
    variants = args.variants.split(",")
    if unknown := set(variants) - set(VARIANTS):
        sys.exit(f"unknown variants {sorted(unknown)}; choose from {sorted(VARIANTS)}")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        if REPO in [work.resolve(), *work.resolve().parents]:
            sys.exit("--work must be outside the repository")
        work.mkdir(parents=True, exist_ok=True)
        load_before = loadavg()
        setup = prepare_models(work, models)
        runs = {m: setup[m]["run_dir"] for m in models}
        rates = {m: int(setup[m]["sr"]) for m in models}
        files = prepare_files(work / "files", args.corpus, minutes, variants)
        load_start = loadavg()
        raw = measure(runs, rates, files, minutes=minutes, rounds=args.rounds, cap=args.cap, cli=args.cli)
        result = {
            "date": dt.datetime.now().isoformat(timespec="seconds"),
            "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores",
            "python": platform.python_version(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "load_1min": {"before_setup": load_before, "before_measuring": load_start, "after": loadavg()},
            "clip_seconds": CLIP_SECONDS,
            "summary": summarize(raw, runs, rates, minutes),
            "cli": raw.get("cli"),
            "raw": raw,
        }
    shown = {k: v for k, v in result.items() if k != "raw"}
    print(json.dumps(shown, indent=2))
    print(table(result["summary"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
