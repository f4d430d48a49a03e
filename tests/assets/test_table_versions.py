"""Table versions as Dagster data versions: no retraining on unchanged features (issue 19).

The opt-in graph ``timbre_shards`` -> ``timbre_table`` -> ``timbre_table_models`` on the tiny
corpus of the asset tests (two shards, 5 s clips, the objects in the store root's local
folder), one Dagster instance across store locations: automation is evaluated tick by tick
with ``dagster.evaluate_automation_conditions``, and staleness read with Dagster's resolver.
"""

import dataclasses
import wave
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from asset_helpers import make_resources, materialize_ingest
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from assets.index_tables import NoTableError, observe_table, table_asset, table_asset_name
from assets.policies import ON_DEP_DATA_VERSION_CHANGED
from assets.resources import ObjectStoreResource
from assets.sharded import sharded_asset
from assets.models import TrainingConfig
from assets.table_models import (model_kinds, recorded_table, table_models_asset, table_models_name,
                                   table_models_of, train_on_table)
from training.record import RunRecord

VIEW = "timbre"
MODEL = "timbre_logreg"  # the fastest family: a logistic regression on the timbral statistics
SHARDS = 2
CLIP = "5"
CELL = dg.MultiPartitionKey({"clip": CLIP, "model": MODEL})
SHARD_ASSET = sharded_asset(VIEW, shards=SHARDS)
TABLE_ASSET = table_asset(VIEW, shards=SHARD_ASSET)
MODELS_ASSET = table_models_asset(VIEW, table=TABLE_ASSET)
GRAPH = [SHARD_ASSET, TABLE_ASSET, MODELS_ASSET]
TABLE, MODELS = dg.AssetKey(table_asset_name(VIEW)), dg.AssetKey(table_models_name(VIEW))
#: Dagster's own automation condition tester selects assets with a parameter it calls beta.
pytestmark = pytest.mark.filterwarnings("ignore:Parameter `include_sources`:dagster.BetaWarning")


def ingested(corpus: Path, data: Path) -> dict:
    """Resources on the store root ``data/store``, ingested, with its local objects folder."""
    res = {**make_resources(corpus, data), "objects": ObjectStoreResource()}
    assert materialize_ingest(res, checks=False).success
    return res


def publish(instance: dg.DagsterInstance, res: dict, shards=range(SHARDS)) -> dg.AssetMaterialization:
    """Materialize ``shards`` of the 5 s clips, then the table partition; its materialization."""
    for s in shards:
        key = dg.MultiPartitionKey({"clip": CLIP, "shard": f"{s:04d}"})
        assert dg.materialize(GRAPH, selection=[SHARD_ASSET], partition_key=key, resources=res,
                              instance=instance).success
    run = dg.materialize(GRAPH, selection=[TABLE_ASSET], partition_key=CLIP, resources=res, instance=instance)
    (event,) = run.asset_materializations_for_node(TABLE.to_user_string())
    return event


def train(instance: dg.DagsterInstance, res: dict) -> dg.AssetMaterialization:
    run = dg.materialize(GRAPH, selection=[MODELS_ASSET], partition_key=str(CELL), resources=res, instance=instance)
    (event,) = run.asset_materializations_for_node(MODELS.to_user_string())
    return event


class Ticks:
    """Automation ticks on one instance, each from the previous tick's cursor (the resources are
    those of any store location: evaluating conditions uses none)."""

    def __init__(self, instance: dg.DagsterInstance, res: dict) -> None:
        self.instance, self.cursor = instance, None
        self.defs = dg.Definitions(assets=GRAPH, resources=res)
        self.tick()  # the first evaluation: conditions compare later ticks with this one

    def tick(self) -> set[str]:
        """The model cells requested by this tick."""
        result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        return {str(k) for k in result.get_requested_partitions(MODELS)}


def status(instance: dg.DagsterInstance) -> StaleStatus:
    return get_stale_status_resolver(instance, GRAPH).get_status(MODELS, str(CELL))


def data_version(event: dg.AssetMaterialization) -> str:
    return event.tags["dagster/data_version"]


def trained_model(instance: dg.DagsterInstance, res: dict) -> tuple[Ticks, dg.AssetMaterialization]:
    """Shards, table and model of the first store location, and the automation ticks that follow."""
    ticks = Ticks(instance, res)
    table = publish(instance, res)
    assert ticks.tick() == {str(CELL)}, "a new table partition's data version requests its models"
    model = train(instance, res)
    assert model.metadata["table_version"].value == table.metadata["table_version"].value
    assert model.metadata["table_data_version"].value == data_version(table)
    assert ticks.tick() == set() and status(instance) == StaleStatus.FRESH
    return ticks, table


