"""Pretrained music embeddings: musicnn in Keras 3 (:mod:`.musicnn`) and its store (:mod:`.store`).

The view itself is declared in :mod:`feature_store.views.embeddings`. Importing this package
is cheap: the names below are imported on first use, and TensorFlow and Keras only inside
the functions that run the network.
"""

from __future__ import annotations

from feature_store.lazy import lazy_getattr

_LAZY: dict[str, str] = {
    **dict.fromkeys(
        ["INSTALL_COMMAND", "LAYERS", "MUSICNN_MODELS", "MusicnnEmbedder", "MusicnnWeightsError", "build_musicnn",
         "weights_folder", "weights_sha256"],
        "feature_store.embeddings.musicnn",
    ),
    **dict.fromkeys(
        ["DEFAULT_LAYERS", "EmbeddingBuildReport", "EmbeddingStore", "EmbeddingTensors", "build_embeddings",
         "embed_file"],
        "feature_store.embeddings.store",
    ),
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
