"""The study's feature pipeline, for comparison only: recompute load + mel per clip length
and pickle the arrays, as its code did.

This is the one place in the repository that writes and reads a pickle, on purpose: it is
the baseline that the feature store replaces. Product code never does
(``tests/test_no_pickle.py``).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def study_features(files: list[tuple[str, Path]], clip_seconds: int) -> list[tuple[np.ndarray, int]]:
    """``librosa.load(file, duration=N)`` then ``power_to_db(melspectrogram(y, sr))`` per file."""
    import librosa

    out = []
    for genre, path in files:
        y, sr = librosa.load(str(path), duration=clip_seconds)
        mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr))
        out.append((mel, GENRES.index(genre)))
    return out


def pickle_features(data: list, path: Path) -> None:
    with open(path, "wb") as fh:
        pickle.dump(data, fh)


def unpickle_features(path: Path) -> list:
    with open(path, "rb") as fh:
        return pickle.load(fh)  # noqa: S301 - our own file, the baseline being measured