def index_of(res: dict):
    """The index table of the timbre view at 5 s, on the store location of ``res``."""
    from feature_store.engine.sharded import index_table

    store = res["features"].view_store(VIEW)
    return index_table(res["objects"].storage(store_root=res["features"].root), store.view, clip_seconds=int(CLIP))


def test_a_republish_of_the_same_rows_keeps_the_data_version_and_retrains_nothing(corpus, tmp_path):
    with dg.DagsterInstance.ephemeral() as instance:
        res = ingested(corpus, tmp_path / "a")
        ticks, first = trained_model(instance, res)
        # the table partition compacted the shards' files: one file per label and split part
        history = [v.operation for v in index_of(res).history()]
        from feature_store.engine.lake import files as lake_files

        files = index_of(res).files()
        assert history[-1] == "COMPACT" and all(
            lake_files.settled([f for f in files if f.label == k], column="seed") for k in {f.label for f in files})
        assert first.metadata["table_version"].value == len(history) - 1
        # the same shards again (new runs: published already, nothing committed) and the table again
        again = publish(instance, res)
        assert again.metadata["table_version"].value == first.metadata["table_version"].value
        assert data_version(again) == data_version(first)
        assert ticks.tick() == set() and status(instance) == StaleStatus.FRESH
        # the same corpus rebuilt into another store location: new objects, a new table, new runs
        other = ingested(corpus, tmp_path / "b")
        rebuilt = publish(instance, other)
        assert rebuilt.metadata["table"].value != first.metadata["table"].value
        assert rebuilt.metadata["table_digest"].value != first.metadata["table_digest"].value  # other objects
        assert rebuilt.metadata["rows_digest"].value == first.metadata["rows_digest"].value
        assert data_version(rebuilt) == data_version(first)
        assert ticks.tick() == set(), "a table materialized again with the same rows retrains no model"
        assert status(instance) == StaleStatus.FRESH
        assert len(instance.fetch_materializations(MODELS, limit=10).records) == 1


def louder(corpus: Path) -> str:
    """Change one song of ``corpus`` (its samples, a little noise added); its file name."""
    path = sorted((corpus / "genres_original" / "blues").glob("*.wav"))[0]
    with wave.open(str(path), "rb") as f:
        params, frames = f.getparams(), f.readframes(f.getnframes())
    assert params.sampwidth == 2
    samples = np.frombuffer(frames, dtype="<i2").astype(np.int32)
    noise = np.random.default_rng(0).integers(-2000, 2000, size=samples.shape)
    with wave.open(str(path), "wb") as f:
        f.setparams(params)
        f.writeframes(np.clip(samples + noise, -32768, 32767).astype("<i2").tobytes())
    return path.name


def test_a_changed_song_changes_the_data_version_and_requests_the_models(corpus, tmp_path):
    with dg.DagsterInstance.ephemeral() as instance:
        res = ingested(corpus, tmp_path / "a")
        ticks, first = trained_model(instance, res)
        louder(corpus)  # the store refuses new rows for a published shard: publish into a new location
        changed = publish(instance, ingested(corpus, tmp_path / "b"))
        assert changed.metadata["rows"].value == first.metadata["rows"].value
        assert data_version(changed) != data_version(first)
        assert status(instance) == StaleStatus.STALE
        assert ticks.tick() == {str(CELL)}, "a changed table partition requests the models that read it"
        # a cell run with the first location's resources would read another table than the recorded one
        stale = dg.materialize(GRAPH, selection=[MODELS_ASSET], partition_key=str(CELL), resources=res,
                               instance=instance, raise_on_error=False)
        (failure,) = [e for e in stale.all_events if e.event_type_value == "STEP_FAILURE"]
        error = failure.step_failure_data.user_failure_data.description
        assert error.startswith(f"timbre_table 5 recorded the table {changed.metadata['table'].value}, but this "
                                f"run's resources read {first.metadata['table'].value}") and "\n" not in error
        model = train(instance, ingested(corpus, tmp_path / "b"))
        assert model.metadata["table"].value == changed.metadata["table"].value
        assert model.metadata["table_data_version"].value == data_version(changed)
        assert ticks.tick() == set() and status(instance) == StaleStatus.FRESH


