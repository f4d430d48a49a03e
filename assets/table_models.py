"""Models trained on a version of an index table: one asset per pipeline view, ``<view>_table_models``.

Each asset (group ``training_sharded``) is partitioned like ``genre_models`` by clip length and
model (``clip|model``), over the models of its view that train on clip arrays (not the mel
baseline, which reads the store folder's band summary). A cell reads the version of the index
table that the newest materialization of its ``<view>_table`` partition recorded (its
``table_version``), checks that the version still holds those rows, and trains every seed of
the run config on it with :func:`training.table_train.train_from_table`; each run records the
table, version and digest, and so does the cell's metadata.

Its automation condition, :data:`assets.policies.ON_DEP_DATA_VERSION_CHANGED`, requests a
cell when the *data version* of its table partition changed (the rows' content digest, see
:mod:`assets.index_tables`), and not when the table was only materialized again with the same
rows: no model is retrained on features that did not change. Dagster records the table
partition's data version with each cell's materialization, so a cell whose table changed
since is also marked stale (*Unsynced*).

Registered with the sharded assets, only when ``GTZAN_STORE_URL`` is set. TensorFlow is
imported by the training call, inside the asset body.
"""

import dataclasses
from typing import Any

import dagster as dg

from assets.index_tables import table_asset_name
from assets.metadata import step_metadata
from assets.models import TrainingConfig, check_config, runs_metadata
from assets.partitions import PIPELINE_MODELS, PIPELINE_VIEWS, clip_partitions
from assets.policies import ON_DEP_DATA_VERSION_CHANGED, RETRY_POLICY, TRAINING_POOL, permanent
from assets.resources import FeatureStoreResource, ModelStoreResource, ObjectStoreResource
from training.families import registry

#: The asset group of the models trained on index table versions.
GROUP = "training_sharded"
#: Trainers that read a table of the store folder, which an index table version does not hold
#: (the mel baseline's band summary): their models are not partitions of the table models.
STORE_TABLE_TRAINERS = ("summary_logreg",)


def table_models_name(view: str) -> str:
    """The table models asset of the view called ``view``: ``<view>_table_models``."""
    return f"{view}_table_models"


def table_models_of(view: str) -> tuple[str, ...]:
    """The pipeline models of ``view`` that train on a version of its index table."""
    decls = registry()
    return tuple(m for m in PIPELINE_MODELS if decls[m].view == view
                 and getattr(getattr(decls[m], "spec", None), "trainer", None) not in STORE_TABLE_TRAINERS)


def table_model_partitions(view: str) -> dg.MultiPartitionsDefinition:
    """``clip`` by ``model`` (:func:`table_models_of`), keys ``clip|model`` as ``genre_models``'."""
    return dg.MultiPartitionsDefinition({"clip": clip_partitions,
                                         "model": dg.StaticPartitionsDefinition(list(table_models_of(view)))})


def model_kinds(view: str) -> set[str]:
    """The kinds the UI shows for ``view``'s table models: Keras, scikit-learn, or both."""
    trainers = {getattr(getattr(registry()[m], "spec", None), "trainer", None) for m in table_models_of(view)}
    return ({"tensorflow", "keras"} if "keras" in trainers else set()) | (
        {"scikitlearn"} if trainers - {"keras"} else set())


@dataclasses.dataclass(frozen=True, kw_only=True)
class TablePartition:
    """What the newest materialization of a ``<view>_table`` partition recorded.

    Attributes
    ----------
    table_uri, table_digest, data_version : str
    version : int
    """

    table_uri: str
    version: int
    table_digest: str
    data_version: str


def recorded_table(instance: dg.DagsterInstance, *, view: str, clip_seconds: int) -> TablePartition:
    """The table version that the newest materialization of ``<view>_table`` at ``clip_seconds`` recorded.

    Raises
    ------
    dagster.Failure
        No such materialization (not retried: materialize the table first).
    """
    key = dg.AssetKey(table_asset_name(view))
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[str(clip_seconds)]), limit=1).records
    event = records[0].asset_materialization if records else None
    if event is None:
        raise dg.Failure(description=f"{key.to_user_string()} has no materialization of partition {clip_seconds}: "
                         "materialize it first", allow_retries=False)
    meta = event.metadata
    return TablePartition(table_uri=str(meta["table"].value), version=int(meta["table_version"].value),
                          table_digest=str(meta["table_digest"].value),
                          data_version=str(event.tags.get("dagster/data_version", "")))


