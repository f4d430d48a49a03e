"""Feature constants and the one frozen dataclass that holds every feature parameter.

Following musicnn's ``configuration.py``, the constants of the project live here and
nowhere else. ``FeatureParams`` is recorded with every store; its :meth:`FeatureParams.hash`
names the store folder, so changing any parameter makes a new store and never mixes rows.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from typing import Any, Literal

from feature_store.errors import ParameterError

#: Clip lengths of the study, in seconds.
CLIP_SECONDS: tuple[int, ...] = (1, 5, 15, 30)
#: Sampling modes: the study's first N seconds, or every non-overlapping N-second segment.
MODES: tuple[str, ...] = ("first", "segments")
#: GTZAN clips last 29.9-30.6 s; every song is padded or cropped to this nominal length.
NOMINAL_SECONDS: float = 30.0
#: The shortest hop between the windows of a file (prediction): a few milliseconds, so that
#: a file yields a bounded number of windows.
MIN_HOP_SECONDS: float = 0.01
#: Seconds held out per genre in the study: the last 10 songs of each genre.
SEED_HOLDOUT_PER_GENRE: int = 10
#: Version of the feature code; bump it when the numbers a store holds would change.
FEATURE_CODE_VERSION: str = "2"  # 2: our blocked STFT + sparse filterbank instead of librosa's

Mode = Literal["first", "segments"]
DType = Literal["float32", "float16"]


def validate_clip_seconds(clip_seconds: Any) -> int:
    """Return ``clip_seconds`` as an int, or raise :class:`ParameterError` naming the valid values.

    Accepts an int or its decimal string (a Dagster partition key such as ``"5"``).
    """
    value: int | None = None
    if isinstance(clip_seconds, int) and not isinstance(clip_seconds, bool):
        value = clip_seconds
    elif isinstance(clip_seconds, str) and clip_seconds.strip().isdigit():
        value = int(clip_seconds)
    elif isinstance(clip_seconds, float) and clip_seconds.is_integer():
        value = int(clip_seconds)
    if value not in CLIP_SECONDS:
        raise ParameterError(
            f"clip_seconds must be one of {list(CLIP_SECONDS)}, got {clip_seconds!r}"
        )
    return value


def validate_mode(mode: str) -> str:
    """Return ``mode`` if it is a sampling mode, else raise :class:`ParameterError`."""
    if mode not in MODES:
        raise ParameterError(f"unknown mode {mode!r}; valid modes are {list(MODES)}")
    return mode


@dataclasses.dataclass(frozen=True)
class FeatureParams:
    """Every parameter of the mel features, frozen and hashable.

    The defaults are the study's: librosa's defaults at GTZAN's native 22050 Hz.

    Parameters
    ----------
    sr : int > 0
        Sample rate that audio is resampled to (soxr, high quality).
    n_fft : int > 0
        FFT window length in samples.
    hop_length : int > 0
        Hop between frames in samples.
    n_mels : int > 0
        Number of mel bands.
    fmin, fmax : float
        Frequency range of the mel filterbank; ``fmax=None`` means ``sr / 2``.
    power : float > 0
        Exponent of the magnitude spectrogram (2.0 = power).
    top_db : float > 0 or None
        Dynamic-range floor of ``librosa.power_to_db`` (librosa's default is 80 dB).
    dtype : {'float32', 'float16'}
        Storage dtype of the HDF5 ``mel`` dataset.
    mode : {'first', 'segments'}
        ``first``: the first N seconds of each song, as in the study. ``segments``: every
        non-overlapping N-second segment of the nominal 30 s.
    """

    sr: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    power: float = 2.0
    top_db: float | None = 80.0
    dtype: DType = "float32"
    mode: Mode = "first"

    def __post_init__(self) -> None:
        for name in ("sr", "n_fft", "hop_length", "n_mels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ParameterError(f"{name} must be a positive integer, got {value!r}")
        if self.hop_length > self.n_fft:
            raise ParameterError(
                f"hop_length ({self.hop_length}) must not exceed n_fft ({self.n_fft})"
            )
        nyquist = self.sr / 2
        if not (0 <= self.fmin < (self.fmax if self.fmax is not None else nyquist)):
            raise ParameterError(f"fmin must be in [0, fmax), got fmin={self.fmin!r}")
        if self.fmax is not None and not (0 < self.fmax <= nyquist):
            raise ParameterError(f"fmax must be in (0, sr/2={nyquist}], got {self.fmax!r}")
        if not self.power > 0:
            raise ParameterError(f"power must be positive, got {self.power!r}")
        if self.top_db is not None and not self.top_db > 0:
            raise ParameterError(f"top_db must be positive or None, got {self.top_db!r}")
        if self.dtype not in ("float32", "float16"):
            raise ParameterError(f"dtype must be 'float32' or 'float16', got {self.dtype!r}")
        validate_mode(self.mode)

    # -- identity -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """All parameters as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureParams:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ParameterError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ParameterError(f"unknown feature parameters {sorted(unknown)}; valid: {sorted(names)}")
        return cls(**data)

    def hash(self) -> str:
        """Short stable hash of every parameter and the feature code version."""
        return _params_hash(self, FEATURE_CODE_VERSION, spectral=False)

    def spectral_hash(self) -> str:
        """Hash of the parameters that change the full-length mel (not ``dtype`` or ``mode``).

        Stores that share it can share the per-song mel cache.
        """
        return _params_hash(self, FEATURE_CODE_VERSION, spectral=True)

    def clip_params(self) -> FeatureParams:
        """The parameters that define the clips: these very ones (the mel view's params)."""
        return self

    def replace(self, **changes: Any) -> FeatureParams:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    # -- geometry -------------------------------------------------------------------------
    @property
    def nominal_samples(self) -> int:
        """Samples in the nominal 30 s song."""
        return int(round(NOMINAL_SECONDS * self.sr))

    @property
    def song_frames(self) -> int:
        """Frames of the full-length (nominal 30 s) mel with librosa's centred STFT."""
        return 1 + self.nominal_samples // self.hop_length

    def clip_frames(self, clip_seconds: int) -> int:
        """Frames of an N-second clip, as librosa gives for N seconds of audio.

        ``1 + floor(N * sr / hop_length)``: 44 frames for 1 s, 1292 for 30 s at the defaults.
        """
        return 1 + (int(clip_seconds) * self.sr) // self.hop_length

    def segment_starts(self, clip_seconds: int) -> list[int]:
        """Start frames of the clips of one song for ``clip_seconds`` under this mode.

        ``first`` gives ``[0]``; ``segments`` gives the start of every whole non-overlapping
        N-second segment of the nominal song, ``floor(k * N * sr / hop_length)``.
        """
        clip_seconds = validate_clip_seconds(clip_seconds)
        if self.mode == "first":
            return [0]
        n = int(math.floor(NOMINAL_SECONDS / clip_seconds + 1e-9))
        starts = [(k * clip_seconds * self.sr) // self.hop_length for k in range(n)]
        frames = self.clip_frames(clip_seconds)
        return [s for s in starts if s + frames <= self.song_frames]


def digest(payload: dict[str, Any]) -> str:
    """Short stable hash (12 hex digits of sha256) of a JSON-able dict: the hash of a params dataclass."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@functools.lru_cache(maxsize=256)
def _params_hash(params: FeatureParams, code: str, *, spectral: bool) -> str:
    """The hashes of :class:`FeatureParams`, memoised (a build asks for them per song)."""
    d = params.to_dict()
    if spectral:
        d.pop("dtype")
        d.pop("mode")
    return digest({**d, "code": code})
