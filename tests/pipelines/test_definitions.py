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
from assets.views import asset_kinds, asset_name, check_name
from feature_store.views import VIEWS
from pipelines.definitions import build_defs, defs

#: Every asset: the fixed ones, and one per view of the registry (named after the view).
ASSETS = {
    "audio_catalog": ("ingest", {"parquet", "polars"}),
    "song_splits": ("ingest", {"parquet", "polars"}),
    **{asset_name(name): ("features", asset_kinds(cls)) for name, cls in VIEWS.items()},
    "genre_models": ("training", {"tensorflow", "keras", "scikitlearn"}),
    "probe_models": ("training", {"scikitlearn", "numpy"}),
    "evaluation_report": ("reports", {"markdown", "matplotlib"}),
}
#: The assets `make run` leaves empty: the opt-in views' and the probes on the embeddings.
OPT_IN_ASSETS = {asset_name(name) for name, cls in VIEWS.items() if cls.opt_in} | {"probe_models"}


def test_the_built_in_views_keep_their_asset_and_check_names():
    assert [asset_kinds(VIEWS[v]) for v in ("mel", "embeddings", "timbre")] == [
        {"hdf5", "parquet"}, {"hdf5", "parquet", "tensorflow"}, {"hdf5", "parquet"}]
    assert [(asset_name(v), check_name(v)) for v in ("mel", "embeddings", "timbre")] == [
        ("mel_features", "features_sane"), ("musicnn_embeddings", "embeddings_sane"),
        ("timbre_features", "timbre_sane")]
    assert (asset_name("chroma"), check_name("chroma")) == ("chroma_features", "chroma_sane")

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
        **{check_name(name): True for name in VIEWS},
        "model_above_chance": False,
        "probe_above_chance": False,
        "models_current": False,
    }


def test_checks_on_partitioned_assets_are_partitioned_like_them():
    graph = defs.resolve_asset_graph()
    for check_key in graph.asset_check_keys:
        if check_key.name == "models_current":  # one verdict over every trained cell
            continue
        check, asset = graph.get(check_key), graph.get(check_key.asset_key)
        assert check.partitions_def == asset.partitions_def, check_key.name


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
    # opt-in (GTZAN_AUTOMATE_OPT_IN unset): automation never builds the musicnn embeddings or the probes
    assert conditions["musicnn_embeddings"] is None and conditions["probe_models"] is None
    sensors = {s.name: s.default_status for s in defs.sensors}
    assert sensors == {
        "audio_folder_sensor": dg.DefaultSensorStatus.RUNNING,
        "automation": dg.DefaultSensorStatus.RUNNING,
        "automation_mel": dg.DefaultSensorStatus.RUNNING,
        "automation_timbre": dg.DefaultSensorStatus.RUNNING,
        "automation_embeddings": dg.DefaultSensorStatus.RUNNING,
    }
    # automation runs are named __ASSET_JOB by Dagster: their tags say what they are
    tags = {s.name: s.run_tags for s in defs.sensors if s.name.startswith("automation")}
    assert tags["automation_mel"] == {"gtzan/trigger": "automation", "gtzan/view": "mel"}
    assert tags["automation"] == {"gtzan/trigger": "automation"}
    # every asset and check is evaluated by exactly one automation sensor
    graph = defs.resolve_asset_graph()
    targets = [s.asset_selection.resolve(graph) for s in defs.sensors if s.name.startswith("automation")]
    assert sum(len(t) for t in targets) == len(set().union(*targets)) == len(graph.get_all_asset_keys())


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
        # automation runs through the `automation` sensor, which the daemon evaluates
        assert instance.auto_materialize_enabled and instance.auto_materialize_use_sensors


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


