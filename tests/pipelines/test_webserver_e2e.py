"""End to end: dagster-webserver serves the code location; a features partition runs through it.

The server (the ``webserver`` fixture) runs in its own process group with SIGTERM and SIGINT
at their defaults, and is stopped through that group's id (never by name). Its instance uses
the project's ``dagster.yaml`` plus the immediate run coordinator, because no daemon runs
beside a bare webserver to dequeue runs.
"""

import os
import shutil

import dagster as dg
import pytest

from pipelines.definitions import build_defs

ASSET_GRAPH = """
{ assetNodes { assetKey { path } groupName kinds isPartitioned
               dependencyKeys { path } partitionKeys } }
"""
LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } ... on InvalidSubsetError { message } } }
"""


@pytest.mark.timeout(300)
def test_webserver_graph_and_features_run(tiny_corpus, tmp_path, dagster_home, webserver):
    data = tmp_path / "data"
    home = dagster_home
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "GTZAN_DIR": str(tiny_corpus),
        "GTZAN_DATA_DIR": str(data),
        "GTZAN_WORKERS": "1",
    }
    for var in ("GTZAN_STORE_DIR", "GTZAN_MODEL_DIR", "GTZAN_REPORT_DIR", "GTZAN_MODE", "GTZAN_LAYOUT"):
        env.pop(var, None)

    # ingest in this process, on the same folders the server's code location will use
    from assets import AudioSource, FeatureStoreResource, ModelStoreResource

    res = {
        "audio": AudioSource(path=str(tiny_corpus)),
        "features": FeatureStoreResource(root=str(data / "store"), workers=1),
        "models": ModelStoreResource(root=str(data / "models"), report_dir=str(data / "reports")),
    }
    assert build_defs(res).resolve_job_def("ingest_job").execute_in_process().success

    server = webserver(env)
    location = server.wait_loaded()
    assert location["locationOrLoadError"]["__typename"] == "RepositoryLocation", location
    repo_name = location["locationOrLoadError"]["repositories"][0]["name"]

    nodes = {tuple(n["assetKey"]["path"]): n for n in server.gql(ASSET_GRAPH)["assetNodes"]}
    assert set(nodes) == {
        ("audio_catalog",), ("song_splits",), ("mel_features",), ("musicnn_embeddings",), ("timbre_features",),
        ("genre_models",),
        ("probe_models",), ("evaluation_report",)
    }
    assert nodes[("mel_features",)]["partitionKeys"] == ["1", "5", "15", "30"]
    assert nodes[("mel_features",)]["groupName"] == "features"
    assert sorted(d["path"] for d in nodes[("genre_models",)]["dependencyKeys"]) == [["mel_features"],
                                                                                    ["timbre_features"]]
    assert nodes[("genre_models",)]["isPartitioned"]
    assert [d["path"] for d in nodes[("probe_models",)]["dependencyKeys"]] == [["musicnn_embeddings"]]
    assert nodes[("musicnn_embeddings",)]["partitionKeys"] == ["1", "5", "15", "30"]

    params = {
        "selector": {
            "repositoryLocationName": location["name"],
            "repositoryName": repo_name,
            "jobName": "features_job",
        },
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "1"}]},
    }
    launched = server.gql(LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run = server.wait_run(launched["run"]["runId"])
    assert run["status"] == "SUCCESS", server.log_text()[-3000:]
    assert {t["key"]: t["value"] for t in run["tags"]}["dagster/partition"] == "1"
    store = res["features"].store()
    assert (store.generation(1) / "mel.h5").is_file()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("mel_features")) == {"1"}
    server.stop()
    assert server.proc.returncode is not None
    # no warning while loading the code location or running the partition
    warnings = [ln for ln in server.log_text().splitlines() if "Warning" in ln]
    assert warnings == [], warnings
    shutil.rmtree(home, ignore_errors=True)
