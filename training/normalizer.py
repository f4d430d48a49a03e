"""Per-mel-band standardisation, fitted on the training clips of a run only."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from feature_store.errors import ParameterError


@dataclasses.dataclass
class BandNormalizer:
    """Per-mel-band standardisation, fitted on training clips only.

    Attributes
    ----------
    mean, std : np.ndarray [shape=(n_mels,)]
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> BandNormalizer:
        """Fit on clips of shape (clips, n_mels, frames)."""
        return cls.fit_chunks([x])

    @classmethod
    def fit_chunks(cls, chunks: Any) -> BandNormalizer:
        """Fit on an iterable of clip arrays of shape (clips, n_mels, frames), in one pass.

        Sums are accumulated in float64, so the result equals :meth:`fit` on the concatenation
        up to rounding, without holding every clip in memory.
        """
        n, s, ss, mels = 0, None, None, None
        for x in chunks:
            x = np.asarray(x)
            if x.ndim != 3 or (mels is not None and x.shape[1] != mels):
                raise ParameterError(f"fit needs clips of shape (clips, n_mels, frames), got {x.shape}")
            if x.shape[0] == 0:
                continue
            mels = x.shape[1]
            x64 = x.astype(np.float64)
            cs, css = x64.sum(axis=(0, 2)), np.square(x64).sum(axis=(0, 2))
            s, ss = (cs, css) if s is None else (s + cs, ss + css)
            n += x.shape[0] * x.shape[2]
        if n == 0:
            raise ParameterError("fit needs at least one clip of shape (clips>0, n_mels, frames)")
        mean = s / n
        var = np.maximum(ss / n - mean**2, 0.0)
        return cls(mean=mean, std=np.maximum(np.sqrt(var), 1e-6))

    @classmethod
    def identity(cls, n_mels: int) -> BandNormalizer:
        """A normaliser that changes nothing (the baseline reads raw dB)."""
        return cls(mean=np.zeros(n_mels), std=np.ones(n_mels))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Standardise clips of shape (clips, n_mels, frames); returns float32."""
        return ((x - self.mean[None, :, None]) / self.std[None, :, None]).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BandNormalizer:
        return cls(mean=np.asarray(d["mean"], dtype=np.float64), std=np.asarray(d["std"], dtype=np.float64))
