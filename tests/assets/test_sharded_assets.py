"""The sharded assets: shards as a Dagster partition dimension beside clip length (issue 19).

On the tiny corpus of the asset tests (ingested by :func:`asset_helpers.materialize_ingest`),
with the objects and index tables in the local folder ``<store root>/objects``, and once on
SeaweedFS (``deploy/object_store.py``, as the store's S3 tests start it).
"""

import uuid

import dagster as dg
import pytest
from asset_helpers import make_resources, materialize_ingest

from assets.partitions import PIPELINE_VIEWS
from assets.index_tables import observe_table, table_asset, table_asset_name
from assets.resources import ObjectStoreResource
from assets.sharded import (GROUP, MAX_PARTITIONS, publish_partition, shard_partitions, sharded_asset,
                            sharded_asset_name, task_id)
from assets.table_models import GROUP as MODELS_GROUP
from assets.table_models import table_models_name
from feature_store.errors import ParameterError
from feature_store.params import CLIP_SECONDS
from pipelines.definitions import build_defs
from pipelines.settings import Settings

SHARDS = 2
VIEW = "mel"
CLIP = "5"


def key(shard: int, clip: str = CLIP) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"clip": clip, "shard": f"{shard:04d}"})


@pytest.fixture
def sharded(corpus, tmp_path) -> dict:
    """Ingested resources, with the ``objects`` resource on the store root's local folder."""
    res = {**make_resources(corpus, tmp_path / "data"), "objects": ObjectStoreResource()}
    assert materialize_ingest(res, checks=False).success
    return res


def table_of(res: dict):
    from feature_store.engine.sharded import index_table

    features, objects = res["features"], res["objects"]
    store = features.view_store(VIEW)
    return index_table(objects.storage(store_root=features.root), store.view, clip_seconds=int(CLIP))


def materialization(result: dg.ExecuteInProcessResult) -> dg.AssetMaterialization:
    (event,) = result.asset_materializations_for_node(sharded_asset_name(VIEW))
    return event


def test_two_shards_commit_their_rows_once_per_run_and_keep_their_data_version(sharded, tmp_path):
    asset = sharded_asset(VIEW, shards=SHARDS)
    first = {s: dg.materialize([asset], resources=sharded, partition_key=key(s)) for s in range(SHARDS)}
    table = table_of(sharded)
    history = table.history()
    commits = [v for v in history if v.task_id]
    assert [v.task_id for v in commits] == [task_id(run_id=first[s].run_id, view=VIEW, clip_seconds=5, shard=s)
                                          for s in range(SHARDS)]
    # the lineage `gtzan features publish` would record: the view's hash and code versions
    from feature_store.engine.sharded import code_version
    from feature_store.views import get_view

    assert {(v.params_hash, v.code_version) for v in commits} == {(get_view(VIEW).hash(), code_version(get_view(VIEW)))}
    rows = table.scan().collect()
    meta = {s: materialization(first[s]).metadata for s in range(SHARDS)}
    assert rows.height > 0 and sum(meta[s]["rows"].value for s in range(SHARDS)) == rows.height
    assert set(rows["shard"].to_list()) == {0, 1}
    for s in range(SHARDS):
        assert meta[s]["committed"].value is True and meta[s]["rows_added"].value == meta[s]["rows"].value
        assert meta[s]["table_version"].value == commits[s].version
        assert meta[s]["object_key"].value in set(rows.filter(rows["shard"] == s)["object_key"])
        assert (tmp_path / "data" / "store" / "objects" / meta[s]["object_key"].value).is_file()

    # the same partition in a new run: the shard is published already, so nothing is added
    # (the table only appends: a second task's rows would be the shard's rows twice)
    again = dg.materialize([asset], resources=sharded, partition_key=key(0))
    after = [v for v in table.history() if v.task_id]
    assert after == commits and table.scan().collect().height == rows.height
    event = materialization(again)
    assert event.metadata["committed"].value is False and event.metadata["rows_added"].value == 0
    assert event.metadata["object_key"].value == meta[0]["object_key"].value
    assert event.metadata["rows_digest"].value == meta[0]["rows_digest"].value
    assert event.tags["dagster/data_version"] == materialization(first[0]).tags["dagster/data_version"]
    assert materialization(first[0]).tags["dagster/data_version"] != materialization(first[1]).tags[
        "dagster/data_version"]
    objects = sharded["objects"].storage(store_root=sharded["features"].root)
    assert len([o for o in objects.list("") if o.key.endswith(".h5")]) == SHARDS  # no object of the new run


