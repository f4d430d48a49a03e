"""The ``timbre`` view: the classic timbral summary of Tzanetakis & Cook (2002) per clip.

For every clip, the mean and standard deviation over its frames of 25 frame features
(50 values):

* 20 MFCCs: ``librosa.feature.mfcc`` (128 Slaney mel bands of the power spectrogram,
  ``power_to_db`` with an 80 dB range, DCT-II ortho);
* spectral centroid and spectral roll-off (85 % of the magnitude), ``librosa.feature``;
* spectral flux: the Euclidean distance between successive magnitude spectra, each normalised
  to unit sum (0 for the first frame), as Tzanetakis & Cook define it;
* zero-crossing rate and RMS energy of the time signal (``librosa.feature``, frames of
  ``n_fft`` samples).

Every frame feature uses the STFT of the mel view (22050 Hz, n_fft 2048, hop 512, centred),
so frame ``t`` of every view is the same stretch of audio and a clip's frames are the mel
view's. The frame features of a whole song are cached (``cache/timbre-<hash>/<sha256>.npy``,
``(25, frames)``); each clip's summary is cut from them. The values are stored in
``timbre.h5`` (dataset ``timbre``, ``(clips, 50)``) and in ``timbre.parquet`` with one named
column per value (``mfcc01_mean`` ... ``rms_std``), for polars and DuckDB.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from feature_store.engine.view import ArraySpec, FeatureView, Rows, Starts, ViewOptions, window_rows
from feature_store.errors import ParameterError
from feature_store.params import FeatureParams, _digest

#: Bump when the numbers a timbre store holds would change.
TIMBRE_CODE_VERSION = "1"
#: The frame features, in row order of a cache entry.
FRAME_FEATURES: tuple[str, ...] = tuple(f"mfcc{k:02d}" for k in range(1, 21)) + (
    "spectral_centroid", "spectral_rolloff", "spectral_flux", "zero_crossing_rate", "rms",
)
#: The 50 stored values per clip: every frame feature's mean, then every one's std.
COLUMNS: tuple[str, ...] = tuple(f"{f}_mean" for f in FRAME_FEATURES) + tuple(f"{f}_std" for f in FRAME_FEATURES)


@dataclasses.dataclass(frozen=True)
class TimbreParams:
    """Parameters of the timbre view (librosa's defaults at GTZAN's 22050 Hz).

    Parameters
    ----------
    sr, n_fft, hop_length : int
        The STFT of every frame feature (and the clip geometry: clips are frames of it).
    n_mels : int
        Mel bands under the MFCCs.
    n_mfcc : int
        MFCCs kept (20: the columns are named for 20).
    rolloff : float in (0, 1)
        Share of the spectral magnitude below the roll-off frequency.
    mode : {'first', 'segments'}
        Which clips a song gives.
    """

    sr: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    n_mfcc: int = 20
    rolloff: float = 0.85
    mode: str = "first"

    def __post_init__(self) -> None:
        self.clip_params()  # validates sr, n_fft, hop_length, n_mels and mode
        if self.n_mfcc != 20:
            raise ParameterError(f"n_mfcc must be 20 (the stored columns name 20 MFCCs), got {self.n_mfcc!r}")
        if not 0 < self.rolloff < 1:
            raise ParameterError(f"rolloff must be in (0, 1), got {self.rolloff!r}")

    def clip_params(self) -> FeatureParams:
        return FeatureParams(sr=self.sr, n_fft=self.n_fft, hop_length=self.hop_length, n_mels=self.n_mels,
                             mode=self.mode)  # type: ignore[arg-type]

    def hash(self) -> str:
        return _digest({**dataclasses.asdict(self), "code": TIMBRE_CODE_VERSION})


class TimbreView(FeatureView):
    """Tzanetakis & Cook's timbral summary (see the module docstring)."""

    name: ClassVar[str] = "timbre"
    asset_name: ClassVar[str] = "timbre_features"
    check_name: ClassVar[str] = "timbre_sane"
    title: ClassVar[str] = "classic timbral statistics of every clip (Tzanetakis & Cook 2002)"
    description: ClassVar[str] = (
        "The classic GTZAN timbral summary of Tzanetakis & Cook (2002) for every clip of one length, "
        "partitioned by clip length in seconds: the mean and standard deviation over the clip's frames of 20 "
        "MFCCs, spectral centroid, roll-off and flux, zero-crossing rate and RMS (50 values, librosa; the same "
        "STFT frames as `mel_features`). Stored as `timbre.h5` (clips × 50) and `timbre.parquet` (one named "
        "column per value, for polars and DuckDB) with an `index.parquet`, published atomically as a new "
        "generation. The `timbre_logreg` baseline trains on it."
    )
    default_arrays: ClassVar[tuple[str, ...]] = ("timbre",)
    params: TimbreParams

    def __init__(self, params: TimbreParams | None = None) -> None:
        super().__init__(params if params is not None else TimbreParams())

    @classmethod
    def from_options(cls, options: ViewOptions) -> TimbreView:
        return cls(TimbreParams(mode=options.mode))

    @classmethod
    def from_params_dict(cls, params: dict[str, Any]) -> TimbreView:
        return cls(TimbreParams(**params))

    @property
    def clip_params(self) -> FeatureParams:
        return self.params.clip_params()

    def hash(self) -> str:
        return self.params.hash()

    @property
    def sample_rate(self) -> int:
        return self.params.sr

    @property
    def frame_rate(self) -> float:
        return self.params.sr / self.params.hop_length

    def clip_frames(self, clip_seconds: int) -> int:
        return self.clip_params.clip_frames(clip_seconds)

    def view_frame(self, start_frame: int) -> int:
        return int(start_frame)  # the clips are frames of this very STFT

    def array_specs(self, clip_seconds: int) -> list[ArraySpec]:
        return [ArraySpec("timbre", (len(COLUMNS),), "float32", columns=COLUMNS)]

    def entry_shape(self) -> tuple[int, ...]:
        return (len(FRAME_FEATURES), self.clip_params.song_frames)

    def prepare(self, y: np.ndarray, *, whole_file: bool = False) -> np.ndarray:
        return frame_features(y, params=self.params)

    def clip_rows(self, entry: np.ndarray, wanted: Mapping[int, Starts]) -> dict[int, Rows]:
        out: dict[int, Rows] = {}
        for c, starts in wanted.items():
            clips = window_rows(entry, list(starts), self.clip_frames(c)).astype(np.float64)
            out[c] = {"timbre": np.concatenate([clips.mean(axis=2), clips.std(axis=2)], axis=1).astype(np.float32)}
        return out

    def registry_fields(self) -> dict[str, Any]:
        return {"timbre_code_version": TIMBRE_CODE_VERSION, "columns": list(COLUMNS)}

    def hdf5_attrs(self, clip_seconds: int) -> dict[str, Any]:
        import json

        return {"layout": "(clips, 50): means then stds of the frame features", "columns": json.dumps(list(COLUMNS))}


