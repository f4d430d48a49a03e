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
    """Confusion matrix [true, predicted] of argmax predictions (scikit-learn's).

    Parameters
    ----------
    probs : array [shape=(n, n_classes)]
    labels : array [shape=(n,)]
    n_classes : int

    Returns
    -------
    np.ndarray [shape=(n_classes, n_classes)]
        Counts, int64; a class absent from both labels and predictions has a zero row and column.
    """
    from sklearn.metrics import confusion_matrix

    p = _check_probs(probs)
    y = np.asarray(labels, dtype=np.int64)
    if p.shape[0] == 0:
        return np.zeros((n_classes, n_classes), dtype=np.int64)
    return confusion_matrix(y, p.argmax(axis=1), labels=np.arange(n_classes)).astype(np.int64)


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    """Recall per true class from a confusion matrix (NaN where a class has no examples).

    The same as scikit-learn's ``recall_score(average=None, zero_division=nan)`` on the
    predictions the matrix counts; computed from the matrix so that callers need not keep the
    predictions.
    """
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def macro_f1_score(y_true: Any, y_pred: Any) -> float:
    """Macro-averaged F1 over the classes present in ``y_true`` (scikit-learn's ``f1_score``).

    A class that is only predicted, never true, counts against the precision of the others but
    gets no F1 of its own; NaN when there are no labels.
    """
    from sklearn.metrics import f1_score

    y_true = np.asarray(y_true, dtype=np.int64)
    if y_true.size == 0:
        return float("nan")
    present = np.unique(y_true)
    return float(f1_score(y_true, np.asarray(y_pred, dtype=np.int64), labels=present, average="macro",
                          zero_division=0))


def evaluate(probs: Any, labels: Any, song_ids: Sequence[str], *, n_classes: int) -> dict[str, Any]:
    """Clip- and song-level metrics in one JSON-ready dict.

    Song-level figures use the mean probability over each song's clips
    (:func:`song_level`). ``study_metric_accuracy`` is the study's ``indexOfMax`` metric on
    clips, shown beside the true (argmax) accuracy. Recalls are per genre, ``None`` for a genre
    absent from the labels; confusion matrices are [true, predicted] counts.

    Parameters
    ----------
    probs : array [shape=(clips, n_classes)]
    labels : array [shape=(clips,)]
    song_ids : sequence of str [shape=(clips,)]
    n_classes : int

    Returns
    -------
    dict
        ``clips``, ``songs``, ``clip_accuracy``, ``song_accuracy``, ``study_metric_accuracy``,
        ``clip_macro_f1``, ``song_macro_f1``, ``song_recall``, ``clip_recall``,
        ``clip_confusion``, ``song_confusion``.
    """
    if len(song_ids) != np.asarray(labels).shape[0]:
        raise ParameterError(f"song_ids has {len(song_ids)} entries for {np.asarray(labels).shape[0]} labels")
    p = _check_probs(probs)
    y = np.asarray(labels)
    sp, sy, _ = song_level(p, y, song_ids)
    cm_clip = confusion(p, y, n_classes)
    cm_song = confusion(sp, sy, n_classes)
    pred, song_pred = p.argmax(axis=1), sp.argmax(axis=1)
    return {
        "clips": int(p.shape[0]),
        "songs": int(sp.shape[0]),
        "clip_accuracy": argmax_accuracy(p, y),
        "song_accuracy": argmax_accuracy(sp, sy),
        "study_metric_accuracy": study_accuracy(p, y),
        "clip_macro_f1": macro_f1_score(y, pred),
        "song_macro_f1": macro_f1_score(sy, song_pred),
        "song_recall": [None if np.isnan(v) else float(v) for v in per_class_recall(cm_song)],
        "clip_recall": [None if np.isnan(v) else float(v) for v in per_class_recall(cm_clip)],
        "clip_confusion": cm_clip.tolist(),
        "song_confusion": cm_song.tolist(),
    }


def summarize_runs(runs: Sequence[Any], keys: Sequence[str] = (
    "song_accuracy", "clip_accuracy", "study_metric_accuracy", "song_macro_f1", "clip_macro_f1"
)) -> dict[str, dict[str, float]]:
    """Mean, sample standard deviation and n of metrics over runs (seeds).

    Parameters
    ----------
    runs : sequence of RunRecord
        E.g. from :func:`training.runner.train_seeds`.
    keys : sequence of str
        Metrics (:class:`training.record.Metrics` names) to summarise.

    Returns
    -------
    dict
        ``{key: {"mean": m, "std": s, "n": n}}``; ``std`` is 0 for a single run.
    """
    out: dict[str, dict[str, float]] = {}
    for k in keys:
        vals = np.array([v for v in (r.metrics.get(k) for r in runs) if v is not None], dtype=float)
        out[k] = {
            "mean": float(vals.mean()) if vals.size else float("nan"),
            "std": float(vals.std(ddof=1)) if vals.size > 1 else 0.0,
            "n": int(vals.size),
        }
    return out


def label_recall(run: Any, label: str, *, level: str = "song") -> float | None:
    """Recall of one of the run's labels in its held-out metrics (``None`` if it had no examples).

    Parameters
    ----------
    run : RunRecord
    label : str
        One of ``run.labels``.
    level : {'song', 'clip'}

    Raises
    ------
    ParameterError
        ``label`` is not one of the run's, or an unknown level.
    """
    if level not in ("song", "clip"):
        raise ParameterError(f"level must be 'song' or 'clip', got {level!r}")
    if label not in run.labels:
        raise ParameterError(f"unknown label {label!r}; the run's labels are {list(run.labels)}")
    return getattr(run.metrics, f"{level}_recall")[run.labels.index(label)]
