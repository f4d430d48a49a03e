"""A toy feature view for the engine's tests: numbers that are easy to predict.

``prepare`` turns a song into two frame features on the mel view's grid (hop 512 at
22050 Hz): the frame number and the peak absolute sample of the frame's hop. A clip's
``level`` is ``[start frame, mean peak]`` and its ``frames`` array is the window itself.
:class:`ClipToyView` caches rows per clip length and computes them "in the main process", as
a network would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from feature_store.engine.view import ArraySpec, FeatureView, option, window_rows
from feature_store.params import FeatureParams


@dataclasses.dataclass(frozen=True)
class ToyParams:
    mode: str = "first"
    scale: float = dataclasses.field(default=1.0, metadata=option("Scale of the peaks."))

    def hash(self) -> str:
        return f"{self.mode}-{self.scale:g}"

    def clip_params(self) -> FeatureParams:
        return FeatureParams(mode=self.mode)  # type: ignore[arg-type]


class ToyView(FeatureView, name="toy"):
    title: ClassVar[str] = "a toy view"
    default_arrays: ClassVar[tuple[str, ...]] = ("level",)
    params_type: ClassVar[type] = ToyParams
    #: what provenance() reports (a test changes it, as new weights would)
    version: ClassVar[str] = ""

    def provenance(self) -> dict[str, Any]:
        return {"toy_version": type(self).version} if type(self).version else {}

    def array_specs(self, clip_seconds: int) -> list[ArraySpec]:
        return [
            ArraySpec("level", (2,), columns=("start", "peak")),
            ArraySpec("frames", (2, self.clip_frames(clip_seconds)), chunking="row"),
        ]

    def entry_shape(self) -> tuple[int, ...]:
        return (2, self.clip_params.song_frames)

    def prepare(self, y: np.ndarray, *, whole_file: bool = False) -> np.ndarray:
        return toy_entry(y, scale=self.params.scale)

    def clip_rows(self, entry: np.ndarray, wanted: Mapping[int, Any]) -> dict[int, dict[str, np.ndarray]]:
        out = {}
        for c, starts in wanted.items():
            win = window_rows(entry, list(starts), self.clip_frames(c))
            level = np.stack([win[:, 0, 0], win[:, 1, :].mean(axis=1)], axis=1) if len(starts) else np.zeros((0, 2))
            out[c] = {"level": level.astype(np.float32), "frames": win.astype(np.float32)}
        return out


class ClipToyView(ToyView, name="cliptoy"):
    """The same numbers, cached per song and clip length, computed in the main process."""

    cache_scope: ClassVar[str] = "clip"  # type: ignore[misc]
    main_process: ClassVar[bool] = True
    cost_name: ClassVar[str | None] = "toy_ms_per_clip"

    def array_specs(self, clip_seconds: int) -> list[ArraySpec]:
        return [ArraySpec("level", (2,), columns=("start", "peak"))]

    def clip_rows(self, entry: np.ndarray, wanted: Mapping[int, Any]) -> dict[int, dict[str, np.ndarray]]:
        rows = super().clip_rows(entry, wanted)
        return {c: {"level": r["level"]} for c, r in rows.items()}


def toy_entry(y: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
    """``(2, 1 + n // 512)``: the frame number, and the peak of each hop of 512 samples."""
    frames = 1 + y.size // 512
    peaks = np.zeros(frames, np.float32)
    body = np.abs(y[: (y.size // 512) * 512]).reshape(-1, 512).max(axis=1) if y.size >= 512 else np.zeros(0)
    peaks[: body.size] = body
    return np.stack([np.arange(frames, dtype=np.float32), peaks * np.float32(scale)])


class SlowToyView(ToyView, name="slowtoy"):
    """The toy view, taking a second per song: long enough to kill a build in the middle."""

    def prepare(self, y: np.ndarray, *, whole_file: bool = False) -> np.ndarray:
        import time

        time.sleep(1.0)
        return super().prepare(y, whole_file=whole_file)
