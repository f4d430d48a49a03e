"""Genre prediction for any audio file, with a trained run from the model store.

A file is decoded under the feature store's audio policy (any format libsndfile reads,
mixed down to mono, resampled with soxr to the rate of the run's view), turned into
full-length features with the run's own :class:`~feature_store.params.FeatureParams`, and cut
into windows of the run's clip length:

* windows start every ``hop_seconds`` (default: the clip length, so they do not overlap),
  as the ``segments`` sampling mode cuts a song;
* when the whole windows leave more than 5 % of a window uncovered at the end, one more
  window is aligned with the end of the file, so every second of the file is seen;
* a file shorter than one window is padded with silence to one window, as the feature
  store pads songs to their nominal length, and the result says by how much.

Each window is classified by the run's model; the file's probabilities are the mean over its
windows, as song accuracy is computed in :mod:`training.evaluate`. Any run of any model
family is predicted the same way: the family (:mod:`training.families`) loads the model, and
the run's feature view (:func:`training.views.file_windows`) computes the windows' features
(mel spectrograms for the mel models, musicnn's own 16 kHz log-mel and clip embeddings for the
probes).

Which run? :func:`choose_run` picks, by default, the best (model, clip length) of the
runs that the evaluation report covers (:func:`training.summary.best_run`), and its best
seed; ``model``, ``clip_seconds`` and ``seed`` narrow the choice.

TensorFlow/Keras are imported only when a model is loaded.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from feature_store.errors import AudioError, ParameterError, StoreError
from feature_store.params import FeatureParams, validate_clip_seconds
from training.choice import RunChoice, choose_run
from training.keras_fit import PREDICT_BATCH
from training.views import file_windows, window_starts, window_stream

__all__ = ["PREDICT_BATCH", "FileFailure", "FilePrediction", "Predictor", "RunChoice", "choose_run", "predict",
           "window_starts"]


# ---------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class FilePrediction:
    """The prediction for one file.

    Attributes
    ----------
    path : str
    labels : tuple of str
        Class names, in the model's label order (the run's :attr:`RunRecord.labels`).
    probabilities : np.ndarray [shape=(labels,)]
        Mean of the window probabilities.
    window_probabilities : np.ndarray [shape=(windows, labels)]
    window_starts : np.ndarray [shape=(windows,)]
        Start of each window, in seconds from the start of the file.
    window_seconds : int
        Length of a window (the model's clip length).
    duration : float
        Seconds of audio in the file.
    padded_seconds : float
        Seconds of silence added because the file is shorter than one window (0 if none).
    source_sr, source_channels : int
        Sample rate and channels of the file.
    """

    path: str
    labels: tuple[str, ...]
    probabilities: np.ndarray
    window_probabilities: np.ndarray
    window_starts: np.ndarray
    window_seconds: int
    duration: float
    padded_seconds: float
    source_sr: int
    source_channels: int

    @property
    def padded(self) -> bool:
        """Whether the file was shorter than one window and padded with silence."""
        return self.padded_seconds > 0

    @property
    def genre(self) -> str:
        """The most probable genre."""
        return self.labels[int(np.argmax(self.probabilities))]

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable genres with their probabilities, best first."""
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(self.labels[i], float(self.probabilities[i])) for i in order]

    def to_dict(self, *, windows: bool = True) -> dict[str, Any]:
        """A JSON-ready dict; ``windows`` adds the per-window probabilities."""
        out: dict[str, Any] = {
            "path": self.path,
            "ok": True,
            "genre": self.genre,
            "top": [{"genre": g, "probability": p} for g, p in self.top(3)],
            "probabilities": {g: float(p) for g, p in zip(self.labels, self.probabilities, strict=True)},
            "duration": self.duration,
            "source_sample_rate": self.source_sr,
            "source_channels": self.source_channels,
            "window_seconds": self.window_seconds,
            "n_windows": int(self.window_starts.size),
            "padded": self.padded,
            "padded_seconds": self.padded_seconds,
        }
        if windows:
            out["windows"] = [
                {
                    "start": float(s),
                    "end": float(min(s + self.window_seconds, max(self.duration, self.window_seconds))),
                    "probabilities": {g: float(p) for g, p in zip(self.labels, row, strict=True)},
                }
                for s, row in zip(self.window_starts, self.window_probabilities, strict=True)
            ]
        return out


@dataclasses.dataclass
class FileFailure:
    """A file that could not be predicted, and why."""

    path: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ok": False, "error": self.error}


