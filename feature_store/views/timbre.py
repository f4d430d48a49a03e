"""The ``timbre`` view: the classic timbral summary of Tzanetakis & Cook (2002) per clip.

For every clip, the mean and standard deviation over its frames of 25 frame features
(50 values):

* 20 MFCCs: ``librosa.feature.mfcc``'s numbers (128 Slaney mel bands of the power
  spectrogram, ``power_to_db`` with an 80 dB range below the loudest frame, DCT-II ortho);
* spectral centroid (the magnitude-weighted mean frequency) and spectral roll-off (the
  lowest frequency below which 85 % of the magnitude lies), as ``librosa.feature`` defines
  them;
* spectral flux: the Euclidean distance between successive magnitude spectra, each normalised
  to unit sum (0 for the first frame), as Tzanetakis & Cook define it;
* zero-crossing rate (sign changes per sample) and RMS energy of each frame of ``n_fft``
  samples of the time signal.

Everything is computed here, frame by frame, from one STFT (Hann window, ``scipy.fft``), so a
file of any length is computed in bounded memory, piece by piece, with the same numbers
(:mod:`feature_store.engine.frames`); only the MFCCs' dB floor needs the whole signal's loudest
frame.

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

from feature_store.engine.view import ArraySpec, FeatureView, Rows, Starts, window_rows
from feature_store.errors import ParameterError
from feature_store.params import FeatureParams, digest

#: The clip geometry's defaults (every view's STFT frames are the mel view's).
CLIP_DEFAULTS = FeatureParams()
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

    sr: int = CLIP_DEFAULTS.sr
    n_fft: int = CLIP_DEFAULTS.n_fft
    hop_length: int = CLIP_DEFAULTS.hop_length
    n_mels: int = CLIP_DEFAULTS.n_mels
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
        return digest({**dataclasses.asdict(self), "code": TIMBRE_CODE_VERSION})


class TimbreView(FeatureView, name="timbre"):
    """Classic timbral statistics of every clip (Tzanetakis & Cook 2002).

    The classic GTZAN timbral summary of Tzanetakis & Cook (2002) for every clip of one length,
    partitioned by clip length in seconds: the mean and standard deviation over the clip's
    frames of 20 MFCCs, spectral centroid, roll-off and flux, zero-crossing rate and RMS (50
    values, librosa; the same STFT frames as `mel_features`). Stored as `timbre.h5` (clips × 50)
    and `timbre.parquet` (one named column per value, for polars and DuckDB) with an
    `index.parquet`, published atomically as a new generation. The `timbre_logreg` baseline
    trains on it.
    """

    default_arrays: ClassVar[tuple[str, ...]] = ("timbre",)
    params_type: ClassVar[type] = TimbreParams
    params: TimbreParams

    def array_specs(self, clip_seconds: int) -> list[ArraySpec]:
        return [ArraySpec("timbre", (len(COLUMNS),), "float32", columns=COLUMNS)]

    def entry_shape(self) -> tuple[int, ...]:
        return (len(FRAME_FEATURES), self.clip_params.song_frames)

    def prepare(self, y: np.ndarray, *, whole_file: bool = False) -> np.ndarray:
        return frame_features(y, params=self.params)

    def frame_chunk(self, segment: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        return raw_frames(segment, params=self.params, previous=state)

    @property
    def needs_peak(self) -> bool:
        return True  # the MFCCs' dB floor is the loudest mel frame's minus 80 dB

    def frame_peak(self, raw: np.ndarray) -> float:
        return float(raw[: self.params.n_mels].max()) if raw.size else float("-inf")

    def finish_frames(self, raw: np.ndarray, peak: float | None) -> np.ndarray:
        return finish_frames(raw, params=self.params, peak=float(peak if peak is not None else self.frame_peak(raw)))

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
    from feature_store.engine.frames import FrameSpec, framed

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise ParameterError(f"y must be non-empty mono audio of shape (n,), got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ParameterError("y holds NaN or infinite samples; decode() replaces them")
    spec = FrameSpec(params.sr, params.n_fft, params.hop_length)
    raw, state = [], None
    for segment, _ in framed([y], spec):
        chunk, state = raw_frames(segment, params=params, previous=state)
        raw.append(chunk)
    whole = np.concatenate(raw, axis=1)
    return finish_frames(whole, params=params, peak=float(whole[: params.n_mels].max()))


def raw_frames(segment: np.ndarray, *, params: TimbreParams,
               previous: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The frames of a stretch of padded samples, before the MFCCs' dB floor is known.

    Parameters
    ----------
    segment : np.ndarray [shape=((k - 1) * hop_length + n_fft,)]
        Samples of ``k`` uncentred frames (see :func:`feature_store.engine.frames.framed`).
    previous : np.ndarray [shape=(1 + n_fft // 2,)], optional
        The unit-sum spectrum of the frame before the stretch (for the flux of its first frame).

    Returns
    -------
    raw : np.ndarray [shape=(n_mels + 5, k), dtype=float32]
        The mel power spectrum, then centroid, roll-off, flux, zero-crossing rate and RMS.
    last : np.ndarray [shape=(1 + n_fft // 2,)]
        The unit-sum spectrum of the stretch's last frame (``previous`` of the next stretch).
    """
    import scipy.fft

    from feature_store.features import stft_filters

    p = params
    window, basis = stft_filters(p.sr, p.n_fft, p.n_mels, 0.0, None)
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(segment, np.float32), p.n_fft)[:: p.hop_length]
    S = np.abs(scipy.fft.rfft(frames * window, axis=-1)).T.astype(np.float64)  # (bins, k)
    freqs = np.fft.rfftfreq(p.n_fft, 1.0 / p.sr)
    total = S.sum(axis=0)
    unit = np.divide(S, total, out=np.zeros_like(S), where=total > 0)
    centroid = freqs @ unit
    cumulative = np.cumsum(S, axis=0)
    # the lowest frequency where the magnitude reaches rolloff of the frame's total (0 for silence)
    rolloff = freqs[np.argmax(cumulative >= p.rolloff * total - 1e-12 * total, axis=0)]
    flux = spectral_flux(unit, previous=previous)
    signs = np.signbit(np.where(np.abs(frames) <= 1e-10, 0.0, frames))
    zcr = np.count_nonzero(signs[:, 1:] != signs[:, :-1], axis=1) / p.n_fft
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    mel = (basis @ np.square(S)).astype(np.float32)
    raw = np.concatenate([mel, np.stack([centroid, rolloff, flux, zcr, rms]).astype(np.float32)], axis=0)
    return raw, unit[:, -1].copy()


