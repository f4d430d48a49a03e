"""The evaluation report: the study's table reproduced beside ours, in Markdown."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from feature_store import atomic
from feature_store.params import CLIP_SECONDS

#: Held-out accuracy published by the study (Tables 1-2), by model and clip seconds.
STUDY_RESULTS: dict[str, dict[int, float]] = {
    "seed_cnn": {1: 0.17, 5: 0.21, 15: 0.35, 30: 0.42},
    "seed_rnn": {1: 0.14, 5: 0.21, 15: 0.15, 30: 0.14},
}


def _fmt(values: list[float]) -> str:
    if not values:
        return "–"
    arr = np.asarray(values, dtype=float)
    if arr.size == 1:
        return f"{100 * arr[0]:.0f} %"
    return f"{100 * arr.mean():.0f} ± {100 * arr.std(ddof=1):.0f} %"


def collect(runs: list[dict[str, Any]]) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """Group run metrics by model and clip length."""
    table: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        table[r["model"]][int(r["clip_seconds"])].append(r)
    return table


def best_run(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The (model, clip length) with the highest mean song accuracy over seeds."""
    table = collect(runs)
    best, best_acc = None, -1.0
    for model, by_clip in table.items():
        for clip, rs in by_clip.items():
            acc = float(np.mean([r["metrics"]["song_accuracy"] for r in rs]))
            if acc > best_acc:
                best, best_acc = {"model": model, "clip_seconds": clip, "song_accuracy": acc}, acc
    return best


def accuracy_table(runs: list[dict[str, Any]], *, metric: str = "song_accuracy") -> str:
    """Markdown table shaped like the study's: models x 1/5/15/30 s."""
    table = collect(runs)
    head = "| model | " + " | ".join(f"{c} s" for c in CLIP_SECONDS) + " |"
    sep = "|---|" + "---|" * len(CLIP_SECONDS)
    lines = [head, sep]
    for model in sorted(table):
        cells = [_fmt([r["metrics"][metric] for r in table[model].get(c, [])]) for c in CLIP_SECONDS]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
        if model in STUDY_RESULTS:
            study = [f"{100 * STUDY_RESULTS[model][c]:.0f} %" for c in CLIP_SECONDS]
            lines.append(f"| *{model}, as published* | " + " | ".join(study) + " |")
    return "\n".join(lines)


def cost_table(runs: list[dict[str, Any]]) -> str:
    """Markdown table of parameters, size, seconds per epoch, peak RSS and ms per clip."""
    table = collect(runs)
    lines = [
        "| model | clip | parameters | .keras MB | s / epoch | epochs | peak RSS MB | ms / clip |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model in sorted(table):
        for clip in sorted(table[model]):
            cs = [r["costs"] for r in table[model][clip]]
            lines.append(
                f"| {model} | {clip} s | {cs[0]['parameters']:,} | {np.mean([c['model_mb'] for c in cs]):.2f} | "
                f"{np.mean([c['seconds_per_epoch'] for c in cs]):.2f} | "
                f"{np.mean([c['epochs_run'] for c in cs]):.1f} | {np.max([c['peak_rss_mb'] for c in cs]):.0f} | "
                f"{np.mean([c['inference_ms_per_clip'] for c in cs]):.2f} |"
            )
    return "\n".join(lines)


def write_report(runs: list[dict[str, Any]], out_dir: str | os.PathLike[str], *, title: str = "GTZAN genre recognition") -> Path:
    """Write ``report.md`` into ``out_dir`` (atomically) and return its path.

    Parameters
    ----------
    runs : list of dict
        ``metrics.json`` contents of the runs to report (see :class:`training.train.ModelStore`).
    out_dir : path
    title : str
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not runs:
        body = f"# {title}\n\nNo trained models yet: train some first (`gtzan train`).\n"
        return atomic.write_bytes_atomic(out / "report.md", body.encode())
    schemes = sorted({r["config"]["scheme"] for r in runs})
    modes = sorted({r["feature_params"]["mode"] for r in runs})
    seeds = sorted({r["seed"] for r in runs})
    best = best_run(runs)
    parts = [
        f"# {title}",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Split scheme: {', '.join(schemes)}; "
        f"sampling mode: {', '.join(modes)}; seeds: {seeds} (n = {len(seeds)}); "
        f"held-out clips per run: {sorted({r['test_clips'] for r in runs})}.",
        "",
        "## Held-out song accuracy (true argmax), mean ± std over seeds",
        "",
        accuracy_table(runs, metric="song_accuracy"),
        "",
        "## Held-out clip accuracy (true argmax)",
        "",
        accuracy_table(runs, metric="clip_accuracy"),
        "",
        "## The study's own metric (`indexOfMax`, which is not the argmax)",
        "",
        "The study scored the *last* class whose probability beat class 0. Its published numbers "
        "were computed this way; the column below lets you compare like with like.",
        "",
        accuracy_table(runs, metric="study_metric_accuracy"),
        "",
        "## Costs",
        "",
        cost_table(runs),
        "",
    ]
    if best:
        parts += [
            f"Best model: **{best['model']}** at {best['clip_seconds']} s "
            f"(song accuracy {100 * best['song_accuracy']:.0f} %).",
            "",
        ]
    return atomic.write_bytes_atomic(out / "report.md", "\n".join(parts).encode())