def frame_features(y: np.ndarray, *, params: TimbreParams) -> np.ndarray:
    """The 25 frame features of mono audio (see the module docstring).

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio at ``params.sr``.
    params : TimbreParams

    Returns
    -------
    np.ndarray [shape=(25, 1 + n // params.hop_length), dtype=float32]
        Rows in the order of :data:`FRAME_FEATURES`; finite for finite input, silence included.

    Raises
    ------
    ParameterError
        If ``y`` is not 1-d, is empty, or holds NaN or infinite samples.
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise ParameterError(f"y must be non-empty mono audio of shape (n,), got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ParameterError("y holds NaN or infinite samples; decode() replaces them")
    p = params
    S = np.abs(librosa.stft(y, n_fft=p.n_fft, hop_length=p.hop_length, center=True))
    mel = librosa.feature.melspectrogram(S=S**2, sr=p.sr, n_fft=p.n_fft, n_mels=p.n_mels)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=p.n_mfcc)
    centroid = librosa.feature.spectral_centroid(S=S, sr=p.sr, n_fft=p.n_fft)
    rolloff = librosa.feature.spectral_rolloff(S=S, sr=p.sr, n_fft=p.n_fft, roll_percent=p.rolloff)
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=p.n_fft, hop_length=p.hop_length, center=True)
    rms = librosa.feature.rms(y=y, frame_length=p.n_fft, hop_length=p.hop_length, center=True)
    feats = np.concatenate([mfcc, centroid, rolloff, spectral_flux(S)[None, :], zcr, rms], axis=0)
    return np.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def spectral_flux(S: np.ndarray) -> np.ndarray:
    """Spectral flux of Tzanetakis & Cook: ``||N_t - N_{t-1}||_2`` of unit-sum spectra.

    Parameters
    ----------
    S : np.ndarray [shape=(bins, frames)]
        Magnitude spectrogram.

    Returns
    -------
    np.ndarray [shape=(frames,)]
        0 for the first frame; silent frames count as all-zero spectra.
    """
    S = np.asarray(S, dtype=np.float64)
    total = S.sum(axis=0, keepdims=True)
    norm = np.divide(S, total, out=np.zeros_like(S), where=total > 0)
    flux = np.zeros(S.shape[1])
    if S.shape[1] > 1:
        flux[1:] = np.sqrt(np.square(np.diff(norm, axis=1)).sum(axis=0))
    return flux