def finish_frames(raw: np.ndarray, *, params: TimbreParams, peak: float) -> np.ndarray:
    """The 25 frame features from :func:`raw_frames`, the MFCCs' 80 dB floor taken from ``peak``
    (the loudest mel power of the whole signal)."""
    import scipy.fft

    from feature_store.features import power_to_db

    db = power_to_db(raw[: params.n_mels].copy(), top_db=80.0, peak=peak)
    mfcc = scipy.fft.dct(db, type=2, norm="ortho", axis=0)[: params.n_mfcc]
    out = np.concatenate([mfcc, raw[params.n_mels:]], axis=0)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def spectral_flux(unit: np.ndarray, *, previous: np.ndarray | None = None) -> np.ndarray:
    """Spectral flux of Tzanetakis & Cook: ``||N_t - N_{t-1}||_2`` of unit-sum spectra.

    Parameters
    ----------
    unit : np.ndarray [shape=(bins, frames)]
        Magnitude spectra normalised to unit sum (silent frames all zero).
    previous : np.ndarray [shape=(bins,)], optional
        The frame before the first (its flux is 0 without one).

    Returns
    -------
    np.ndarray [shape=(frames,)]
    """
    unit = np.asarray(unit, dtype=np.float64)
    before = np.concatenate([(unit[:, :1] if previous is None else previous[:, None]), unit[:, :-1]], axis=1)
    return np.sqrt(np.square(unit - before).sum(axis=0))