# ---------------------------------------------------------------------------------------
# the predictor
# ---------------------------------------------------------------------------------------
class Predictor:
    """A trained run, loaded once, that predicts the genre of audio files.

    Runs of every model family are understood: the run's family
    (:func:`training.families.family_for`) loads its model, and its feature view computes the
    features of a file's windows (:func:`training.views.file_windows`). A file is cut into
    windows of the run's clip length over its whole duration, and its probabilities are the
    mean over the windows.

    Parameters
    ----------
    run_dir : path
        A published run folder (or the run folder holding its ``current`` link).
    max_seconds : float > 0, optional
        Refuse longer files (:class:`~feature_store.audio.AudioTooLongError`); no limit by
        default. Memory does not depend on it: files are streamed in windows.

    Attributes
    ----------
    record : training.record.RunRecord
    labels : tuple of str
        The run's classes, in the order of the model's outputs.
    family : str
        The run's family as recorded (``mel``, ``vector``).
    model : FittedModel
        The loaded model (``predict_proba`` on window features).
    view : training.views.View
    sample_rate, frames : int
        Rate at which files are decoded, and frames of one window of the view's input.

    Raises
    ------
    StoreError
        If the folder is not a complete run or its model cannot be loaded.

    Examples
    --------
    >>> choice = choose_run(model_root="data/models")           # doctest: +SKIP
    >>> pred = Predictor(choice.run_dir).predict_file("song.mp3")  # doctest: +SKIP
    >>> pred.top(3)                                              # doctest: +SKIP
    [('jazz', 0.71), ('blues', 0.12), ('classical', 0.05)]
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, max_seconds: float | None = None) -> None:
        from feature_store import atomic
        from training.families import family_for
        from training.record import RECORD_FILE, RunRecord
        from training.views import training_view

        run_dir = Path(run_dir).expanduser()
        if not run_dir.is_dir():
            raise StoreError(f"no trained run at {run_dir}")
        self.run_dir = atomic.resolve_current(run_dir) or run_dir
        if max_seconds is not None and not (math.isfinite(max_seconds) and max_seconds > 0):
            raise ParameterError(f"max_seconds must be positive, got {max_seconds!r}")
        self.max_seconds = max_seconds
        if not (self.run_dir / RECORD_FILE).is_file():
            raise StoreError(f"{self.run_dir} is not a complete trained run: missing {RECORD_FILE}")
        self.record = RunRecord.load(self.run_dir / RECORD_FILE)
        self.record.check_files(self.run_dir)
        try:
            self.params = FeatureParams.from_dict(self.record.feature_params)
            self.clip_seconds: int = validate_clip_seconds(self.record.clip_seconds)
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"cannot read the run at {self.run_dir}: {exc}") from exc
        self.model_name: str = self.record.model
        self.labels: tuple[str, ...] = tuple(self.record.labels)
        self.family: str = self.record.family
        self.model = family_for(self.record).load(self.run_dir, self.record)
        self.view = training_view(self.record.view, params=self.params, options=self.record.view_options)
        self.view.prepare()  # e.g. musicnn's weights: missing ones fail here, not at the first file
        self.sample_rate: int = self.view.sample_rate
        self.frames: int = self.view.clip_frames(self.clip_seconds)

    @property
    def seed(self) -> int:
        return int(self.record.seed)

    @property
    def layout(self) -> str:
        """The model's input layout, as recorded."""
        return self.record.layout

    @property
    def net(self) -> Any:
        """The Keras network of a mel run."""
        return self.model.net  # type: ignore[attr-defined]

    @property
    def normalizer(self) -> Any:
        """The per-band normaliser of a mel run."""
        return self.model.normalizer  # type: ignore[attr-defined]

    # -- windows and probabilities ----------------------------------------------------------
    def windows(self, y: np.ndarray, *, hop_seconds: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """Cut mono audio into the model's inputs, one per window of the clip length.

        Parameters
        ----------
        y : np.ndarray [shape=(n,)]
            Mono audio at :attr:`sample_rate` (the run's feature rate; 16 kHz for probes).
        hop_seconds : float > 0, optional
            Seconds between window starts (default: the clip length).

        Returns
        -------
        x : np.ndarray
            Mel models: mel windows [shape=(windows, n_mels, frames)], rounded to the
            store's dtype, before normalisation. Probes: clip embeddings
            [shape=(windows, features)].
        starts : np.ndarray [shape=(windows,)]
            Window starts in seconds.
        padded_seconds : float
            Silence added to reach one window (0 if none).
        """
        fw = file_windows(self.view, np.asarray(y, dtype=np.float32), clip_seconds=self.clip_seconds,
                          hop_seconds=hop_seconds, arrays=self.model.arrays)
        return fw.x, fw.starts_seconds, fw.padded_seconds

    def predict_windows(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of the inputs that :meth:`windows` makes.

        Parameters
        ----------
        x : np.ndarray
            Mel windows [shape=(windows, n_mels, frames)], or clip embeddings for probes.

        Returns
        -------
        np.ndarray [shape=(windows, genres)]
        """
        return np.asarray(self.model.predict_proba(x), dtype=np.float64)

    def predict_file(self, path: str | os.PathLike[str], *, hop_seconds: float | None = None) -> FilePrediction:
        """Predict the genre of one audio file.

        Parameters
        ----------
        path : path
            Any file libsndfile reads (wav, au, flac, ogg, mp3...), mono or multichannel,
            at any sample rate and of any duration.
        hop_seconds : float > 0, optional
            Seconds between window starts (default: the clip length).

        Returns
        -------
        FilePrediction

        Raises
        ------
        AudioError
            If the file is missing or cannot be decoded.
        """
        path = Path(path).expanduser()
        if not path.exists():
            raise AudioError(f"{path}: no such file")
        if not path.is_file():
            raise AudioError(f"{path}: not a file")
        # windows in batches, streamed from the file: memory does not grow with its length
        ws = window_stream(self.view, path, clip_seconds=self.clip_seconds, hop_seconds=hop_seconds,
                           arrays=self.model.arrays, batch=PREDICT_BATCH, max_seconds=self.max_seconds)
        probs, starts = [], []
        for batch in ws:
            probs.append(self.predict_windows(batch.x))
            starts.append(batch.starts_seconds)
        window_probs = np.concatenate(probs)
        return FilePrediction(
            path=str(path),
            labels=self.labels,
            probabilities=window_probs.mean(axis=0),
            window_probabilities=window_probs,
            window_starts=np.concatenate(starts),
            window_seconds=self.clip_seconds,
            duration=ws.duration,
            padded_seconds=ws.padded_seconds,
            source_sr=ws.source_sr,
            source_channels=ws.source_channels,
        )

    def predict_files(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        hop_seconds: float | None = None,
        on_result: Callable[[FilePrediction | FileFailure], None] | None = None,
    ) -> list[FilePrediction | FileFailure]:
        """Predict several files; a file that cannot be read is reported, not fatal.

        Parameters
        ----------
        paths : iterable of path
        hop_seconds : float > 0, optional
        on_result : callable, optional
            Called with each result as soon as it is ready (for progress output).

        Returns
        -------
        list of FilePrediction or FileFailure
            One per path, in order.
        """
        out: list[FilePrediction | FileFailure] = []
        for p in paths:
            try:
                res: FilePrediction | FileFailure = self.predict_file(p, hop_seconds=hop_seconds)
            except (AudioError, OSError) as exc:
                res = FileFailure(path=str(p), error=str(exc))
            out.append(res)
            if on_result is not None:
                on_result(res)
        return out

    def describe(self) -> dict[str, Any]:
        """What this run is: model, family, clip length, seed, held-out accuracy, labels, run folder."""
        m = self.record.metrics
        return {
            "model": self.model_name,
            "family": self.family,
            "clip_seconds": self.clip_seconds,
            "seed": self.seed,
            "song_accuracy": m.song_accuracy,
            "clip_accuracy": m.clip_accuracy,
            "scheme": self.record.config.get("scheme"),
            "labels": list(self.labels),
            "params_hash": self.params.hash(),
            "run_dir": str(self.run_dir),
            # the index table version it trained on, for runs trained from one
            **({"table": self.record.table_line()} if self.record.table_version is not None else {}),
        }


def predict(
    paths: Sequence[str | os.PathLike[str]],
    *,
    model_root: str | os.PathLike[str],
    model: str | None = None,
    clip_seconds: int | None = None,
    seed: int | None = None,
    params: FeatureParams | None = None,
    hop_seconds: float | None = None,
    max_seconds: float | None = None,
) -> tuple[RunChoice, list[FilePrediction | FileFailure]]:
    """Choose a run with :func:`choose_run` and predict ``paths`` with it.

    ``max_seconds`` refuses longer files (see :class:`Predictor`).

    Returns
    -------
    choice : RunChoice
    results : list of FilePrediction or FileFailure
    """
    choice = choose_run(model_root=model_root, model=model, clip_seconds=clip_seconds, seed=seed, params=params)
    return choice, Predictor(choice.run_dir, max_seconds=max_seconds).predict_files(paths, hop_seconds=hop_seconds)
