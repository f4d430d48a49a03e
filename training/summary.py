"""Runs grouped for the report and its figures: rows by model and variant, cells by clip length.

Both :mod:`training.report` and :mod:`training.figures` read runs (:class:`training.record.RunRecord`)
through these helpers, so neither imports the other's internals.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from training.record import RunRecord

#: Held-out accuracy published by the study (Tables 1-2), by model and clip seconds.
#: The study computed it with its ``indexOfMax``, on the first N seconds of each song.
STUDY_RESULTS: dict[str, dict[int, float]] = {
    "seed_cnn": {1: 0.17, 5: 0.21, 15: 0.35, 30: 0.42},
    "seed_rnn": {1: 0.14, 5: 0.21, 15: 0.15, 30: 0.14},
}

#: Runs grouped by row label, then by clip seconds.
Grouped = dict[str, dict[int, list[RunRecord]]]


def run_label(run: RunRecord) -> str:
    """``model`` or ``model [variant]``: the row a run belongs to."""
    return f"{run.model} [{run.variant}]" if run.variant else run.model


def collect(runs: list[RunRecord]) -> Grouped:
    """Group runs by label (model and variant) and clip length."""
    table: Grouped = defaultdict(lambda: defaultdict(list))
    for r in runs:
        table[run_label(r)][int(r.clip_seconds)].append(r)
    return table


def metric_values(runs: list[RunRecord], metric: str) -> list[float]:
    """The runs' values of ``metric`` (a :class:`~training.record.Metrics` name), those they have."""
    return [float(v) for v in (r.metrics.get(metric) for r in runs) if v is not None]


def best_clip(by_clip: dict[int, list[RunRecord]]) -> int:
    """The clip length of the highest mean song accuracy."""
    return max(sorted(by_clip), key=lambda c: np.mean(metric_values(by_clip[c], "song_accuracy")))


def run_labels(runs: list[RunRecord]) -> list[str]:
    """Every label of the runs, in first-seen order (each run's own order kept)."""
    out: list[str] = []
    for r in runs:
        out += [g for g in r.labels if g not in out]
    return out


def best_run(runs: list[RunRecord]) -> dict[str, Any] | None:
    """The (model, clip length) with the highest mean song accuracy over seeds.

    Returns
    -------
    dict or None
        ``model``, ``variant`` (``""`` for the default set-up), ``clip_seconds``,
        ``song_accuracy`` (mean over seeds) and ``seeds``; None without runs.
    """
    table = collect(runs)
    best, best_acc = None, -1.0
    for label in sorted(table):
        for clip in sorted(table[label]):
            rs = table[label][clip]
            acc = float(np.mean([r.metrics.song_accuracy for r in rs]))
            if acc > best_acc:
                best_acc = acc
                best = {"model": rs[0].model, "variant": rs[0].variant, "clip_seconds": clip,
                        "song_accuracy": acc, "seeds": sorted(r.seed for r in rs)}
    return best
