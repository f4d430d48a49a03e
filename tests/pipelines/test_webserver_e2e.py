"""End to end: dagster-webserver serves the code location; a features partition runs through it.

The server (the ``webserver`` fixture) runs in its own process group with SIGTERM and SIGINT
at their defaults, and is stopped through that group's id (never by name). Its instance uses
the project's ``deploy/dagster.yaml`` plus the immediate run coordinator, because no daemon runs
beside a bare webserver to dequeue runs.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from assets.partitions import PIPELINE_VIEWS
from assets.views import asset_name
from feature_store.views import VIEWS
from pipelines.definitions import build_defs

REPO = Path(__file__).resolve().parents[2]

ASSET_GRAPH = """
{ assetNodes { assetKey { path } groupName kinds isPartitioned
               dependencyKeys { path } partitionKeys jobNames } }
"""
RUN_JOB = "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { jobName } } }"
#: The job of each asset, besides Dagster's implicit __ASSET_JOB (pipelines/jobs.py).
#: Every view of the default run is in features_job; the opt-in musicnn embeddings have their own.
JOB_OF = {"audio_catalog": "ingest_job", "song_splits": "ingest_job",
          **{asset_name(n): "features_job" for n, cls in VIEWS.items() if not cls.opt_in},
          "musicnn_embeddings": "embeddings_job", "probe_models": "embeddings_job",
          "genre_models": "training_job", "evaluation_report": "report_job"}
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
    assert set(nodes) == {(name,) for name in JOB_OF} >= {("mel_features",), ("musicnn_embeddings",),
                                                          ("timbre_features",)}
    assert nodes[("mel_features",)]["partitionKeys"] == ["1", "5", "15", "30"]
    assert nodes[("mel_features",)]["groupName"] == "features"
    # each model cell depends on the view of its family: genre_models on every view they use
    assert sorted(d["path"] for d in nodes[("genre_models",)]["dependencyKeys"]) == sorted(
        [asset_name(v)] for v in PIPELINE_VIEWS)
    assert nodes[("genre_models",)]["isPartitioned"]
    assert [d["path"] for d in nodes[("probe_models",)]["dependencyKeys"]] == [["musicnn_embeddings"]]
    assert nodes[("musicnn_embeddings",)]["partitionKeys"] == ["1", "5", "15", "30"]

    # Which job a "Materialize" button launches: the UI (LaunchAssetExecutionButton's getCommonJob)
    # takes the job the page prefers (a job's own page), else the first of the asset's jobNames. Each
    # asset belongs to one of our jobs, but Dagster lists its implicit __ASSET_JOB first (the names
    # are sorted), so the global asset graph and the asset pages launch __ASSET_JOB (README).
    for path, node in nodes.items():
        assert node["jobNames"] == ["__ASSET_JOB", JOB_OF[path[0]]], (path, node["jobNames"])

    def materialize(job: str, asset: str) -> tuple[str, dict]:
        """What "Materialize" of one partition of ``asset`` sends, on a page that picks ``job``."""
        params = {
            "selector": {"repositoryLocationName": location["name"], "repositoryName": repo_name,
                         "pipelineName": job, "assetSelection": [{"path": [asset]}]},
            "runConfigData": "{}",
            "mode": "default",
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "1"}]},
        }
        launched = server.gql(LAUNCH, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        run = server.wait_run(run_id)
        assert run["status"] == "SUCCESS", server.log_text()[-3000:]
        return server.gql(RUN_JOB, {"id": run_id})["runOrError"]["jobName"], run

    # from the job's own page (Jobs, then features_job): the run is named after the job
    job_name, run = materialize("features_job", "mel_features")
    assert job_name == "features_job"
    assert {t["key"]: t["value"] for t in run["tags"]}["dagster/partition"] == "1"
    store = res["features"].store()
    assert (store.generation(1) / "mel.h5").is_file()
    # from the global asset graph or the asset's page: Dagster's implicit job
    assert materialize("__ASSET_JOB", "timbre_features")[0] == "__ASSET_JOB"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("mel_features")) == {"1"}
        assert instance.get_materialized_partitions(dg.AssetKey("timbre_features")) == {"1"}
        assert [r.job_name for r in instance.get_runs(dg.RunsFilter(job_name="features_job"))] == ["features_job"]
    server.stop()
    assert server.proc.returncode is not None
    # no warning while loading the code location or running the partition
    warnings = [ln for ln in server.log_text().splitlines() if "Warning" in ln]
    assert warnings == [], warnings
    shutil.rmtree(home, ignore_errors=True)


GTZAN = Path(sys.executable).with_name("gtzan")
#: What `dagster dev` logs when the folder it starts in holds a dagster.yaml that DAGSTER_HOME does not.
NOT_USED = "will not be used to configure Dagster"


@pytest.mark.timeout(300)
def test_gtzan_ui_starts_without_the_dagster_yaml_warning(tmp_path, webserver):
    """`gtzan ui` (as `make dev`) runs `dagster dev` in the project folder with a DAGSTER_HOME elsewhere:
    the project keeps its instance configuration in deploy/, so Dagster finds no dagster.yaml to warn about."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTZAN_")}
    env.update(DAGSTER_HOME=str(tmp_path / "home"), GTZAN_DATA_DIR=str(tmp_path / "data"))
    server = webserver(env, [str(GTZAN), "ui", "--port", "{port}"])
    location = server.wait_loaded()
    assert location["locationOrLoadError"]["__typename"] == "RepositoryLocation", location
    server.stop()
    log = server.log_text()
    assert "Launching Dagster services" in log, log  # dagster dev's own log lines are in the output
    assert NOT_USED not in log, log
    assert "telemetry" in (tmp_path / "home" / "dagster.yaml").read_text()  # the instance gtzan ui made


def test_make_dev_copies_the_instance_yaml_and_the_project_root_holds_none():
    out = subprocess.run(["make", "-n", "dev"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
                         env={**os.environ, "DAGSTER_HOME": "/tmp/gtzan-home"}).stdout
    assert "cp deploy/dagster.yaml /tmp/gtzan-home/dagster.yaml" in out
    assert re.search(r"dagster dev -w workspace.yaml", out)
    # dagster dev warns when the folder it starts in holds either, and DAGSTER_HOME is another folder
    assert not (REPO / "dagster.yaml").exists() and not (REPO / "dagster.yml").exists()