def test_a_changed_song_republished_in_place_replaces_its_shards_and_requests_the_models(corpus, tmp_path):
    with dg.DagsterInstance.ephemeral() as instance:
        res = ingested(corpus, tmp_path / "a")
        ticks, first = trained_model(instance, res)
        louder(corpus)
        res = ingested(corpus, tmp_path / "a")  # the same store location, ingested again
        changed = publish(instance, res)
        assert changed.metadata["table"].value == first.metadata["table"].value
        assert changed.metadata["table_version"].value > first.metadata["table_version"].value
        assert changed.metadata["rows"].value == first.metadata["rows"].value  # replaced, never added twice
        assert data_version(changed) != data_version(first)
        assert status(instance) == StaleStatus.STALE and ticks.tick() == {str(CELL)}
        model = train(instance, res)
        assert model.metadata["table_data_version"].value == data_version(changed)
        assert ticks.tick() == set() and status(instance) == StaleStatus.FRESH


def test_a_model_trains_on_the_version_its_table_partition_recorded(corpus, tmp_path):
    with dg.DagsterInstance.ephemeral() as instance:
        res = ingested(corpus, tmp_path / "a")
        pinned = publish(instance, res, shards=[0])
        # shard 1 commits a newer version, which no table materialization has recorded yet
        key = dg.MultiPartitionKey({"clip": CLIP, "shard": "0001"})
        assert dg.materialize(GRAPH, selection=[SHARD_ASSET], partition_key=key, resources=res,
                              instance=instance).success
        seen = observe_table(view=VIEW, clip_seconds=int(CLIP), features=res["features"], objects=res["objects"])
        assert seen.version > pinned.metadata["table_version"].value and seen.rows > pinned.metadata["rows"].value
        model = train(instance, res)
        assert model.metadata["table_version"].value == pinned.metadata["table_version"].value
        run = RunRecord.load(Path(model.metadata["run_dir"].value))
        assert (run.table_uri, run.table_version) == (seen.table_uri, pinned.metadata["table_version"].value)
        assert run.table_digest == pinned.metadata["table_digest"].value
        assert run.train_clips + run.test_clips == pinned.metadata["rows"].value
        assert pinned.metadata["shards_with_rows"].value == 1 and seen.shards == (0, 1)
        # a version that no longer holds the recorded rows (a table written anew at the same place)
        recorded = recorded_table(instance, view=VIEW, clip_seconds=int(CLIP))
        assert recorded.version == run.table_version and recorded.data_version == data_version(pinned)
        with pytest.raises(dg.Failure, match=f"version {recorded.version} of .* no longer holds the rows"):
            train_on_table(view=VIEW, model=MODEL, clip_seconds=int(CLIP), config=TrainingConfig(),
                           pinned=dataclasses.replace(recorded, table_digest="sha256:0"),
                           features=res["features"], models=res["models"], objects=res["objects"])


def test_a_table_partition_of_no_published_shard_fails_in_one_line_without_retry(corpus, tmp_path):
    res = ingested(corpus, tmp_path / "a")
    with pytest.raises(NoTableError, match="no shard of the timbre view at 5 s is published"):
        observe_table(view=VIEW, clip_seconds=5, features=res["features"], objects=res["objects"])
    result = dg.materialize(GRAPH, selection=[TABLE_ASSET], partition_key=CLIP, resources=res, raise_on_error=False)
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.step_failure_data.user_failure_data
    assert error.description.startswith("NoTableError: no shard of the timbre view") and "\n" not in error.description
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    # the model of a table partition never materialized: one line, no training
    result = dg.materialize(GRAPH, selection=[MODELS_ASSET], partition_key=str(CELL), resources=res,
                            raise_on_error=False)
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_failure_data.user_failure_data.description == (
        "timbre_table has no materialization of partition 5: materialize it first")
    assert not (tmp_path / "a" / "models").exists()


def test_the_models_are_partitioned_by_clip_and_the_models_that_train_on_a_table():
    assert table_models_of("timbre") == ("timbre_logreg",)
    assert "baseline" not in table_models_of("mel") and "cnn" in table_models_of("mel")
    assert (model_kinds("timbre"), model_kinds("mel")) == ({"scikitlearn"}, {"tensorflow", "keras"})
    graph = AssetGraph.from_assets(GRAPH)
    assert graph.get(MODELS).automation_condition == ON_DEP_DATA_VERSION_CHANGED
    parents = graph.get_parent_partition_keys_for_child(str(CELL), TABLE, MODELS).partitions_subset
    assert set(parents.get_partition_keys()) == {CLIP}
    shards = graph.get_parent_partition_keys_for_child(CLIP, SHARD_ASSET.key, TABLE).partitions_subset
    assert set(shards.get_partition_keys()) == {f"{CLIP}|{s:04d}" for s in range(SHARDS)}