def family_config(*, model: str, config: TrainingConfig, seed: int) -> Any:
    """The config of ``model``'s family for one seed: the run config's fields that it has."""
    from training.families import get_family

    config_type = get_family(model).config_type
    wanted = {"epochs": config.epochs, "seed": seed, "scheme": config.scheme, "batch_size": config.batch_size}
    return config_type(**{f.name: wanted[f.name] for f in dataclasses.fields(config_type) if f.name in wanted})


def train_on_table(*, view: str, model: str, clip_seconds: int, pinned: TablePartition, config: TrainingConfig,
                   features: FeatureStoreResource, models: ModelStoreResource,
                   objects: ObjectStoreResource) -> list[Any]:
    """Train every seed of ``config`` on the pinned table version; the runs' records.

    Raises
    ------
    dagster.Failure
        The resources name another table than the pinned one, or the pinned version no longer
        holds the rows it held (a table written anew at the same place): not retried.
    ParameterError, StoreError
        As :func:`training.table_train.train_from_table`.
    """
    from feature_store.engine.sharded import index_table
    from training.table_train import train_from_table

    storage = objects.storage(store_root=features.root)
    table = index_table(storage, features.view_store(view).view, clip_seconds=clip_seconds)
    if table.uri != pinned.table_uri:
        raise dg.Failure(description=f"{table_asset_name(view)} {clip_seconds} recorded the table {pinned.table_uri}, "
                         f"but this run's resources read {table.uri}: materialize {table_asset_name(view)} with "
                         "these resources first", allow_retries=False)
    if table.version_digest(pinned.version) != pinned.table_digest:
        raise dg.Failure(description=f"version {pinned.version} of {table.uri} no longer holds the rows "
                         f"{table_asset_name(view)} recorded ({pinned.table_digest}): materialize it again",
                         allow_retries=False)
    return [train_from_table(storage=storage, model_root=models.root, model=model, clip_seconds=clip_seconds,
                             version=pinned.version, params=features.params(),
                             config=family_config(model=model, config=config, seed=seed))
            for seed in config.seeds]


def table_models_asset(view: str, *, table: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """The table models asset of the view called ``view``, downstream of its table asset ``table``."""

    @dg.asset(
        key=table_models_name(view),
        group_name=GROUP,
        kinds=model_kinds(view),
        # the table partition of the cell's clip length: Dagster infers the mapping from the
        # cell's clip x model partitions to the clip dimension (MultiToSingleDimensionPartitionMapping)
        deps=[table],
        partitions_def=table_model_partitions(view),
        pool=TRAINING_POOL,
        retry_policy=RETRY_POLICY,
        automation_condition=ON_DEP_DATA_VERSION_CHANGED,
        description=f"A model per (clip length, model) partition of the {view} view, trained on the version of "
        f"its index table that {table_asset_name(view)} recorded (each run records the table, version and "
        "digest; the run's variant is table-v<version>). Automation retrains a cell only when the data version "
        "of its table partition changed, never on a re-publish that changed no row.",
    )
    def _asset(context: dg.AssetExecutionContext, config: TrainingConfig, features: FeatureStoreResource,
               models: ModelStoreResource, objects: ObjectStoreResource) -> dg.MaterializeResult:
        keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
        model, clip_seconds = keys["model"], int(keys["clip"])
        check_config(config)
        pinned = recorded_table(context.instance, view=view, clip_seconds=clip_seconds)
        with permanent():
            runs = train_on_table(view=view, model=model, clip_seconds=clip_seconds, pinned=pinned, config=config,
                                  features=features, models=models, objects=objects)
        for r in runs:
            context.log.info(f"{model} {clip_seconds} s seed {r.seed} on table version {r.table_version}: song "
                             f"accuracy {r.metrics.song_accuracy:.2f}")
        metadata = {**runs_metadata(runs, config, model=model, clip_seconds=clip_seconds), "table": pinned.table_uri,
                    "table_version": pinned.version, "table_digest": pinned.table_digest,
                    "table_data_version": pinned.data_version}
        return dg.MaterializeResult(metadata=step_metadata(metadata, features))

    return _asset


def table_models_assets(*, tables: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """One table models asset per pipeline view that has such models, each downstream of that
    view's table asset in ``tables``."""
    by_key = {a.key: a for a in tables}
    return [table_models_asset(view, table=by_key[dg.AssetKey(table_asset_name(view))])
            for view in PIPELINE_VIEWS if table_models_of(view)]
