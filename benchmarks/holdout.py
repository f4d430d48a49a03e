"""The honest real-audio test: train on ``gtzan-mini``, test on songs by other artists.

GTZAN songs with neighbouring numbers are mostly by one artist, so cross-validation inside
``../shared/data/gtzan-mini`` (10 songs per genre) measures artist recognition. The
``gtzan-holdout`` folder holds 28 blues and 28 jazz songs by other artists. Every model here is
trained on all 100 songs of ``gtzan-mini`` and tested on all 56 holdout songs, in ``segments``
mode, songs scored by their mean segment probability, at 5 s and 30 s. Reported per model and
clip length, as mean ± std over seeds: blues recall, jazz recall, their mean and the worse of the
two (a model that answers "jazz" for everything has a mean of 0.5 and a worse of 0.0: the worse
is the figure that counts). Then the same for the seed ensemble of each model (the mean
probability of its seed models), and 5-fold cross-validation inside ``gtzan-mini``
(artist-confounded).

Nothing is tuned on the holdout labels: every set-up below was fixed before it was scored, and
all of them are reported, including the ones that do badly.

Usage::

    nice python benchmarks/holdout.py [--work DIR] [--seeds 0 1 2] [--study-seeds 0]
        [--clips 5 30] [--only cnn ...] [--no-cv] [--json results.json]

Runs already in ``--work`` are reused (delete the folder to start afresh). On the shared 2-core
machine the full run takes over an hour; ``--study-seeds`` sizes the slow study models.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

def setups() -> list[tuple[str, str, str, dict[int, dict[str, Any]], bool]]:
    """One row per set-up: (label, model, variant, TrainConfig overrides per clip length, study model?).

    ``[aug]`` is :data:`training.train.AUGMENT`; at 30 s the variable-length models also train on
    random 5 s crops (a time shift per example and epoch) and are scored on the whole 30 s.
    """
    from training.train import AUGMENT

    aug = {5: dict(AUGMENT), 30: dict(AUGMENT, crop_seconds=5)}
    plain: dict[int, dict[str, Any]] = {5: {}, 30: {}}
    return [
        ("baseline", "baseline", "", plain, False),
        ("cnn [aug]", "cnn", "aug", aug, False),
        ("cnn", "cnn", "", plain, False),
        ("rnn [aug]", "rnn", "aug", aug, False),
        ("crnn_small [aug]", "crnn_small", "aug", aug, False),
        ("seed_cnn", "seed_cnn", "", plain, True),
        ("seed_rnn", "seed_rnn", "", plain, True),
        ("crnn", "crnn", "", plain, True),
    ]


def build(src: Path, root: Path, clips: list[int]) -> Path:
    from feature_store.ingestion import ingest
    from feature_store.params import FeatureParams
    from feature_store.store import FeatureStore

    if not (root / "catalog.parquet").exists():
        ingest(src, root)
    FeatureStore(root, params=FeatureParams(mode="segments")).build(audio_root=src, clip_seconds=clips)
    return root


def run_or_reuse(*, model_root: Path, **kw: Any) -> dict[str, Any]:
    """Train unless the same run (model, clip, seed, variant) is already published."""
    from feature_store.errors import StoreError
    from training.train import ModelStore, train_model

    cfg = kw["config"]
    try:
        cur = ModelStore(model_root).current(params=kw["params"], model=kw["model"], clip_seconds=kw["clip_seconds"],
                                             seed=cfg.seed, variant=kw.get("variant", ""))
        r = json.loads((cur / "metrics.json").read_text())
        if r["config"] == __import__("dataclasses").asdict(cfg):
            r["run_dir"] = str(cur)
            return r
    except StoreError:
        pass
    rec = train_model(model_root=model_root, **kw)
    return {**rec.to_dict(), "run_dir": str(rec.run_dir)}


def ensemble_metrics(rs: list[dict[str, Any]], test_root: Path, clip: int) -> dict[str, Any]:
    """Held-out metrics of the seed ensemble: the mean probability of the runs' models."""
    from feature_store.params import FeatureParams
    from feature_store.datasets.gtzan import GENRES
    from feature_store.store import FeatureStore
    from training.evaluate import evaluate
    from training.models import to_layout
    from training.train import BandNormalizer, load_model

    t = FeatureStore(test_root, params=FeatureParams.from_dict(rs[0]["feature_params"])).tensors(clip_seconds=clip)
    probs = []
    for r in rs:
        d = Path(r["run_dir"])
        norm = BandNormalizer.from_json(json.loads((d / "normalizer.json").read_text()))
        net = load_model(d / "model.keras")
        probs.append(np.asarray(net.predict(to_layout(norm.transform(t.x), r["layout"]), batch_size=64, verbose=0)))
    m = evaluate(np.mean(probs, axis=0), t.y, t.index["song_id"].to_list(), n_classes=len(GENRES))
    return {"metrics": m, "labels": list(GENRES)}


def recalls(rs: list[dict[str, Any]]) -> dict[str, list[float]]:
    def recall(r: dict[str, Any], label: str) -> float | None:
        labels = r.get("labels") or r.get("genres")
        return r["metrics"]["song_recall"][labels.index(label)]

    b = [recall(r, "blues") for r in rs]
    j = [recall(r, "jazz") for r in rs]
    return {"blues": b, "jazz": j, "mean": [(x + y) / 2 for x, y in zip(b, j, strict=True)],
            "worse": [min(x, y) for x, y in zip(b, j, strict=True)]}


