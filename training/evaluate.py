"""Metrics: true argmax accuracy, the study's buggy ``indexOfMax``, song-level aggregation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from feature_store.errors import ParameterError


def _check_probs(probs: Any) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ParameterError(f"probabilities must have shape (n, classes>=2), got {p.shape}")
    return p


def argmax_accuracy(probs: Any, labels: Any) -> float:
    """Share of rows whose highest probability is the true label.

    Parameters
    ----------
    probs : array [shape=(n, classes)]
    labels : array [shape=(n,)]
    """
    p = _check_probs(probs)
    y = np.asarray(labels)
    if y.shape != (p.shape[0],):
        raise ParameterError(f"labels must have shape ({p.shape[0]},), got {y.shape}")
    if p.shape[0] == 0:
        return float("nan")
    return float(np.mean(p.argmax(axis=1) == y))


def index_of_max(row: Sequence[float]) -> int:
    """The study's ``indexOfMax``, bug for bug.

    It starts from index 0 and returns the *last* index whose probability exceeds
    ``row[0]`` (it never updates the running maximum), not the argmax. A perfect classifier
    therefore scores well below 100 %.

    Examples
    --------
    >>> index_of_max([0.1, 0.6, 0.3])   # 2 beats row[0] too, and comes last
    2
    >>> index_of_max([0.5, 0.2, 0.3])
    0
    """
    best = 0
    for i in range(len(row)):
        if row[i] > row[0]:
            best = i
    return best


def study_accuracy(probs: Any, labels: Any) -> float:
    """Accuracy as the study computed it, with :func:`index_of_max` instead of argmax."""
    p = _check_probs(probs)
    y = np.asarray(labels)
    if p.shape[0] == 0:
        return float("nan")
    return float(np.mean([index_of_max(r) == t for r, t in zip(p, y, strict=True)]))


def song_level(probs: Any, labels: Any, song_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Average clip probabilities per song.

    Returns
    -------
    probs : np.ndarray [shape=(songs, classes)]
        Mean probability over each song's clips.
    labels : np.ndarray [shape=(songs,)]
    songs : list of str
        Song ids in first-seen order.

    Raises
    ------
    ParameterError
        If one song's clips carry different labels.
    """
    p = _check_probs(probs)
    y = np.asarray(labels)
    order: dict[str, list[int]] = {}
    for i, s in enumerate(song_ids):
        order.setdefault(s, []).append(i)
    out_p = np.zeros((len(order), p.shape[1]))
    out_y = np.zeros(len(order), dtype=np.int64)
    for j, (s, idx) in enumerate(order.items()):
        if len(set(y[idx].tolist())) != 1:
            raise ParameterError(f"song {s!r} has clips with different labels")
        out_p[j] = p[idx].mean(axis=0)
        out_y[j] = y[idx[0]]
    return out_p, out_y, list(order)


def confusion(probs: Any, labels: Any, n_classes: int) -> np.ndarray:
    """Confusion matrix [true, predicted] of argmax predictions."""
    p = _check_probs(probs)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    for t, q in zip(np.asarray(labels), p.argmax(axis=1), strict=True):
        cm[int(t), int(q)] += 1
    return cm


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    """Recall per true class (NaN where a class has no examples)."""
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def macro_f1(cm: np.ndarray) -> float:
    """Macro-averaged F1 over the classes present in the true labels."""
    tp = np.diag(cm).astype(float)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    present = cm.sum(axis=1) > 0
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(f1[present].mean()) if present.any() else float("nan")


def evaluate(probs: Any, labels: Any, song_ids: Sequence[str], *, n_classes: int) -> dict[str, Any]:
    """Clip- and song-level metrics in one JSON-ready dict."""
    p = _check_probs(probs)
    y = np.asarray(labels)
    sp, sy, _ = song_level(p, y, song_ids)
    cm_clip = confusion(p, y, n_classes)
    cm_song = confusion(sp, sy, n_classes)
    return {
        "clips": int(p.shape[0]),
        "songs": int(sp.shape[0]),
        "clip_accuracy": argmax_accuracy(p, y),
        "song_accuracy": argmax_accuracy(sp, sy),
        "study_metric_accuracy": study_accuracy(p, y),
        "clip_macro_f1": macro_f1(cm_clip),
        "song_macro_f1": macro_f1(cm_song),
        "song_recall": [None if np.isnan(v) else float(v) for v in per_class_recall(cm_song)],
        "clip_confusion": cm_clip.tolist(),
        "song_confusion": cm_song.tolist(),
    }
