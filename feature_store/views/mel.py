"""The ``mel`` view: log-power mel spectrograms of every clip, and their per-band summary.

One STFT per song at its full nominal length (:func:`feature_store.features.mel_spectrogram`,
librosa's numbers from our own blocked STFT and sparse filterbank); a clip of N seconds is the
frame slice ``mel[:, start : start + clip_frames(N)]``. Per clip it writes:

* ``mel`` ``(n_mels, frames)`` in the store's dtype, one clip per HDF5 chunk (Blosc-LZ4);
* ``summary`` the per-band mean and standard deviation over time, as the Parquet table
  ``summary.parquet`` (columns ``mean_000`` ... ``std_127``), which the ``baseline`` model
  and SQL users read.

Its parameters are :class:`~feature_store.params.FeatureParams` (the folder is
``mel-<params hash>``); the cache of full-length mels is shared by every dtype and mode
(``cache/mel-<spectral hash>``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from feature_store.engine.view import ArraySpec, FeatureView, Option, Rows, Starts
from feature_store.features import mel_spectrogram, power_mel, power_to_db, window_summaries
from feature_store.params import FeatureParams


class MelView(FeatureView, name="mel"):
    """Log-power mel spectrograms of every clip.

    Mel spectrograms (22050 Hz, n_fft 2048, hop 512, 128 mels, power_to_db; librosa's numbers
    within 2e-3 dB, computed by the store's own blocked STFT and sparse filterbank) of every
    clip of one length, partitioned by clip length in seconds. Each partition is a chunked
    `mel.h5` (clips × 128 mels × frames) with an `index.parquet` of its rows (song, genre, split
    parts, segment) and a `summary.parquet` of per-band statistics, published atomically as a
    new generation. Songs are decoded once into a cache shared by all partitions.
    """

    default_arrays: ClassVar[tuple[str, ...]] = ("mel",)
    params_type: ClassVar[type] = FeatureParams
    params: FeatureParams

    @classmethod
    def declared_options(cls) -> tuple[Option, ...]:
        # FeatureParams is the store's clip geometry too, so its dtype field is declared here
        default = {f.name: f.default for f in dataclasses.fields(FeatureParams)}["dtype"]
        return (Option("dtype", "dtype", default, "Storage dtype of the mel store: float32 | float16.",
                       ("float32", "float16")),)

    def summary(self, provenance: Mapping[str, Any]) -> str:
        return f"mode {self.params.mode}, {self.params.dtype}"

    def cache_folder(self, provenance: Mapping[str, Any]) -> str:
        # dtype and mode do not change the full-length mel: every store shares one cache
        return f"mel-{self.params.spectral_hash()}"

    def label(self) -> str:
        return f"feature store for params {self.params.hash()}"

    def array_specs(self, clip_seconds: int) -> list[ArraySpec]:
        p = self.params
        cols = summary_columns(p.n_mels)
        return [
            ArraySpec("mel", (p.n_mels, p.clip_frames(clip_seconds)), p.dtype, chunking="row"),
            ArraySpec("summary", (2 * p.n_mels,), "float32", hdf5=False, columns=cols),
        ]

    def entry_shape(self) -> tuple[int, ...]:
        return (self.params.n_mels, self.params.song_frames)

    def prepare(self, y: np.ndarray, *, whole_file: bool = False) -> np.ndarray:
        # no BLAS in the mel (scipy.fft + a sparse filterbank): the numbers are the same in
        # every process, whatever its thread settings or the number of workers
        return mel_spectrogram(y, params=self.params)

    def frame_chunk(self, segment: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        return power_mel(segment, params=self.params, centered=False), None

    @property
    def needs_peak(self) -> bool:
        return self.params.top_db is not None  # the dB floor is the loudest frame's minus top_db

    def finish_frames(self, raw: np.ndarray, peak: float | None) -> np.ndarray:
        return power_to_db(raw, top_db=self.params.top_db, peak=peak)

    def clip_rows(self, entry: np.ndarray, wanted: Mapping[int, Starts]) -> dict[int, Rows]:
        frames = {c: self.params.clip_frames(c) for c in wanted}
        windows = sorted({(int(s), frames[c]) for c, starts in wanted.items() for s in starts})
        # the band summaries of every window in two passes over the mel (nested and
        # disjoint windows alike), instead of a pass per window
        summaries = window_summaries(entry, windows=windows)
        out: dict[int, Rows] = {}
        for c, starts in wanted.items():
            f = frames[c]
            out[c] = {
                # views into the entry: the writer copies each into its chunk
                "mel": [entry[:, int(s) : int(s) + f] for s in starts],  # type: ignore[dict-item]
                "summary": np.stack([summaries[(int(s), f)] for s in starts]) if len(starts) else
                np.zeros((0, 2 * self.params.n_mels), np.float32),
            }
        return out

    def registry_fields(self) -> dict[str, Any]:
        from feature_store.params import FEATURE_CODE_VERSION

        return {"spectral_hash": self.params.spectral_hash(), "feature_code_version": FEATURE_CODE_VERSION}

    def hdf5_attrs(self, clip_seconds: int) -> dict[str, Any]:
        return {"layout": "(clips, n_mels, frames)"}


@functools.lru_cache(maxsize=8)
def summary_columns(n_mels: int) -> tuple[str, ...]:
    """The summary table's columns: a query asks for them (through the array specs) three
    times, and 256 formatted names took about 0.1 ms each time."""
    return tuple(f"mean_{b:03d}" for b in range(n_mels)) + tuple(f"std_{b:03d}" for b in range(n_mels))