def fmt(v: list[float]) -> str:
    a = np.asarray(v, dtype=float)
    return f"{a.mean():.2f} ± {a.std(ddof=1):.2f}" if a.size > 1 else f"{a.mean():.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mini", type=Path, default=SHARED / "gtzan-mini")
    ap.add_argument("--holdout", type=Path, default=SHARED / "gtzan-holdout")
    ap.add_argument("--work", type=Path, default=REPO / "data" / "bench-holdout")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--study-seeds", type=int, nargs="+", default=[0],
                    help="seeds of the slow study models (seed_cnn, seed_rnn, crnn)")
    ap.add_argument("--clips", type=int, nargs="+", default=[5, 30])
    ap.add_argument("--epochs", type=int, default=30, help="epoch cap (the study's 30); early stopping on")
    ap.add_argument("--only", nargs="+", default=None, help="labels of SETUPS to run")
    ap.add_argument("--no-cv", action="store_true")
    ap.add_argument("--cv-setups", nargs="+", default=["baseline", "cnn [aug]"])
    ap.add_argument("--cv-clip", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    if not (a.mini.is_dir() and a.holdout.is_dir()):
        print(f"needs {a.mini} and {a.holdout} (see ../shared/data/README.md)", file=sys.stderr)
        return 2

    from feature_store.params import FeatureParams
    from training.report import write_report
    from training.train import TrainConfig

    params = FeatureParams(mode="segments")
    t0 = time.perf_counter()
    mini = build(a.mini, a.work / "store-mini", a.clips + [a.cv_clip])
    hold = build(a.holdout, a.work / "store-holdout", a.clips)
    print(f"stores ready in {time.perf_counter() - t0:.0f} s", flush=True)
    models_root = a.work / "models"
    results: dict[str, Any] = {"holdout": [], "ensemble": [], "cv": []}
    runs_all = []
    for label, model, variant, per_clip, study in setups():
        if a.only and label not in a.only:
            continue
        seeds = a.study_seeds if study else a.seeds
        for clip in a.clips:
            rs = []
            for s in seeds:
                cfg = TrainConfig(epochs=a.epochs, seed=s, **per_clip[clip])
                t = time.perf_counter()
                r = run_or_reuse(store_root=mini, model_root=models_root, model=model, clip_seconds=clip,
                                 params=params, config=cfg, test_store_root=hold, variant=variant)
                rs.append(r)
                rec = recalls([r])
                print(f"{label:18s} {clip:2d} s seed {s}: blues {rec['blues'][0]:.2f} jazz {rec['jazz'][0]:.2f} "
                      f"({r['costs']['epochs_run']} epochs, {time.perf_counter() - t:.0f} s)", flush=True)
            runs_all += rs
            rec = recalls(rs)
            results["holdout"].append({"label": label, "clip": clip, "seeds": seeds, **rec,
                                       "epochs_run": [r["costs"]["epochs_run"] for r in rs],
                                       "seconds_per_epoch": float(np.mean([r["costs"]["seconds_per_epoch"] for r in rs]))})
            if len(rs) > 1 and model != "baseline":  # the baseline is deterministic: its seeds agree
                results["ensemble"].append({"label": label, "clip": clip, "seeds": seeds,
                                            **recalls([ensemble_metrics(rs, hold, clip)])})

    cv_runs = []
    if not a.no_cv:
        for label, model, variant, per_clip, _study in setups():
            if label not in a.cv_setups:
                continue
            accs = []
            for k in range(5):
                cfg = TrainConfig(epochs=a.epochs, seed=0, scheme="stratified", test_part=f"fold{k}",
                                  **per_clip[a.cv_clip])
                r = run_or_reuse(store_root=mini, model_root=a.work / "models-cv", model=model,
                                 clip_seconds=a.cv_clip, params=params, config=cfg,
                                 variant=f"cv{k}" + (f"-{variant}" if variant else ""))
                cv_runs.append(r)
                accs.append(r["metrics"]["song_accuracy"])
                print(f"CV {label:18s} fold {k}: song accuracy {accs[-1]:.2f}", flush=True)
            results["cv"].append({"label": label, "clip": a.cv_clip, "song_accuracy": accs})

    print()
    print(f"Holdout: trained on {a.mini.name} (100 songs), tested on {a.holdout.name} (28 blues + 28 jazz songs by "
          "other artists); segments mode, song = mean probability over its segments; mean ± std over seeds.")
    print()
    print("| model | clip | seeds | blues recall | jazz recall | mean | worse of the two | epochs run |")
    print("|---|---|---|---|---|---|---|---|")
    for row in results["holdout"]:
        print(f"| {row['label']} | {row['clip']} s | {len(row['seeds'])} | {fmt(row['blues'])} | {fmt(row['jazz'])} | "
              f"{fmt(row['mean'])} | {fmt(row['worse'])} | {fmt(row['epochs_run'])} |")
    if results["ensemble"]:
        print()
        print("Seed ensembles: the mean probability of the seed models above, scored once:")
        print()
        print("| model | clip | models | blues recall | jazz recall | mean | worse of the two |")
        print("|---|---|---|---|---|---|---|")
        for row in results["ensemble"]:
            print(f"| {row['label']} | {row['clip']} s | {len(row['seeds'])} | {fmt(row['blues'])} | {fmt(row['jazz'])} | "
                  f"{fmt(row['mean'])} | {fmt(row['worse'])} |")
    if results["cv"]:
        print()
        print("5-fold cross-validation inside gtzan-mini (ARTIST-CONFOUNDED: folds share artists), song accuracy:")
        print()
        print("| model | clip | folds | song accuracy |")
        print("|---|---|---|---|")
        for row in results["cv"]:
            print(f"| {row['label']} | {row['clip']} s | 5 | {fmt(row['song_accuracy'])} |")
    if runs_all:
        rep = write_report(runs_all, a.work / "report", title="Holdout: gtzan-mini -> gtzan-holdout")
        print(f"\nreport: {rep}")
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
