"""Partition definitions shared by the assets."""

import dagster as dg

from feature_store.params import CLIP_SECONDS

#: Models trained by the pipeline by default.
PIPELINE_MODELS: tuple[str, ...] = ("seed_cnn", "seed_rnn")

clip_partitions = dg.StaticPartitionsDefinition([str(c) for c in CLIP_SECONDS])
model_partitions = dg.MultiPartitionsDefinition(
    {"clip": clip_partitions, "model": dg.StaticPartitionsDefinition(list(PIPELINE_MODELS))}
)
