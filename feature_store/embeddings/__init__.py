"""Pretrained music embeddings as a feature view: musicnn in Keras 3, stored per clip length.

Importing this package is cheap: TensorFlow and Keras are imported inside the functions
that run the network.
"""

from feature_store.embeddings.musicnn import (
    INSTALL_COMMAND,
    LAYERS,
    MUSICNN_MODELS,
    MusicnnEmbedder,
    MusicnnWeightsError,
    build_musicnn,
    weights_folder,
    weights_sha256,
)
from feature_store.embeddings.store import (
    DEFAULT_LAYERS,
    EmbeddingBuildReport,
    EmbeddingStore,
    EmbeddingTensors,
    build_embeddings,
    embed_file,
)

__all__ = [
    "DEFAULT_LAYERS",
    "EmbeddingBuildReport",
    "EmbeddingStore",
    "EmbeddingTensors",
    "INSTALL_COMMAND",
    "LAYERS",
    "MUSICNN_MODELS",
    "MusicnnEmbedder",
    "MusicnnWeightsError",
    "build_embeddings",
    "build_musicnn",
    "embed_file",
    "weights_folder",
    "weights_sha256",
]
