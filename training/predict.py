"""Genre prediction for any audio file, with a trained run from the model store.

A file is decoded under the feature store's audio policy (any format libsndfile reads,
mixed down to mono, resampled with soxr to the run's feature rate), turned into one
full-length mel spectrogram with the run's own :class:`~feature_store.params.FeatureParams`,
and cut into windows of the run's clip length:

* windows start every ``hop_seconds`` (default: the clip length, so they do not overlap),
  as the ``segments`` sampling mode cuts a song;
* when the whole windows leave more than 5 % of a window uncovered at the end, one more
  window is aligned with the end of the file, so every second of the file is seen;
* a file shorter than one window is padded with silence to one window, as the feature
  store pads songs to their nominal length, and the result says by how much.

Each window is normalised with the run's per-band normaliser and classified; the file's
probabilities are the mean over its windows, as song accuracy is computed in
:mod:`training.evaluate`. Probe runs (:mod:`training.probe`, a classifier on musicnn
embeddings) are predicted the same way, with musicnn's own 16 kHz log-mel and clip
embeddings in place of the mel windows.

Which run? :func:`choose_run` picks, by default, the best (model, clip length) of the
runs that the evaluation report covers (:func:`training.report.best_run`), and its best
seed; ``model``, ``clip_seconds`` and ``seed`` narrow the choice.

TensorFlow/Keras are imported only when a model is loaded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from feature_store.audio import decode
from feature_store.errors import AudioError, ParameterError, StoreError
from feature_store.features import MIN_CLIP_COVERAGE, mel_spectrogram
from feature_store.params import FeatureParams, validate_clip_seconds

#: Windows classified per call of the model.
PREDICT_BATCH = 64


def window_starts(*, total_frames: int, frames: int, hop_frames: float) -> list[int]:
    """Start frames of the windows that cover a mel of ``total_frames`` frames.

    Windows start at ``floor(k * hop_frames)``; when the last whole window leaves more
    than ``1 - MIN_CLIP_COVERAGE`` of a window uncovered, one more window ends at the
    last frame.

    Parameters
    ----------
    total_frames : int >= frames
    frames : int > 0
        Frames per window.
    hop_frames : float > 0
        Frames between window starts (may be fractional: clip seconds times frame rate).

    Returns
    -------
    list of int
        Increasing start frames; ``start + frames <= total_frames`` for each.
    """
    if frames < 1 or total_frames < frames:
        raise ParameterError(f"need total_frames >= frames >= 1, got {total_frames} and {frames}")
    if not hop_frames > 0:
        raise ParameterError(f"hop_frames must be positive, got {hop_frames!r}")
    starts: list[int] = []
    k = 0
    while True:
        s = int(math.floor(k * hop_frames + 1e-9))
        if s + frames > total_frames:
            break
        if not starts or s > starts[-1]:
            starts.append(s)
        k += 1
    uncovered = total_frames - (starts[-1] + frames)
    if uncovered > (1 - MIN_CLIP_COVERAGE) * frames:
        starts.append(total_frames - frames)
    return starts


# ---------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class FilePrediction:
    """The prediction for one file.

    Attributes
    ----------
    path : str
    genres : tuple of str
        Class names, in the model's label order.
    probabilities : np.ndarray [shape=(genres,)]
        Mean of the window probabilities.
    window_probabilities : np.ndarray [shape=(windows, genres)]
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
    genres: tuple[str, ...]
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
        return self.genres[int(np.argmax(self.probabilities))]

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable genres with their probabilities, best first."""
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(self.genres[i], float(self.probabilities[i])) for i in order]

    def to_dict(self, *, windows: bool = True) -> dict[str, Any]:
        """A JSON-ready dict; ``windows`` adds the per-window probabilities."""
        out: dict[str, Any] = {
            "path": self.path,
            "ok": True,
            "genre": self.genre,
            "top": [{"genre": g, "probability": p} for g, p in self.top(3)],
            "probabilities": {g: float(p) for g, p in zip(self.genres, self.probabilities, strict=True)},
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
                    "probabilities": {g: float(p) for g, p in zip(self.genres, row, strict=True)},
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
# choosing a run
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunChoice:
    """A published run chosen for prediction, and why it was chosen."""

    run_dir: Path
    model: str
    clip_seconds: int
    seed: int
    song_accuracy: float | None
    reason: str


def choose_run(
    *,
    model_root: str | os.PathLike[str],
    model: str | None = None,
    clip_seconds: int | None = None,
    seed: int | None = None,
    params: FeatureParams | None = None,
) -> RunChoice:
    """Pick the trained run to predict with.

    With no filters it is the best (model, clip length) of the evaluation report
    (:func:`training.report.best_run`: highest mean held-out song accuracy over seeds),
    and of that pair the seed with the highest song accuracy (the lowest seed on a tie).
    ``model``, ``clip_seconds`` and ``seed`` restrict the candidates first.

    Parameters
    ----------
    model_root : path
        Model store root.
    model : str, optional
    clip_seconds : int, optional
    seed : int, optional
    params : FeatureParams, optional
        Only runs trained on features with these parameters (as the report does); all
        runs when omitted.

    Returns
    -------
    RunChoice

    Raises
    ------
    ParameterError
        Unknown clip length or model name.
    StoreError
        No trained run matches; the message lists what has been trained.
    """
    from training.models import get_spec
    from training.probe import is_probe_run
    from training.report import best_run
    from training.train import ModelStore

    if clip_seconds is not None:
        clip_seconds = validate_clip_seconds(clip_seconds)
    if model is not None and not is_probe_run({"model": model}):  # probes are not in MODELS
        get_spec(model)
    store = ModelStore(model_root)
    all_runs = store.runs()
    runs = all_runs if params is None else [r for r in all_runs if r.get("params_hash") == params.hash()]
    if not runs:
        if not all_runs:
            raise StoreError(f"no trained model under {store.root}; train one first (`make run` or `gtzan train`)")
        other = sorted({f"--mode {r['feature_params'].get('mode')} --dtype {r['feature_params'].get('dtype')}"
                        for r in all_runs})
        raise StoreError(
            f"no trained model under {store.root} for features {params.hash()} (mode {params.mode}, "
            f"dtype {params.dtype}); models were trained with: {'; '.join(other)}"
        )
    trained = sorted({(r["model"], int(r["clip_seconds"]), int(r["seed"])) for r in runs})
    cands = [
        r for r in runs
        if (model is None or r["model"] == model)
        and (clip_seconds is None or int(r["clip_seconds"]) == clip_seconds)
        and (seed is None or int(r["seed"]) == seed)
    ]
    if not cands:
        wanted = " ".join(
            part for part in (
                f"model {model!r}" if model else "",
                f"at {clip_seconds} s" if clip_seconds else "",
                f"seed {seed}" if seed is not None else "",
            ) if part
        )
        have = ", ".join(f"{m} {c} s seed {s}" for m, c, s in trained)
        hint = "gtzan train" + (f" --model {model}" if model else "") + (
            f" --clip-seconds {clip_seconds}" if clip_seconds else "") + (f" --seed {seed}" if seed is not None else "")
        raise StoreError(f"{wanted} has not been trained yet (trained: {have}); train it with `{hint}`")
    best = best_run(cands)
    assert best is not None
    pair = [r for r in cands if r["model"] == best["model"] and int(r["clip_seconds"]) == int(best["clip_seconds"])]
    pick = sorted(pair, key=lambda r: (-float(r["metrics"]["song_accuracy"]), int(r["seed"])))[0]
    if pick.get("run_dir"):
        run_dir = Path(pick["run_dir"])
    else:  # a model store that does not report run folders: the default variant's folder
        run_dir = store.current(params=FeatureParams.from_dict(pick["feature_params"]), model=pick["model"],
                                clip_seconds=int(pick["clip_seconds"]), seed=int(pick["seed"]))
    if model is None and clip_seconds is None and seed is None:
        reason = "best model of the report"
    else:
        reason = "best trained run matching your choice"
    return RunChoice(
        run_dir=run_dir,
        model=pick["model"],
        clip_seconds=int(pick["clip_seconds"]),
        seed=int(pick["seed"]),
        song_accuracy=float(pick["metrics"]["song_accuracy"]),
        reason=reason,
    )


# ---------------------------------------------------------------------------------------
# the predictor
# ---------------------------------------------------------------------------------------
class Predictor:
    """A trained run, loaded once, that predicts the genre of audio files.

    Two run families are understood: the mel models of :func:`training.train.train_model`
    (``model.keras``, ``normalizer.json``, ``metrics.json``) and the probes on musicnn
    embeddings of :func:`training.probe.train_probe` (``probe.npz``, ``probe.json``,
    ``metrics.json``). Either way a file is cut into windows of the run's clip length over
    its whole duration, and its probabilities are the mean over the windows.

    Parameters
    ----------
    run_dir : path
        A published run folder (or the run folder holding its ``current`` link).

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

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        from feature_store import atomic

        run_dir = Path(run_dir).expanduser()
        if not run_dir.is_dir():
            raise StoreError(f"no trained run at {run_dir}")
        self.run_dir = atomic.resolve_current(run_dir) or run_dir
        metrics_file = self.run_dir / "metrics.json"
        if not metrics_file.is_file():
            raise StoreError(f"{self.run_dir} is not a complete trained run: missing metrics.json")
        try:
            self.metrics: dict[str, Any] = json.loads(metrics_file.read_text())
            self.params = FeatureParams.from_dict(self.metrics["feature_params"])
            self.model_name: str = self.metrics["model"]
            self.clip_seconds: int = validate_clip_seconds(self.metrics["clip_seconds"])
            self.genres: tuple[str, ...] = tuple(self.metrics["genres"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"cannot read the run at {self.run_dir}: {exc}") from exc
        from training.probe import is_probe_run

        self.family = "probe" if is_probe_run(self.metrics) else "mel"
        if self.family == "probe":
            self._load_probe()
        else:
            self._load_mel_model()

    # -- loading ----------------------------------------------------------------------------
    def _missing(self, names: Sequence[str]) -> None:
        missing = [n for n in names if not (self.run_dir / n).is_file()]
        if missing:
            raise StoreError(f"{self.run_dir} is not a complete trained run: missing {', '.join(missing)}")

    def _load_mel_model(self) -> None:
        from training.train import BandNormalizer, load_model

        self._missing(["normalizer.json", "model.keras"])
        try:
            self.normalizer = BandNormalizer.from_json(json.loads((self.run_dir / "normalizer.json").read_text()))
            self.layout: str = self.metrics["layout"]
            self.frames: int = int(self.metrics["frames"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"cannot read the run at {self.run_dir}: {exc}") from exc
        if self.frames != self.params.clip_frames(self.clip_seconds):
            raise StoreError(
                f"run at {self.run_dir} was trained on {self.frames} frames, but {self.clip_seconds} s clips "
                f"have {self.params.clip_frames(self.clip_seconds)}"
            )
        if self.normalizer.mean.shape != (self.params.n_mels,):
            raise StoreError(f"normalizer of {self.run_dir} has {self.normalizer.mean.shape} bands, "
                             f"the features {self.params.n_mels}")
        try:
            self.net = load_model(self.run_dir / "model.keras")
        except Exception as exc:  # keras raises ValueError, OSError, zipfile errors...
            raise StoreError(f"cannot load {self.run_dir / 'model.keras'}: {str(exc).splitlines()[0]}") from exc
        self.sample_rate = self.params.sr

    def _load_probe(self) -> None:
        from feature_store.embeddings import musicnn as mn
        from training.probe import Probe

        self._missing(["probe.npz", "probe.json"])
        try:
            self.probe = Probe.load(self.run_dir)
        except Exception as exc:  # np.load and json raise ValueError, KeyError, OSError, zipfile errors...
            raise StoreError(f"cannot load the probe at {self.run_dir}: {str(exc).splitlines()[0]}") from exc
        self._embedder = mn.MusicnnEmbedder(model=self.probe.embedding_model)  # MusicnnWeightsError if absent
        self.frames = mn.clip_frames(self.clip_seconds)
        self.sample_rate = mn.SR

    @property
    def seed(self) -> int:
        return int(self.metrics.get("seed", 0))

    # -- windows and probabilities ----------------------------------------------------------
    def _pad(self, y: np.ndarray) -> tuple[np.ndarray, float]:
        need = self.clip_seconds * self.sample_rate
        if y.size >= need:
            return y, 0.0
        return np.pad(y, (0, need - y.size)), (need - y.size) / self.sample_rate

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
        hop_seconds = float(self.clip_seconds if hop_seconds is None else hop_seconds)
        if not hop_seconds > 0:
            raise ParameterError(f"hop_seconds must be positive, got {hop_seconds!r}")
        y, padded_seconds = self._pad(np.asarray(y, dtype=np.float32))
        if self.family == "probe":
            from feature_store.embeddings import musicnn as mn

            mel = mn.log_mel(y, block_frames=mn.LOG_MEL_BLOCK_FRAMES)  # bounded memory, any length
            starts = window_starts(total_frames=mel.shape[0], frames=self.frames,
                                   hop_frames=hop_seconds * mn.SR / mn.HOP_LENGTH)
            out = self._embedder.embed_clips(mel, starts=starts, frames=self.frames)
            x = np.concatenate([out[name] for name in self.probe.layers], axis=1)
            return x, np.asarray(starts, dtype=np.float64) * mn.HOP_LENGTH / mn.SR, padded_seconds
        p = self.params
        mel = mel_spectrogram(y, params=p)  # in blocks: bounded memory for any length
        # the stores may hold float16: round as the training data was rounded
        mel = mel.astype(p.dtype).astype(np.float32)
        starts = window_starts(total_frames=mel.shape[1], frames=self.frames, hop_frames=hop_seconds * p.sr / p.hop_length)
        x = np.stack([mel[:, s : s + self.frames] for s in starts])
        return x, np.asarray(starts, dtype=np.float64) * p.hop_length / p.sr, padded_seconds

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
        if self.family == "probe":
            return np.asarray(self.probe.predict_proba(x), dtype=np.float64)
        from keras import ops

        from training.models import to_layout

        if x.ndim != 3 or x.shape[1:] != (self.params.n_mels, self.frames):
            raise ParameterError(f"windows must have shape (n, {self.params.n_mels}, {self.frames}), got {x.shape}")
        inp = to_layout(self.normalizer.transform(x), self.layout)
        out = [ops.convert_to_numpy(self.net(inp[i : i + PREDICT_BATCH], training=False))
               for i in range(0, inp.shape[0], PREDICT_BATCH)]
        return np.concatenate(out, axis=0).astype(np.float64)

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
        audio = decode(path, sr=self.sample_rate, nominal_seconds=None)
        x, starts, padded = self.windows(audio.y, hop_seconds=hop_seconds)
        probs = self.predict_windows(x)
        return FilePrediction(
            path=str(path),
            genres=self.genres,
            probabilities=probs.mean(axis=0),
            window_probabilities=probs,
            window_starts=starts,
            window_seconds=self.clip_seconds,
            duration=audio.duration,
            padded_seconds=padded,
            source_sr=audio.source_sr,
            source_channels=audio.source_channels,
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
        """What this run is: model, family, clip length, seed, held-out accuracy, run folder."""
        m = self.metrics.get("metrics", {})
        return {
            "model": self.model_name,
            "family": self.family,
            "clip_seconds": self.clip_seconds,
            "seed": self.seed,
            "song_accuracy": m.get("song_accuracy"),
            "clip_accuracy": m.get("clip_accuracy"),
            "scheme": self.metrics.get("config", {}).get("scheme"),
            "params_hash": self.params.hash(),
            "run_dir": str(self.run_dir),
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
) -> tuple[RunChoice, list[FilePrediction | FileFailure]]:
    """Choose a run with :func:`choose_run` and predict ``paths`` with it.

    Returns
    -------
    choice : RunChoice
    results : list of FilePrediction or FileFailure
    """
    choice = choose_run(model_root=model_root, model=model, clip_seconds=clip_seconds, seed=seed, params=params)
    return choice, Predictor(choice.run_dir).predict_files(paths, hop_seconds=hop_seconds)
