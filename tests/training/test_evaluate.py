"""Metrics: the study's indexOfMax bug for bug, song-level aggregation, F1, recall, summaries."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from feature_store.errors import ParameterError
from training.evaluate import (
    argmax_accuracy,
    confusion,
    evaluate,
    index_of_max,
    label_recall,
    macro_f1_score,
    per_class_recall,
    song_level,
    study_accuracy,
    summarize_runs,
)
from training.record import Metrics


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ([0.5, 0.2, 0.3], 0),  # p[0] is the largest: nothing beats it
        ([0.1, 0.6, 0.3], 2),  # both beat p[0]; the study returns the last, not the argmax 1
        ([0.1, 0.3, 0.6], 2),  # here last and argmax agree
        ([0.05, 0.7, 0.2, 0.01, 0.04], 2),  # argmax 1, but 2 is the last above 0.05
        ([0.2, 0.2, 0.2, 0.2, 0.2], 0),  # ties never beat p[0]
        ([0.0, 0.9, 0.05, 0.05], 3),
    ],
)
def test_index_of_max_reproduces_the_study(row, expected):
    assert index_of_max(row) == expected


def test_study_metric_against_true_accuracy_on_hand_made_rows():
    probs = np.array([
        [0.60, 0.10, 0.10, 0.20],  # true 0: both right
        [0.05, 0.80, 0.10, 0.05],  # true 1: argmax right, indexOfMax says 3
        [0.10, 0.20, 0.70, 0.00],  # true 2: both right (2 is the last above 0.10)
        [0.40, 0.50, 0.05, 0.05],  # true 1: both right
    ])
    labels = np.array([0, 1, 2, 1])
    assert argmax_accuracy(probs, labels) == 1.0
    assert study_accuracy(probs, labels) == 0.75


def test_a_perfect_classifier_scores_far_below_one_with_the_studys_metric():
    rng = np.random.default_rng(0)
    n, k = 2000, 10
    labels = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), labels] += 6.0  # the true class always has the highest probability
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert argmax_accuracy(probs, labels) == 1.0
    # right only when the truth is class 0, or the last class that beats p[0]
    assert 0.1 < study_accuracy(probs, labels) < 0.5


def test_song_level_is_the_mean_probability_over_segments():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
    labels = np.array([0, 0, 0, 1, 1])
    songs = ["a", "a", "a", "b", "b"]
    p, y, ids = song_level(probs, labels, songs)
    assert ids == ["a", "b"]
    np.testing.assert_allclose(p, [[1.4 / 3, 1.6 / 3], [0.35, 0.65]])
    assert y.tolist() == [0, 1]
    # clip by clip "a" is 1/3 right; as a song its mean probability says class 1: wrong
    m = evaluate(probs, labels, songs, n_classes=2)
    assert m["clip_accuracy"] == pytest.approx(0.4)
    assert m["song_accuracy"] == 0.5 and m["songs"] == 2 and m["clips"] == 5
    assert m["song_confusion"] == [[0, 1], [0, 1]]


def test_song_with_two_labels_is_rejected():
    with pytest.raises(ParameterError, match="different labels"):
        song_level(np.full((2, 2), 0.5), np.array([0, 1]), ["a", "a"])


def test_confusion_recall_and_macro_f1():
    probs = np.eye(3)[[0, 0, 1, 2, 2, 2]]
    labels = np.array([0, 1, 1, 2, 2, 0])
    cm = confusion(probs, labels, 3)
    assert cm.tolist() == [[1, 0, 1], [1, 1, 0], [0, 0, 2]]
    np.testing.assert_allclose(per_class_recall(cm), [0.5, 0.5, 1.0])
    # F1 per class: 2tp / (2tp + fp + fn) = 2/4, 2/3, 4/5
    assert macro_f1_score(labels, probs.argmax(axis=1)) == pytest.approx(np.mean([0.5, 2 / 3, 0.8]))


def test_macro_f1_counts_only_true_classes_and_predicted_only_ones_as_false_positives():
    # class 3 is only predicted, never true: it gets no F1 of its own
    labels, pred = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 3, 2])
    # class 0: 2/3, class 1: tp 1, fp 1, fn 1 -> 1/2, class 2: 1
    assert macro_f1_score(labels, pred) == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    cm = confusion(np.eye(4)[pred], labels, 4)
    assert cm[3].sum() == 0 and cm[:, 3].sum() == 1
    np.testing.assert_allclose(per_class_recall(cm), [0.5, 0.5, 1.0, np.nan])
    assert np.isnan(macro_f1_score([], []))
    assert confusion(np.zeros((0, 3)), [], 3).tolist() == [[0] * 3] * 3


def test_recall_of_absent_genres_is_none():
    m = evaluate(np.eye(10)[[0, 5, 5]], np.array([0, 5, 0]), ["a", "b", "c"], n_classes=10)
    assert m["song_recall"][0] == 0.5 and m["song_recall"][5] == 1.0
    assert m["song_recall"][1] is None and m["clip_recall"][9] is None
    run = SimpleNamespace(metrics=Metrics.from_dict(m), labels=["blues", "classical", "country", "disco", "hiphop",
                                                                 "jazz", "metal", "pop", "reggae", "rock"])
    assert label_recall(run, "blues") == 0.5 and label_recall(run, "jazz") == 1.0
    assert label_recall(run, "classical") is None
    with pytest.raises(ParameterError, match="label 'polka'"):
        label_recall(run, "polka")
    other = SimpleNamespace(metrics=Metrics.from_dict(evaluate(np.eye(3)[[0, 2]], np.array([0, 1]), ["a", "b"],
                                                               n_classes=3)), labels=["alpha", "beta", "gamma"])
    assert label_recall(other, "alpha") == 1.0 and label_recall(other, "beta") == 0.0
    assert label_recall(other, "gamma", level="clip") is None


def test_summarize_runs_gives_mean_std_and_n():
    runs = [SimpleNamespace(metrics=Metrics(song_accuracy=v, clip_accuracy=v)) for v in (0.5, 0.7, 0.9)]
    s = summarize_runs(runs, keys=["song_accuracy"])["song_accuracy"]
    assert s["mean"] == pytest.approx(0.7) and s["std"] == pytest.approx(0.2) and s["n"] == 3
    one = summarize_runs(runs[:1], keys=["song_accuracy"])["song_accuracy"]
    assert one["std"] == 0.0 and one["n"] == 1


def test_bad_shapes_are_clear():
    with pytest.raises(ParameterError, match="shape"):
        argmax_accuracy(np.ones(3), np.ones(3))
    with pytest.raises(ParameterError, match="song_ids"):
        evaluate(np.full((2, 2), 0.5), np.array([0, 1]), ["a"], n_classes=2)
