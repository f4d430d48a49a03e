"""Contributor template: copy this file to ``feature_store/views/<name>.py`` and fill it in.

A view module declares one :class:`~feature_store.engine.view.FeatureView` subclass (this
file is skipped by discovery because its name starts with ``_``). Nothing else changes: the
engine builds and queries it, ``gtzan features build|describe|query --view <name>`` and a
Dagster asset ``<name>_features[clip]`` with its sanity check ``<name>_sane`` appear by
themselves, a params field declared with :func:`option` becomes a ``gtzan features`` flag and a
Dagster config field, and models can train on it (see README, "Adding a feature view").

Checklist:

1. A frozen params dataclass with every parameter that changes the numbers (``mode``
   included), and a ``hash()`` that includes a code version you bump when the numbers
   change. A field a user may set is declared with ``metadata=option("help")``.
2. ``prepare``: one song's features, computed in a worker process (import heavy libraries
   inside it). ``cache_scope = "song"`` when that is a ``(features, frames)`` array that
   clips are cut from; ``"clip"`` (with ``main_process = True``) when the rows themselves are
   the expensive part, such as a network.
3. ``clip_rows``: the per-clip arrays of :meth:`array_specs`, from the prepared features.
4. A test under ``tests/feature_store/`` with values against known answers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from feature_store.engine.view import ArraySpec, FeatureView, Rows, Starts, option, window_rows
from feature_store.params import FeatureParams, digest

CODE_VERSION = "1"


@dataclasses.dataclass(frozen=True)
class MyParams:
    """Every parameter of the view's numbers (the clip geometry's ``mode`` included)."""

    mode: str = "first"
    #: a user option: ``--smoothing`` of ``gtzan features`` and a Dagster config field
    smoothing: int = dataclasses.field(default=1, metadata=option("Frames averaged per value."))

    def clip_params(self) -> FeatureParams:
        return FeatureParams(mode=self.mode)  # type: ignore[arg-type]

    def hash(self) -> str:
        return digest({**dataclasses.asdict(self), "code": CODE_VERSION})


# name: the --view value (the Dagster asset is myview_features, its check myview_sane)
class MyView(FeatureView, name="myview"):
    """One line: what each clip holds (the view's title).

    A paragraph for the Dagster UI: what the asset stores, and how.
    """

    default_arrays: ClassVar[tuple[str, ...]] = ("myarray",)
    params_type: ClassVar[type] = MyParams  # the folder is <name>-<params.hash()>

    def array_specs(self, clip_seconds: int) -> list[ArraySpec]:
        return [ArraySpec("myarray", (2,), columns=("first", "second"))]

    def entry_shape(self) -> tuple[int, ...]:
        return (2, self.clip_params.song_frames)

    def prepare(self, y: np.ndarray, *, whole_file: bool = False) -> np.ndarray:
        raise NotImplementedError("compute (2, 1 + len(y) // hop_length) frame features of y here")

    def clip_rows(self, entry: np.ndarray, wanted: Mapping[int, Starts]) -> dict[int, Rows]:
        out: dict[int, Rows] = {}
        for c, starts in wanted.items():
            clips = window_rows(entry, list(starts), self.clip_frames(c))
            out[c] = {"myarray": clips.mean(axis=2).astype(np.float32)}
        return out
