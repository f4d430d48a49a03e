"""The code location: loads quickly and quietly, and its graph is what the README says."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from assets.partitions import PIPELINE_MODELS
from pipelines.definitions import build_defs, defs

ASSETS = {
    "audio_catalog": ("ingest", {"parquet", "polars"}),
    "song_splits": ("ingest", {"parquet", "polars"}),
    "mel_features": ("features", {"hdf5", "parquet"}),
    "timbre_features": ("features", {"hdf5", "parquet"}),
    "musicnn_embeddings": ("features", {"hdf5", "parquet", "tensorflow"}),
    "genre_models": ("training", {"tensorflow", "keras", "scikitlearn"}),
    "probe_models": ("training", {"scikitlearn", "numpy"}),
    "evaluation_report": ("reports", {"markdown", "matplotlib"}),
}

REPO = Path(__file__).resolve().parents[2]


HIDE_MUSICNN = (
    "import importlib.util\n"
    "real = importlib.util.find_spec\n"
    "importlib.util.find_spec = lambda name, *a: None if name == 'musicnn' else real(name, *a)\n"
)


@pytest.mark.parametrize("musicnn", ["installed", "missing"])
def test_loads_without_warnings_and_without_tensorflow(musicnn):
    """Also without the musicnn weights package: only the embedding step needs it."""
    code = (
        (HIDE_MUSICNN if musicnn == "missing" else "")
        + "import json, sys, warnings\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import pipelines.definitions as d\n"
        "    d.defs.get_repository_def().get_all_jobs()\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'matplotlib', 'h5py') if m in sys.modules]\n"
        "print(json.dumps({'warnings': [f'{w.category.__name__}: {w.message}' for w in caught], 'heavy': heavy}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"warnings": [], "heavy": []}, result


def test_groups_kinds_descriptions():
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == set(ASSETS)
    for name, (group, kinds) in ASSETS.items():
        spec = graph.get(dg.AssetKey(name))
        assert spec.group_name == group, name
        assert set(spec.kinds) == kinds, name
        assert len(spec.description or "") > 80, name
    dg.Definitions.validate_loadable(defs)


def test_partitions_and_mappings():
    graph = defs.resolve_asset_graph()
    features = graph.get(dg.AssetKey("mel_features")).partitions_def
    assert features.get_partition_keys() == ["1", "5", "15", "30"]
    models = graph.get(dg.AssetKey("genre_models")).partitions_def
    assert isinstance(models, dg.MultiPartitionsDefinition)
    assert {d.name for d in models.partitions_defs} == {"clip", "model"}
    assert len(models.get_partition_keys()) == 4 * len(PIPELINE_MODELS)
    mapping = graph.get_partition_mapping(dg.AssetKey("genre_models"), dg.AssetKey("mel_features"))
    assert isinstance(mapping, dg.MultiToSingleDimensionPartitionMapping)
    upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
        models.subset_with_partition_keys([dg.MultiPartitionKey({"clip": "5", "model": PIPELINE_MODELS[0]})]),
        models,
        features,
    ).partitions_subset
    assert set(upstream.get_partition_keys()) == {"5"}
    report_map = graph.get_partition_mapping(dg.AssetKey("evaluation_report"), dg.AssetKey("genre_models"))
    assert isinstance(report_map, dg.AllPartitionMapping)
    # embeddings share the clip partitions of the features; a probe reads the embeddings of its own clip
    assert graph.get(dg.AssetKey("musicnn_embeddings")).partitions_def == features
    assert graph.get(dg.AssetKey("musicnn_embeddings")).parent_keys == {dg.AssetKey("song_splits")}
    probes = graph.get(dg.AssetKey("probe_models"))
    assert probes.partitions_def == features and probes.parent_keys == {dg.AssetKey("musicnn_embeddings")}
    assert isinstance(graph.get_partition_mapping(probes.key, dg.AssetKey("musicnn_embeddings")),
                      dg.IdentityPartitionMapping)
    report = graph.get(dg.AssetKey("evaluation_report"))
    assert report.parent_keys == {dg.AssetKey("genre_models"), dg.AssetKey("probe_models")}
    assert isinstance(graph.get_partition_mapping(report.key, probes.key), dg.AllPartitionMapping)
    job = defs.resolve_job_def("embeddings_job")
    assert job.partitions_def == features
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {"musicnn_embeddings",
                                                                                    "probe_models"}


def test_checks_block_only_on_torn_or_leaking_data():
    blocking = {}
    for check in defs.asset_checks:
        for spec in check.check_specs:
            blocking[spec.name] = spec.blocking
    assert blocking == {
        "catalog_quarantine": False,
        "catalog_duplicates": False,
        "catalog_class_balance": False,
        "split_leakage": True,
        "features_sane": True,
        "timbre_sane": True,
        "embeddings_sane": True,
        "model_above_chance": False,
        "probe_above_chance": False,
    }


def test_training_pool_retries_executor_and_automation():
    models = defs.resolve_assets_def("genre_models")
    assert models.op.pool == "training"
    assert defs.resolve_assets_def("probe_models").op.pool == "training"
    for name in ASSETS:
        policy = defs.resolve_assets_def(name).op.retry_policy
        assert policy is not None and policy.max_retries == 2, name
    executor = defs.resolve_job_def("training_job").executor_def
    # Dagster's default executor: a subprocess per step unless a run asks for in_process (gtzan run does)
    assert executor.name == "multi_or_in_process_executor"
    assert executor.config_schema.as_field().default_value == {"multiprocess": {}}
    graph = defs.resolve_asset_graph()
    conditions = {k.to_user_string(): graph.get(k).automation_condition for k in graph.get_all_asset_keys()}
    assert conditions["audio_catalog"] is None  # started by the schedule or the sensor
    assert conditions["mel_features"].get_label() == "eager"
    assert "on_cron" in conditions["genre_models"].get_label()
    assert conditions["musicnn_embeddings"].get_label() == "eager"
    assert "on_cron" in conditions["probe_models"].get_label()
    sensors = {s.name: s.default_status for s in defs.sensors}
    assert sensors == {
        "audio_folder_sensor": dg.DefaultSensorStatus.RUNNING,
        "automation": dg.DefaultSensorStatus.RUNNING,
    }


def test_dagster_yaml_gives_the_training_pool_one_slot(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 1
        assert pools.pool_granularity.value == "op"
        assert instance.telemetry_enabled is False


def test_resources_from_environment(monkeypatch, tmp_path):
    from pipelines.resources import make_resources

    monkeypatch.chdir(tmp_path)
    for var in ("GTZAN_DIR", "GTZAN_STORE_DIR", "GTZAN_MODEL_DIR", "GTZAN_REPORT_DIR", "GTZAN_MODE", "GTZAN_WORKERS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GTZAN_DATA_DIR", "rel")
    monkeypatch.setenv("GTZAN_LAYOUT", "original")
    monkeypatch.setenv("GTZAN_WORKERS", "3")
    res = make_resources()
    assert res["audio"].path == "" and res["audio"].layout == "original"
    assert res["audio"].demo_dir == str((tmp_path / "rel" / "demo").resolve())
    assert res["features"].root == str((tmp_path / "rel" / "store").resolve()) and res["features"].workers == 3
    assert res["models"].root == str((tmp_path / "rel" / "models").resolve())
    assert res["models"].report_dir == str((tmp_path / "rel" / "reports").resolve())
    monkeypatch.setenv("GTZAN_DIR", str(tmp_path / "gtzan"))
    monkeypatch.setenv("GTZAN_MODE", "segments")
    res = make_resources()
    assert res["audio"].path == str(tmp_path / "gtzan") and res["features"].mode == "segments"
    from feature_store.errors import ParameterError

    monkeypatch.setenv("GTZAN_LAYOUT", "flat")
    with pytest.raises(ParameterError, match="GTZAN_LAYOUT must be one of"):
        make_resources()


def test_build_defs_takes_resources(tiny_resources):
    d = build_defs(tiny_resources)
    assert d.resources["features"].root == tiny_resources["features"].root
    assert os.path.isabs(defs.resources["features"].root)


def test_executor_is_chosen_by_the_environment(monkeypatch, tiny_resources):
    import importlib.util

    from feature_store.errors import ParameterError
    from pipelines.definitions import executor_def

    monkeypatch.delenv("GTZAN_EXECUTOR", raising=False)
    assert executor_def().name == "multi_or_in_process_executor"
    monkeypatch.setenv("GTZAN_EXECUTOR", "in_process")
    assert build_defs(tiny_resources).resolve_job_def("features_job").executor_def.name == "in_process"
    monkeypatch.setenv("GTZAN_EXECUTOR", "threads")
    with pytest.raises(ParameterError, match=r"GTZAN_EXECUTOR must be one of \['multiprocess', 'in_process', 'celery', 'k8s'\]"):
        executor_def()
    if importlib.util.find_spec("dagster_celery") is None:
        with pytest.raises(ParameterError, match="needs the dagster-celery package"):
            executor_def("celery")
    else:
        assert executor_def("celery").name == "celery"