def test_a_retry_within_a_run_adds_nothing(sharded):
    res = {k: sharded[k] for k in ("audio", "features", "objects")}
    args = dict(view=VIEW, clip_seconds=int(CLIP), shard=1, shards=SHARDS, run_id="run-a", **res)
    done = publish_partition(**args)
    table = table_of(sharded)
    before = table.latest_version()
    retry = publish_partition(**args)  # a step retried by Dagster: same run id, same task id
    assert done.committed and done.rows_added == done.rows > 0
    assert not retry.committed and retry.rows_added == 0 and retry.rows == done.rows
    assert table.latest_version() == before and retry.table_version == done.table_version
    assert retry.object_key == done.object_key and retry.data_version() == done.data_version()
    objects = sharded["objects"].storage(store_root=sharded["features"].root)
    assert [o.key for o in objects.list("") if o.key.endswith(".h5")] == [done.object_key]  # the retry's deleted
    assert table.scan().collect().height == done.rows


def test_dagster_retry_of_a_run_reuses_its_run_id(sharded):
    """The asset's job run twice under one run id, as Dagster re-executes a step of the same run."""
    job = dg.Definitions(assets=[sharded_asset(VIEW, shards=SHARDS)],
                         resources=sharded).resolve_implicit_global_asset_job_def()
    run_id = str(uuid.uuid4())
    one, two = (job.execute_in_process(partition_key=str(key(0)), run_id=run_id) for _ in range(2))
    assert one.run_id == two.run_id == run_id
    a, b = materialization(one).metadata, materialization(two).metadata
    assert a["committed"].value is True and b["committed"].value is False and b["rows_added"].value == 0
    assert b["table_version"].value == a["table_version"].value and b["rows"].value == a["rows"].value
    assert table_of(sharded).scan().collect().height == a["rows"].value


def test_partitions_enumerate_every_clip_and_shard():
    parts = shard_partitions(SHARDS)
    keys = set(parts.get_partition_keys())
    assert keys == {str(key(s, str(c))) for s in range(SHARDS) for c in CLIP_SECONDS}
    assert len(keys) == SHARDS * len(CLIP_SECONDS)
    # a backfill of all shards: every key resolves to its (clip, shard)
    got = {(k.keys_by_dimension["clip"], k.keys_by_dimension["shard"]) for k in parts.get_partition_keys()}
    assert got == {(str(c), f"{s:04d}") for c in CLIP_SECONDS for s in range(SHARDS)}
    most = MAX_PARTITIONS // len(CLIP_SECONDS)
    assert len(shard_partitions(most).get_partition_keys()) == MAX_PARTITIONS
    for bad in (0, most + 1, True, "2"):
        with pytest.raises(ParameterError):
            shard_partitions(bad)


def test_default_definitions_have_no_sharded_asset_and_the_store_url_adds_them(tmp_path):
    base = Settings(data_dir=tmp_path)
    default = build_defs(settings=base).resolve_asset_graph()
    assert not [k for k in default.get_all_asset_keys() if default.get(k).group_name == GROUP]
    s3 = Settings(data_dir=tmp_path, store_url="s3://bucket/gtzan", shards=3)
    defs = build_defs(settings=s3)
    graph = defs.resolve_asset_graph()
    sharded = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).group_name == GROUP}
    assert sharded == {f(v) for v in PIPELINE_VIEWS for f in (sharded_asset_name, table_asset_name)}
    models = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).group_name == MODELS_GROUP}
    assert models == {table_models_name(v) for v in PIPELINE_VIEWS}
    added = {dg.AssetKey(n) for n in sharded | models}
    assert set(graph.get_all_asset_keys()) - added == set(default.get_all_asset_keys())
    for view in PIPELINE_VIEWS:
        assert len(graph.get(dg.AssetKey(sharded_asset_name(view))).partitions_def.get_partition_keys()) == 3 * len(
            CLIP_SECONDS)
        assert graph.get(dg.AssetKey(table_asset_name(view))).partitions_def.get_partition_keys() == [
            str(c) for c in CLIP_SECONDS]
        assert graph.get(dg.AssetKey(table_asset_name(view))).parent_keys == {dg.AssetKey(sharded_asset_name(view))}
        assert graph.get(dg.AssetKey(table_models_name(view))).parent_keys == {dg.AssetKey(table_asset_name(view))}
    assert defs.resources["objects"].url == "s3://bucket/gtzan" and "objects" not in build_defs(settings=base).resources
    assert graph.asset_check_keys == default.asset_check_keys
    dg.Definitions.validate_loadable(defs)


