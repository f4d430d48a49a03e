"""scikit-learn fits turned into plain arrays: the baseline and the vector classifiers share them.

Each fit standardises its features with statistics of the training clips, fits, and hands back
dense layers over all the run's classes (``n_classes``: its labels; a class absent from the
training clips, e.g. one only the held-out store has, gets a -1e4 bias and is never predicted), so that nothing of scikit-learn is stored or needed to predict.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation (floored at 1e-6) of ``x`` [shape=(clips, features)]."""
    return x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)


def full_classes(w: np.ndarray, b: np.ndarray, classes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Map sklearn's output layer over ``classes`` onto all ``n_classes`` genres.

    Absent genres get a -1e4 bias (never predicted). A binary sklearn model keeps one column
    ``z`` for ``classes[1]``; it becomes the softmax pair ``(-z/2, z/2)``, whose softmax is
    exactly ``(1 - sigmoid(z), sigmoid(z))``.

    Returns
    -------
    w : np.ndarray [shape=(features, n_classes)]
    b : np.ndarray [shape=(n_classes,)]
    """
    out_w = np.zeros((w.shape[0], n_classes))
    out_b = np.full(n_classes, -1e4)
    if classes.size == 2 and w.shape[1] == 1:
        out_w[:, classes[0]], out_w[:, classes[1]] = -w[:, 0] / 2, w[:, 0] / 2
        out_b[classes[0]], out_b[classes[1]] = -b[0] / 2, b[0] / 2
    else:
        out_w[:, classes], out_b[classes] = w, b
    return out_w, out_b


def fit_logreg(xs: np.ndarray, y: np.ndarray, *, C: float, max_iter: int, class_weighting: bool, seed: int,
               n_classes: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Multinomial L2 logistic regression (lbfgs) on standardised features.

    Returns
    -------
    w : np.ndarray [shape=(features, n_classes)]
    b : np.ndarray [shape=(n_classes,)]
    iterations : int
    """
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, max_iter=max_iter, class_weight="balanced" if class_weighting else None,
                             random_state=seed)
    clf.fit(xs, y)
    w, b = full_classes(clf.coef_.T, clf.intercept_, clf.classes_.astype(int), n_classes)
    return w, b, int(np.max(clf.n_iter_))


def fit_mlp(
    xs: np.ndarray, y: np.ndarray, *, hidden_units: int, alpha: float, max_iter: int, class_weighting: bool, seed: int,
    n_classes: int,
) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, Any]]:
    """One hidden ReLU layer (Adam) on standardised features.

    Returns
    -------
    weights, biases : list of np.ndarray
        ``[(features, hidden), (hidden, n_classes)]`` and their biases.
    history : dict
        ``iterations`` and the ``loss`` curve.
    """
    from sklearn.neural_network import MLPClassifier

    sample_weight = None
    if class_weighting:
        counts = np.bincount(y, minlength=n_classes).astype(float)
        sample_weight = y.size / (np.count_nonzero(counts) * counts[y])
    clf = MLPClassifier(hidden_layer_sizes=(hidden_units,), alpha=alpha, max_iter=max_iter, random_state=seed,
                        early_stopping=False)
    try:
        clf.fit(xs, y, sample_weight=sample_weight)
    except TypeError:  # scikit-learn < 1.7 has no sample_weight for MLPs
        clf.fit(xs, y)
    w_out, b_out = full_classes(clf.coefs_[-1], clf.intercepts_[-1], clf.classes_.astype(int), n_classes)
    history = {"iterations": [float(clf.n_iter_)], "loss": [float(v) for v in clf.loss_curve_]}
    return [np.asarray(clf.coefs_[0]), w_out], [np.asarray(clf.intercepts_[0]), b_out], history