def _planned() -> tuple[set[str], set[str]]:
    """The assets and the genre_models partitions that `make run` (no options) materializes."""
    from pipelines.run import plan_runs
    from pipelines.settings import Settings

    graph = defs.resolve_asset_graph()
    assets, cells = set(), set()
    for p in plan_runs(Settings()):
        job = defs.resolve_job_def(p.job)
        assets |= {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
        if p.job == "training_job":
            cells.add(p.partition)
    assert cells <= set(graph.get(dg.AssetKey("genre_models")).partitions_def.get_partition_keys())
    return assets, cells


def test_opt_in_assets_say_so_first_in_their_descriptions():
    """What `make run` leaves empty says so at the head of its description, and how to fill it."""
    from pipelines.run import plan_runs
    from pipelines.settings import DEFAULT_MODELS, Settings

    graph = defs.resolve_asset_graph()
    planned, cells = _planned()
    assert OPT_IN_ASSETS == {"musicnn_embeddings", "probe_models"} | {
        asset_name(n) for n, c in VIEWS.items() if c.opt_in}
    assert planned == set(ASSETS) - OPT_IN_ASSETS
    for name in ASSETS:
        description = graph.get(dg.AssetKey(name)).description
        if name in planned and name != "genre_models":
            assert "Opt-in" not in description, name
        elif name not in planned:
            assert description.startswith("Opt-in: not materialized by make run, nor by automation"), name
            assert 'make run RUN_ARGS="--with-embeddings"' in description, name
            assert "GTZAN_AUTOMATE_OPT_IN=1" in description, name
    # and that flag does plan them
    with_flag = {p.job for p in plan_runs(Settings(), with_embeddings=True)}
    assert "embeddings_job" in with_flag
    # genre_models: the partitions `make run` does not train are named, with the option that trains them
    models = graph.get(dg.AssetKey("genre_models")).description
    first = models.split("\n\n")[0]
    assert first.startswith("Opt-in partitions:")
    assert "*" not in first and "`" not in first  # plain text: the asset list shows it as written
    left = [m for m in PIPELINE_MODELS if not any(c.endswith(f"|{m}") for c in cells)]
    assert left == ["seed_cnn", "seed_rnn", "crnn"] and set(left).isdisjoint(DEFAULT_MODELS)
    named = first.split("the partitions of ", 1)[1].split(" (", 1)[0]
    assert named == ", ".join(left)
    trained = first.split("make run trains ", 1)[1].split(";", 1)[0].split(", ")
    assert set(trained) == set(DEFAULT_MODELS)
    assert 'make run RUN_ARGS="--models all"' in first
    every = {p.partition for p in plan_runs(Settings(models=PIPELINE_MODELS)) if p.job == "training_job"}
    assert every == set(graph.get(dg.AssetKey("genre_models")).partitions_def.get_partition_keys())
    # the example partition in the note is a real key
    example = first.rsplit("(e.g. ", 1)[1].split(")", 1)[0]
    assert example in every and example.endswith(f"|{left[0]}")
    # the assets' own objects keep their descriptions: the notes belong to the code location
    import assets

    assert not assets.musicnn_embeddings.descriptions_by_key[dg.AssetKey("musicnn_embeddings")].startswith("Opt-in")


def test_genre_models_description_names_partition_keys_as_they_appear():
    graph = defs.resolve_asset_graph()
    node = graph.get(dg.AssetKey("genre_models"))
    keys = set(node.partitions_def.get_partition_keys())
    # Dagster joins the dimensions' keys with "|" in the order of the dimension names
    dims = [d.name for d in node.partitions_def.partitions_defs]
    assert "|".join(dims) == "clip|model" and "5|cnn" in keys
    quoted = [s for s in node.description.split("`")[1::2] if "|" in s]
    assert "clip|model" in quoted and "5|cnn" in quoted
    assert all(q == "clip|model" or q in keys for q in quoted), quoted


def test_sizes_are_said_in_words_beside_their_byte_counts():
    from assets.metadata import human_size, with_sizes

    assert [human_size(n) for n in (812, 4_200, 13_100_000, 2_050_000_000)] == ["812 B", "4.2 kB", "13.1 MB",
                                                                                  "2.05 GB"]
    md = with_sizes({"bytes": 4_200, "hdf5_bytes": 13_100_000, "clips": 5})
    assert md["bytes"] == 4_200 and md["size"].value == "4.2 kB"
    assert md["hdf5_bytes"] == 13_100_000 and md["hdf5_size"].value == "13.1 MB"
    assert list(md) == ["bytes", "size", "hdf5_bytes", "hdf5_size", "clips"]


def test_a_solver_model_reports_iterations_not_epochs_under_the_cap(tiny_resources):
    """timbre_logreg (scikit-learn) runs solver iterations that the epoch cap does not bound: its metadata
    says so, rather than `epochs_run` 30 beside a report's "epoch cap 2"."""
    from assets.partitions import model_key

    d = build_defs(tiny_resources)
    assert d.resolve_job_def("ingest_job").execute_in_process().success
    assert d.resolve_job_def("features_job").execute_in_process(partition_key="1").success
    key = str(model_key(model="timbre_logreg", clip_seconds=1))
    result = d.resolve_job_def("training_job").execute_in_process(
        partition_key=key, run_config={"ops": {"genre_models": {"config": {"epochs": 2}}}})
    assert result.success
    md = {k: v.value for k, v in result.asset_materializations_for_node("genre_models")[0].metadata.items()}
    [row] = md["per_seed"].records
    assert "epochs_run" not in row.data and row.data["solver_iterations"] >= 1
    assert md["epoch_cap"].startswith("none") and md["model_size"].endswith("B")