def test_an_object_store_url_that_is_not_s3_is_refused(tmp_path):
    with pytest.raises(ParameterError, match="resources.objects.config.url"):
        ObjectStoreResource(url="http://example.com/x").location(store_root=tmp_path)
    assert ObjectStoreResource().location(store_root=tmp_path) == str(tmp_path / "objects")
    assert ObjectStoreResource(url="s3://bucket/p/").location(store_root=tmp_path) == "s3://bucket/p"


def test_a_shard_published_to_s3_through_dagster(sharded, s3_env, monkeypatch, tmp_path):
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    url = f"{s3_env['GTZAN_STORE_URL']}/{uuid.uuid4().hex}"
    res = {**sharded, "objects": ObjectStoreResource(url=url)}
    asset = sharded_asset(VIEW, shards=SHARDS)
    result = dg.materialize([asset], resources=res, partition_key=key(1))
    meta = materialization(result).metadata
    assert meta["committed"].value is True and meta["rows"].value > 0
    assert meta["table"].value.startswith(url + "/")
    assert not (tmp_path / "data" / "store" / "objects").exists()  # nothing went to the local folder
    table = table_of(res)
    rows = table.scan().collect()
    assert rows.height == meta["rows"].value and set(rows["object_key"]) == {meta["object_key"].value}
    storage = res["objects"].storage(store_root=res["features"].root)
    assert storage.head(meta["object_key"].value).size > 0
    # the same rows as the local folder's build of that shard
    local = publish_partition(view=VIEW, clip_seconds=int(CLIP), shard=1, shards=SHARDS, run_id="local-run",
                              audio=sharded["audio"], features=sharded["features"], objects=sharded["objects"])
    assert local.rows_digest == meta["rows_digest"].value
    # the table version on S3, through its asset: the data version of the local folder's
    seen = dg.materialize([asset, table_asset(VIEW, shards=asset)], selection=[table_asset_name(VIEW)],
                          partition_key=CLIP, resources=res)
    (event,) = seen.asset_materializations_for_node(table_asset_name(VIEW))
    assert event.metadata["table"].value == meta["table"].value and event.metadata["rows"].value == rows.height
    here = observe_table(view=VIEW, clip_seconds=int(CLIP), features=sharded["features"], objects=sharded["objects"])
    assert event.tags["dagster/data_version"] == here.data_version().value
    assert event.metadata["rows_digest"].value == here.rows_digest


def test_a_run_of_a_persistent_instance_refuses_a_bucket_outside_the_store_url(tmp_path, monkeypatch):
    """What a UI launch with ``resources.objects.config.url`` elsewhere meets: no step runs."""
    monkeypatch.setenv("GTZAN_STORE_URL", "s3://gtzan/store")
    ran = []

    @dg.asset
    def where(objects: ObjectStoreResource) -> str:
        ran.append(objects.url)
        return objects.url

    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "home")) as instance:

        def run(url: str) -> dg.ExecuteInProcessResult:
            return dg.materialize([where], instance=instance, resources={"objects": ObjectStoreResource(url=url)})

        for url in ("s3://gtzan/store", "s3://gtzan/store/sub", ""):
            assert run(url).success
        for url in ("s3://other/store", "s3://gtzan/store-elsewhere"):
            with pytest.raises(dg.DagsterResourceFunctionError) as failed:
                run(url)
            assert isinstance(failed.value.__cause__, ParameterError)
            assert str(failed.value.__cause__) == (f"resources.objects.config.url {url!r} is outside the "
                                                   "deployment's GTZAN_STORE_URL (s3://gtzan/store)")
        monkeypatch.delenv("GTZAN_STORE_URL")
        with pytest.raises(dg.DagsterResourceFunctionError):
            run("s3://gtzan/store")
    assert ran == ["s3://gtzan/store", "s3://gtzan/store/sub", ""]


def test_bad_configuration_fails_the_partition_with_one_line_and_no_retry(corpus, tmp_path):
    res = {**make_resources(corpus, tmp_path / "data", mode="bogus"), "objects": ObjectStoreResource()}
    result = dg.materialize([sharded_asset(VIEW, shards=SHARDS)], resources=res, partition_key=key(0),
                            raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.step_failure_data.user_failure_data
    assert error.description.startswith("ParameterError: ") and "\n" not in error.description
    assert "bogus" in error.description, error.description
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert not (tmp_path / "data" / "store" / "objects").exists()
