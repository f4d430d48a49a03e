"""Costs of our default ``cnn`` against the study's ``seed_cnn`` on 30 s clips, in one run.

Each model trains in its own fresh Python process (so that peak RSS is that model's alone) on
the same 30 s feature store, with the same batch size, epochs and validation share; the models
alternate over ``--repeats`` rounds and medians are reported, with the speed ratio per round. Reported:
parameters, ``.keras`` MB, seconds per epoch (median of the epochs after the first, which also
builds the graph), peak RSS sampled during the run, and inference ms per clip; then the ratios.

Goals (issue 4): ``cnn`` >= 3x faster per epoch, <= 1/20 of the parameters, peak RSS <= 3 GB at
batch 32.

Usage::

    nice python benchmarks/bench_models.py [--data ../shared/data/gtzan-mini] [--epochs 3]
        [--models seed_cnn cnn] [--repeats 2] [--work DIR] [--json out.json]

Without ``--data`` it uses ``../shared/data/gtzan-mini`` when present, else it writes the
synthetic demo corpus (10 songs per genre, 30 s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_MINI = REPO.parent / "shared" / "data" / "gtzan-mini"


def build_store(data: Path | None, work: Path, clip_seconds: int = 30) -> tuple[Path, str]:
    """Ingest ``data`` (or the demo corpus) and build its ``first``-mode store at ``clip_seconds``."""
    from feature_store.demo import write_demo_corpus
    from feature_store.ingestion import ingest
    from feature_store.params import FeatureParams
    from feature_store.store import FeatureStore

    if data is None:
        data = write_demo_corpus(work / "demo", songs_per_genre=10, duration=30.0)
        label = "synthetic demo corpus, 10 songs x 10 genres, 30 s"
    else:
        label = str(data)
    root = work / "store"
    ingest(data, root)
    FeatureStore(root, params=FeatureParams(mode="first")).build(audio_root=data, clip_seconds=[clip_seconds])
    return root, label


def one(model: str, store: str, out: str, epochs: int, batch_size: int, clip_seconds: int) -> None:
    """Train one model (in this process) and write its metrics to ``out``."""
    from feature_store.params import FeatureParams
    from training.train import TrainConfig, train_model

    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, patience=epochs, validation_share=0.1, seed=0)
    r = train_model(store_root=store, model_root=Path(out).parent / "models", model=model, clip_seconds=clip_seconds,
                    params=FeatureParams(mode="first"), config=cfg)
    Path(out).write_text(json.dumps(r.to_dict()))


def machine() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
        keep = [ln for ln in lines if ln.split(":")[0] in ("Architecture", "CPU(s)", "Model name", "Thread(s) per core")]
        return "; ".join(" ".join(ln.split()) for ln in keep)
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED_MINI if SHARED_MINI.is_dir() else None)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--models", nargs="+", default=["seed_cnn", "cnn"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--clip-seconds", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--store", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        one(a.one[0], a.store, a.one[1], a.epochs, a.batch_size, a.clip_seconds)
        return 0

    work = a.work or Path(tempfile.mkdtemp(prefix="bench_models_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    store, label = build_store(a.data, work, a.clip_seconds)
    print(f"store built in {time.perf_counter() - t0:.0f} s: {label}", flush=True)
    # Alternate the models (A B B A A B ...) so that both see the same mix of load from other
    # processes on a shared machine; each repeat gives one ratio, and the median is reported.
    results: dict[str, list[dict]] = {m: [] for m in a.models}
    for rep in range(a.repeats):
        order = a.models if rep % 2 == 0 else list(reversed(a.models))
        for m in order:
            out = work / f"{m}-{rep}.json"
            cmd = [sys.executable, __file__, "--one", m, str(out), "--store", str(store), "--epochs", str(a.epochs),
                   "--batch-size", str(a.batch_size), "--clip-seconds", str(a.clip_seconds)]
            subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
            results[m].append(json.loads(out.read_text()))
            c = results[m][-1]["costs"]
            print(f"repeat {rep} {m}: {c['parameters']:,} params, {c['steady_seconds_per_epoch']:.1f} s/epoch, "
                  f"peak RSS {c['peak_rss_mb']:.0f} MB, {c['inference_ms_per_clip']:.1f} ms/clip", flush=True)

    def med(m: str, key: str) -> float:
        return float(np.median([r["costs"][key] for r in results[m]]))

    print()
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d')}; data: {label}; {a.clip_seconds} s clips, first mode; "
          f"batch {a.batch_size}; {a.epochs} epochs; train clips {results[a.models[0]][0]['train_clips']}; "
          f"{a.repeats} alternating repeats, medians")
    print()
    print("| model | parameters | .keras MB | s / epoch | peak RSS MB | ms / clip |")
    print("|---|---|---|---|---|---|")
    for m in a.models:
        print(f"| {m} | {results[m][0]['costs']['parameters']:,} | {med(m, 'model_mb'):.2f} | "
              f"{med(m, 'steady_seconds_per_epoch'):.2f} | {med(m, 'peak_rss_mb'):.0f} | "
              f"{med(m, 'inference_ms_per_clip'):.2f} |")
    if "seed_cnn" in results and "cnn" in results:
        ratios = [s["costs"]["steady_seconds_per_epoch"] / c["costs"]["steady_seconds_per_epoch"]
                  for s, c in zip(results["seed_cnn"], results["cnn"], strict=True)]
        p_ratio = results["cnn"][0]["costs"]["parameters"] / results["seed_cnn"][0]["costs"]["parameters"]
        peak = max(r["costs"]["peak_rss_mb"] for r in results["cnn"])
        print()
        print(f"cnn vs seed_cnn: {np.median(ratios):.1f}x faster per epoch (per repeat: "
              f"{', '.join(f'{x:.1f}' for x in ratios)}; goal >= 3), {p_ratio:.4f} of the parameters (goal <= 0.05), "
              f"cnn peak RSS {peak:.0f} MiB = {peak * 2**20 / 1e9:.2f} GB (goal <= 3 GB)")
    if a.json:
        a.json.write_text(json.dumps({m: [r["costs"] for r in rs] for m, rs in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
