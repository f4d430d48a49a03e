"""Partition definitions shared by the assets.

Two axes are partitions, because each cell is an artefact that is built, checked, retried
and backfilled on its own and that the UI should show as a grid:

* ``clip``: the clip length in seconds (1, 5, 15, 30). One HDF5 + Parquet store each.
* ``model``: the model family (every name in :data:`training.models.MODELS`).

Split scheme and seeds are *run config* of the training asset (:class:`assets.models.TrainingConfig`),
and the sampling mode is *resource config* (:class:`assets.resources.FeatureStoreResource`):

* seeds are repetitions of one experiment; the asset trains every seed of a cell and reports
  the mean and spread, so a seed is not an artefact of its own;
* a split scheme changes what "held out" means; the model store keys runs by model, clip
  and seed, so a change of scheme is a new experiment that re-runs the grid, not a third
  axis of the grid;
* the sampling mode changes the feature parameters and so their hash: it selects another
  store folder, and with it another whole graph of features and models.

A third partition dimension would triple the grid (and Dagster allows at most two).
"""

import dagster as dg

from feature_store.params import CLIP_SECONDS
from feature_store.views import VIEWS
from training.families import registry

#: The ``model`` partition dimension of ``genre_models``: every model, of any family, that
#: trains on a view of the default pipeline (the probes, on the opt-in musicnn embeddings, are
#: ``probe_models``' run config instead).
PIPELINE_MODELS: tuple[str, ...] = tuple(m for m, decl in registry().items() if not VIEWS[decl.view].opt_in)
#: The views ``genre_models`` trains on.
PIPELINE_VIEWS: tuple[str, ...] = tuple(dict.fromkeys(registry()[m].view for m in PIPELINE_MODELS))

clip_partitions = dg.StaticPartitionsDefinition([str(c) for c in CLIP_SECONDS])
model_partitions = dg.MultiPartitionsDefinition(
    {"clip": clip_partitions, "model": dg.StaticPartitionsDefinition(list(PIPELINE_MODELS))}
)


def model_key(*, model: str, clip_seconds: int | str) -> dg.MultiPartitionKey:
    """The partition key of one (model, clip length) cell."""
    return dg.MultiPartitionKey({"clip": str(clip_seconds), "model": model})
