"""The ``embeddings`` view: pretrained musicnn clip embeddings (Pons & Serra, 2019).

For every clip of the store (the same clips, clip ids and split columns as every view), the
mean over the 3 s musicnn patches inside the clip of four layers of the network
(:data:`~feature_store.embeddings.musicnn.LAYERS`: ``max_pool`` 753, ``mean_pool`` 753,
``penultimate`` 200, ``tags`` 50); a 1 s clip is repeat-padded to one patch. The network
runs in the build's own process (one network in memory, one TensorFlow start-up); worker
processes decode the songs and compute musicnn's log-mel beside it. The rows of each song
and clip length are cached, by content hash and by the sha256 of the weights::

    cache/emb-<model>-<weights sha[:12]>-<hash>/<sha256>-05s.npz
    features/emb-<model>-<hash>/clip-05s/current/{embeddings.h5, index.parquet}

``<hash>`` covers the model name, the clip geometry (``sr``, ``hop_length``, ``mode``),
musicnn's input constants and the embedding code version. The weights' sha256 is the view's
provenance: recorded in the registry and every HDF5 file, and a store made with other
weights is rebuilt.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from feature_store.embeddings import musicnn as mn
from feature_store.engine.frames import FrameSpec
from feature_store.engine.view import ArraySpec, FeatureView, Rows, Starts, option
from feature_store.params import FeatureParams, digest

#: The clip geometry's defaults (clip starts are frames of the mel view's grid).
CLIP_DEFAULTS = FeatureParams()
#: Bump when the numbers an embedding store holds would change.
EMBEDDING_CODE_VERSION = "1"
#: Layers that ``tensors()`` concatenates by default (753 + 200 + 50).
DEFAULT_LAYERS: tuple[str, ...] = ("max_pool", "penultimate", "tags")


@dataclasses.dataclass(frozen=True)
class EmbeddingParams:
    """Parameters of the embeddings view.

    Parameters
    ----------
    model : {'MSD_musicnn', 'MTT_musicnn'}
        Which musicnn weights embed the clips.
    sr, hop_length : int
        The clip geometry's rate and hop (clip starts are mel frames of this grid).
    mode : {'first', 'segments'}
        Which clips a song gives.
    """

    model: str = dataclasses.field(default="MSD_musicnn", metadata=option(
        "musicnn weights of the embeddings view: MSD_musicnn (Million Song Dataset tags) | MTT_musicnn "
        "(MagnaTagATune).", name="embedding_model", choices=mn.MUSICNN_MODELS))
    sr: int = CLIP_DEFAULTS.sr
    hop_length: int = CLIP_DEFAULTS.hop_length
    mode: str = "first"

    def __post_init__(self) -> None:
        mn.validate_model(self.model)
        self.clip_params()  # validates sr, hop_length and mode

    def clip_params(self) -> FeatureParams:
        return FeatureParams(sr=self.sr, hop_length=self.hop_length, mode=self.mode)  # type: ignore[arg-type]

    def hash(self) -> str:
        return digest({
            "model": self.model, "sr": self.sr, "hop_length": self.hop_length, "mode": self.mode,
            "musicnn": [mn.SR, mn.N_FFT, mn.HOP_LENGTH, mn.N_MELS, mn.PATCH_FRAMES],
            "code": EMBEDDING_CODE_VERSION,
        })


class EmbeddingsView(FeatureView, name="embeddings"):
    """Pretrained musicnn embeddings of every clip.

    Pretrained musicnn embeddings (Pons & Serra 2019; MSD_musicnn weights by default,
    re-implemented in Keras 3) of every clip of one length, partitioned by clip length in seconds:
    the same clips, clip ids and split columns as `mel_features`. Each clip's embedding is the
    mean over the 3 s musicnn patches inside it of four layers (max_pool 753, mean_pool 753,
    penultimate 200, tags 50; a 1 s clip is repeat-padded to one patch), stored as an
    `embeddings.h5` with an `index.parquet`, published atomically as a new generation. The
    registry records the model and the sha256 of its weights. Opt-in: `make run` builds it only
    with `--with-embeddings` (or `--models all`), so it stays empty after a default run. Needs
    the weights package (`pip install --no-deps musicnn==0.1.0`).
    """

    cache_scope: ClassVar[str] = "clip"  # type: ignore[misc]
    main_process: ClassVar[bool] = True
    cost_name: ClassVar[str | None] = "embed_ms_per_clip"
    opt_in: ClassVar[bool] = True
    default_arrays: ClassVar[tuple[str, ...]] = DEFAULT_LAYERS
    params_type: ClassVar[type] = EmbeddingParams
    params: EmbeddingParams

    def __init__(self, params: EmbeddingParams | None = None) -> None:
        super().__init__(params)
        self._embedder: mn.MusicnnEmbedder | None = None

    def summary(self, provenance: Mapping[str, Any]) -> str:
        return f"{self.model}, weights {str(provenance.get('weights_sha256', ''))[:12]}, mode {self.params.mode}"

    def describe_fields(self, registry: Mapping[str, Any]) -> dict[str, str]:
        inp = registry.get("input", {})
        return {
            "model": f"{registry.get('model')}, weights sha256 {registry.get('weights_sha256')}",
            "weights": f"{registry.get('weights_package')} in {registry.get('weights_folder')}",
            "input": f"{inp.get('sr')} Hz, n_fft {inp.get('n_fft')}, hop {inp.get('hop_length')}, "
                     f"{inp.get('n_mels')} mels, {inp.get('log')}; {inp.get('clip')}",
            "layers": ", ".join(f"{k} {v}" for k, v in registry.get("layers", {}).items()),
        }

    @classmethod
    def for_clips(cls, model: str, params: FeatureParams) -> EmbeddingsView:
        """The embeddings of the clips that ``params`` defines (its mel parameters do not matter)."""
        return cls(EmbeddingParams(model=model, sr=params.sr, hop_length=params.hop_length, mode=params.mode))

    @property
    def model(self) -> str:
        return self.params.model

    @property
    def folder(self) -> str:
        return f"emb-{self.model}-{self.hash()}"

    def cache_folder(self, provenance: Mapping[str, Any]) -> str:
        return f"emb-{self.model}-{str(provenance['weights_sha256'])[:12]}-{self.hash()}"

    def label(self) -> str:
        return f"{self.model} embedding store ({self.hash()}, mode {self.params.mode!r})"

    def provenance(self) -> dict[str, Any]:
        return {"weights_sha256": mn.weights_sha256(self.model)}  # names the install command if missing

    # -- geometry ---------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return mn.SR

    @property
    def frame_rate(self) -> float:
        return mn.SR / mn.HOP_LENGTH

    def clip_frames(self, clip_seconds: int) -> int:
        return mn.clip_frames(clip_seconds)


    # -- computing ----------------------------------------------------------------------------
    def array_specs(self, clip_seconds: int) -> list[ArraySpec]:
        return [ArraySpec(name, (width,), "float32") for name, width in mn.LAYERS.items()]

    def prepare(self, y: np.ndarray, *, whole_file: bool = False) -> np.ndarray:
        # musicnn's log-mel is (frames, mels); the engine's frames are (features, frames)
        return mn.log_mel(y, block_frames=mn.LOG_MEL_BLOCK_FRAMES if whole_file else None).T

    @property
    def frame_spec(self) -> FrameSpec:
        return FrameSpec(mn.SR, mn.N_FFT, mn.HOP_LENGTH)

    def frame_chunk(self, segment: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        return mn.log_mel(segment, centered=False).T, None

    def use_embedder(self, embedder: mn.MusicnnEmbedder) -> None:
        """Compute the rows with this loaded network (instead of the process's shared one)."""
        self._embedder = embedder

    def clip_rows(self, entry: np.ndarray, wanted: Mapping[int, Starts]) -> dict[int, Rows]:
        if self._embedder is None:
            self._embedder = mn.shared_embedder(self.model)
        return {c: self._embedder.embed_clips(entry.T, starts=list(starts), frames=mn.clip_frames(c))
                for c, starts in wanted.items()}

    def before_build(self, *, threads: int | None = None) -> None:
        mn.configure_threads(threads)

    def default_workers(self) -> int:
        # the network takes every core through TensorFlow's own threads; decoding beside it
        # pays only when cores are left over (BENCHMARKS.md)
        return max(1, (os.cpu_count() or 1) // 4)

    # -- records ----------------------------------------------------------------------------
    def index_columns(self, clip_seconds: int) -> dict[str, int]:
        return {"patches": mn.patch_count(mn.clip_frames(clip_seconds))}

    def clip_info(self, clip_seconds: int) -> dict[str, Any]:
        return {"patches_per_clip": mn.patch_count(mn.clip_frames(clip_seconds))}

    def registry_fields(self) -> dict[str, Any]:
        return {"model": self.model, "embedding_hash": self.hash(), "embedding_code_version": EMBEDDING_CODE_VERSION}

    def build_fields(self, provenance: Mapping[str, Any]) -> dict[str, Any]:
        return {
            **provenance,
            "weights_package": mn.MUSICNN_PACKAGE,
            "weights_folder": str(mn.weights_folder(self.model)),
            "layers": dict(mn.LAYERS),
            "input": {
                "sr": mn.SR, "n_fft": mn.N_FFT, "hop_length": mn.HOP_LENGTH, "n_mels": mn.N_MELS,
                "patch_frames": mn.PATCH_FRAMES, "log": "log10(10000 * S + 1)",
                "clip": "mean over non-overlapping 3 s patches; clips under 3 s repeat-padded",
            },
        }

    def hdf5_attrs(self, clip_seconds: int) -> dict[str, Any]:
        import json

        return {"model": self.model, "embedding_hash": self.hash(), "layout": "(clips, width) per layer",
                "tags": json.dumps(list(mn.tag_names(self.model)))}

    def describe_clip(self, info: Mapping[str, Any]) -> str:
        n = int(info.get("patches_per_clip", 0))
        ms = info.get(self.cost_name or "")
        return f", {n} musicnn patch{'' if n == 1 else 'es'} per clip" + (f", {ms:.0f} ms per clip" if ms else "")
