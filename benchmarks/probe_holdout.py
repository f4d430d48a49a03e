"""Probe holdout benchmark (issue 8): musicnn probes trained on gtzan-mini, tested on gtzan-holdout.

``../shared/data/gtzan-mini`` (100 songs, 10 per genre) trains; ``../shared/data/gtzan-holdout``
(28 blues and 28 jazz songs by other artists) tests. Cross-validation inside gtzan-mini measures
artist recognition, so this is the honest real-audio figure available here (see the data
README). Goal of the issue: worse-genre holdout song recall (the lower of blues and jazz) >= 0.8.

Steps, all through the library:

1. ``ingest`` both folders into temporary store roots (the audio is only read).
2. ``EmbeddingStore.build`` of the MSD musicnn embeddings at 5 s and 30 s (``first`` mode:
   the first N seconds of each song, as the study; ``--modes first segments`` adds every
   non-overlapping 5 s segment, whose song result is the mean over its clips).
3. a probe (``training.families.vector.ProbeConfig``, trained by ``training.runner.train_model``
   with ``test_store_root=holdout``) per classifier and seed:
   trained on every gtzan-mini song, evaluated on every holdout song, published in a
   temporary model store.
4. Table: song recall of blues and jazz on the holdout, their mean and the worse of the
   two, as mean ± std over seeds. The logistic regression (lbfgs) is deterministic, so its
   seeds agree exactly; the MLP's vary.
5. ``--scratch``: from-scratch models of :mod:`training.models` (default ``baseline``, the
   logistic regression on per-band mel mean/std) trained and tested the same way with
   :func:`training.train.train_model` on the mel store, in the same run, for reference.
6. ``--sweep``: the same with other layers and C values. Those are chosen on the holdout,
   so read them as sensitivity, not as a tuned result.

Usage::

    nice .venv/bin/python benchmarks/probe_holdout.py [--seeds 0 1 2 3 4] [--sweep] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from feature_store import FeatureParams, ingest  # noqa: E402
from feature_store.embeddings import EmbeddingStore  # noqa: E402
from feature_store.params import GENRES  # noqa: E402
from training.families.vector import ProbeConfig  # noqa: E402
from training.runner import train_model as _train_model  # noqa: E402


def train_probe(*, config: ProbeConfig, **kw):
    """A probe run through the vector family, as the dict the rows below read."""
    return _train_model(model=config.declaration(), config=config, **kw).to_dict()

BLUES, JAZZ = GENRES.index("blues"), GENRES.index("jazz")


def _row(runs: list[dict]) -> dict:
    b = np.array([r["metrics"]["song_recall"][BLUES] for r in runs], float)
    j = np.array([r["metrics"]["song_recall"][JAZZ] for r in runs], float)
    mean, worse = (b + j) / 2, np.minimum(b, j)

    def ms(v: np.ndarray) -> dict:
        return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0}

    return {
        "seeds": [r["seed"] for r in runs], "blues": ms(b), "jazz": ms(j), "mean": ms(mean), "worse": ms(worse),
        "train_songs": runs[0]["train_songs"], "test_songs": runs[0]["test_songs"],
        "inference_ms_per_clip": float(np.mean([r["costs"]["inference_ms_per_clip"] for r in runs])),
        "embedding_ms_per_clip": float(np.mean([r["costs"].get("embedding_ms_per_clip", 0.0) for r in runs])),
        "train_seconds": float(np.mean([r["costs"]["train_seconds"] for r in runs])),
        "parameters": runs[0]["costs"]["parameters"],
    }


def _fmt(d: dict) -> str:
    return f"{d['mean']:.2f} ± {d['std']:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--clips", type=int, nargs="+", default=[5, 30])
    ap.add_argument("--modes", nargs="+", default=["first"], choices=["first", "segments"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--model", default="MSD_musicnn")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scratch", nargs="*", default=["baseline"], help="from-scratch models to run beside")
    ap.add_argument("--epochs", type=int, default=30, help="epochs of Keras from-scratch models")
    ap.add_argument("--sweep", action="store_true", help="also other layers and C (chosen on the holdout!)")
    ap.add_argument("--work", type=Path, default=None, help="keep stores here (default: a temporary folder)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="probe-holdout-"))
    mini_audio = args.data / "gtzan-mini" / "genres_original"
    hold_audio = args.data / "gtzan-holdout" / "genres_original"
    mini, hold = work / "mini", work / "holdout"
    ingest(mini_audio, mini)
    ingest(hold_audio, hold)
    results: dict = {
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average": os.getloadavg(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "nice .venv/bin/python benchmarks/probe_holdout.py " + " ".join(sys.argv[1:]),
        "model": args.model,
        "builds": {},
        "rows": [],
    }
    configs = [("logreg", ProbeConfig(embedding_model=args.model))]
    configs.append(("mlp", ProbeConfig(classifier="mlp", embedding_model=args.model)))
    if args.sweep:
        for C in (0.01, 0.1, 10.0):
            configs.append((f"logreg C={C:g}", ProbeConfig(embedding_model=args.model, C=C)))
        for layers in (("penultimate",), ("max_pool",), ("tags",), ("max_pool", "mean_pool", "penultimate", "tags")):
            configs.append((f"logreg {'+'.join(layers)}", ProbeConfig(embedding_model=args.model, layers=layers)))
    for mode in args.modes:
        params = FeatureParams(mode=mode)
        for root, audio in ((mini, mini_audio), (hold, hold_audio)):
            t0 = time.perf_counter()
            rep = EmbeddingStore(root, model=args.model, params=params).build(
                audio_root=audio, clip_seconds=args.clips, workers=args.workers
            )
            results["builds"][f"{root.name}/{mode}"] = {
                "seconds": time.perf_counter() - t0, "songs": len(rep.computed) + rep.cached,
                "failed": rep.failed.to_dicts(),
                "clips": {str(c): v["clips"] for c, v in rep.clip_lengths.items()},
            }
            print(f"built {root.name} {mode}: {time.perf_counter() - t0:.0f} s", flush=True)
        for clip in args.clips:
            if mode == "segments" and clip == 30:
                continue  # one 30 s segment per song: the same as `first`
            for label, cfg in configs:
                seeds = args.seeds if (cfg.classifier == "mlp" or label == "logreg") else args.seeds[:1]
                runs = [
                    train_probe(
                        store_root=mini, model_root=work / "models", clip_seconds=clip, params=params,
                        config=dataclasses.replace(cfg, seed=s), test_store_root=hold,
                        variant=f"holdout-{label.replace(' ', '_').replace('=', '').replace('+', '-')}",
                    )
                    for s in seeds
                ]
                row = {"probe": label, "mode": mode, "clip_seconds": clip, **_row(runs)}
                results["rows"].append(row)
                print(
                    f"{label:38s} {mode:8s} {clip:2d} s  blues {_fmt(row['blues'])}  jazz {_fmt(row['jazz'])}  "
                    f"mean {_fmt(row['mean'])}  worse {_fmt(row['worse'])}  (n={len(seeds)})",
                    flush=True,
                )
    for mode in args.modes if args.scratch else []:
        from feature_store import FeatureStore
        from training.train import TrainConfig, train_model

        params = FeatureParams(mode=mode)
        for root, audio in ((mini, mini_audio), (hold, hold_audio)):
            FeatureStore(root, params=params).build(audio_root=audio, clip_seconds=args.clips, workers=args.workers)
        for clip in args.clips:
            if mode == "segments" and clip == 30:
                continue
            for name in args.scratch:
                runs = [
                    train_model(
                        store_root=mini, model_root=work / "models", model=name, clip_seconds=clip, params=params,
                        config=TrainConfig(seed=s, epochs=args.epochs), test_store_root=hold, variant="holdout",
                    ).to_dict()
                    for s in args.seeds
                ]
                row = {"probe": f"from scratch: {name}", "mode": mode, "clip_seconds": clip, **_row(runs)}
                results["rows"].append(row)
                print(f"{row['probe']:38s} {mode:8s} {clip:2d} s  blues {_fmt(row['blues'])}  jazz {_fmt(row['jazz'])}  "
                      f"worse {_fmt(row['worse'])}", flush=True)
    print()
    print("| probe | mode | clip | blues recall | jazz recall | mean | worse | seeds | ms / clip (embedding + probe) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results["rows"]:
        print(
            f"| {r['probe']} | {r['mode']} | {r['clip_seconds']} s | {_fmt(r['blues'])} | {_fmt(r['jazz'])} | "
            f"{_fmt(r['mean'])} | {_fmt(r['worse'])} | {len(r['seeds'])} | {r['inference_ms_per_clip']:.0f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwork folder: {work}")


if __name__ == "__main__":
    main()
