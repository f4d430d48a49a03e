"""The feature views as training reads them: the one adapter to the feature store.

Every model family trains from a view of the store. This module is the only place that knows
how each view is stored:

* :func:`get_view` names a view (``mel``, ``embeddings``) with its options;
* :meth:`View.store` opens its store at a root, :meth:`View.tensors` reads named arrays of
  selected clips (``x`` [shape=(clips, n_mels, frames)] for ``mel``, the arrays side by side
  [shape=(clips, features)] for vector views).

It stands in for the feature-view engine's ``get_view(name, options)`` and
``ViewStore(root, view).tensors(arrays=...)`` (``notes/engine-api.md``); when those land, these
become calls of them and the model families do not change. Until then a new view (``timbre``)
is one more :class:`View` subclass here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from feature_store.errors import ParameterError
from feature_store.params import FeatureParams


class Tensors(NamedTuple):
    """Arrays of selected clips: ``x``, int64 labels ``y`` and the index rows of ``x``."""

    x: np.ndarray
    y: np.ndarray
    index: Any


class View:
    """One feature view with its parameters: how to open, read and compute it.

    Attributes
    ----------
    name : str
    params : FeatureParams
        The clip definitions (sample rate, hop, mode, dtype) every view shares.
    options : dict
        What else picks the view's store (``embedding_model``).
    sample_rate : int
        Rate at which the view decodes audio.
    hop_length : int
        Samples between the frames of its time-frequency input.
    """

    name = ""
    sample_rate = 0
    hop_length = 0

    def __init__(self, params: FeatureParams, options: Mapping[str, Any]) -> None:
        self.params = params
        self.options = dict(options)

    def store(self, root: str | os.PathLike[str]) -> Any:
        """The view's store at ``root`` (it need not be built yet)."""
        raise NotImplementedError

    def tensors(self, store: Any, *, clip_seconds: int, split: Any = None, scheme: str = "seed",
                song_ids: Sequence[str] | None = None, arrays: Sequence[str] | None = None) -> Tensors:
        """The arrays of the clips that ``store.clips`` selects, in ``hdf5_row`` order."""
        raise NotImplementedError

    def clip_frames(self, clip_seconds: int) -> int:
        """Frames of the view's time-frequency input in one clip."""
        raise NotImplementedError

    def extraction_ms_per_clip(self, store: Any, clip_seconds: int) -> float | None:
        """The store's recorded cost of computing one clip's features, where it records one."""
        return None

    def provenance(self, store: Any, arrays: Sequence[str]) -> dict[str, Any] | None:
        """What a run record should say about where its features came from (``embedding``)."""
        return None



class MelView(View):
    """Log-power mel spectrograms (:class:`feature_store.store.FeatureStore`)."""

    name = "mel"

    def __init__(self, params: FeatureParams, options: Mapping[str, Any]) -> None:
        super().__init__(params, options)
        self.sample_rate, self.hop_length = params.sr, params.hop_length

    def store(self, root: str | os.PathLike[str]) -> Any:
        from feature_store.store import FeatureStore

        return FeatureStore(root, params=self.params)

    def tensors(self, store: Any, *, clip_seconds: int, split: Any = None, scheme: str = "seed",
                song_ids: Sequence[str] | None = None, arrays: Sequence[str] | None = None) -> Tensors:
        t = store.tensors(clip_seconds=clip_seconds, split=split, scheme=scheme, song_ids=song_ids)
        return Tensors(t.x, t.y, t.index)

    def clip_frames(self, clip_seconds: int) -> int:
        return self.params.clip_frames(clip_seconds)



class EmbeddingsView(View):
    """Pretrained musicnn clip embeddings (:class:`feature_store.embeddings.EmbeddingStore`)."""

    name = "embeddings"

    def __init__(self, params: FeatureParams, options: Mapping[str, Any]) -> None:
        from feature_store.embeddings import musicnn as mn

        super().__init__(params, {"embedding_model": "MSD_musicnn", **options})
        self.model = mn.validate_model(self.options["embedding_model"])
        self.sample_rate, self.hop_length = mn.SR, mn.HOP_LENGTH

    def store(self, root: str | os.PathLike[str]) -> Any:
        from feature_store.embeddings.store import EmbeddingStore

        return EmbeddingStore(root, model=self.model, params=self.params)

    def tensors(self, store: Any, *, clip_seconds: int, split: Any = None, scheme: str = "seed",
                song_ids: Sequence[str] | None = None, arrays: Sequence[str] | None = None) -> Tensors:
        from feature_store.embeddings.store import DEFAULT_LAYERS

        t = store.tensors(clip_seconds=clip_seconds, split=split, scheme=scheme, song_ids=song_ids,
                          layers=arrays or DEFAULT_LAYERS)
        return Tensors(t.x, t.y, t.index)

    def clip_frames(self, clip_seconds: int) -> int:
        from feature_store.embeddings import musicnn as mn

        return mn.clip_frames(clip_seconds)

    def extraction_ms_per_clip(self, store: Any, clip_seconds: int) -> float | None:
        ms = (store.describe()["clip_lengths"].get(str(clip_seconds)) or {}).get("embed_ms_per_clip")
        return float(ms) if ms is not None else float("nan")

    def provenance(self, store: Any, arrays: Sequence[str]) -> dict[str, Any] | None:
        from feature_store.embeddings.musicnn import LAYERS

        return {
            "model": self.model,
            "weights_sha256": store.describe().get("weights_sha256"),
            "embedding_hash": store.hash(),
            "layers": list(arrays),
            "features": int(sum(LAYERS[n] for n in arrays)),
        }



#: The views training reads, by name.
VIEWS: dict[str, type[View]] = {"mel": MelView, "embeddings": EmbeddingsView}


def get_view(name: str, *, params: FeatureParams | None = None, options: Mapping[str, Any] | None = None) -> View:
    """The view ``name`` on the clips of ``params`` (default ``FeatureParams()``).

    Raises
    ------
    ParameterError
        Unknown view (the message names the valid ones) or option value.
    """
    if name not in VIEWS:
        raise ParameterError(f"unknown feature view {name!r}; valid views are {sorted(VIEWS)}")
    return VIEWS[name](params or FeatureParams(), options or {})
