"""End to end: dagster-webserver serves the code location; a features partition runs through it.

The server runs in its own process group with SIGTERM and SIGINT at their defaults, and is
stopped through that group's id (never by name). Its instance uses the project's
``dagster.yaml`` plus the immediate run coordinator, because no daemon runs beside a bare
webserver to dequeue runs.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from pipelines.definitions import build_defs

WEBSERVER = Path(sys.executable).with_name("dagster-webserver")

ASSET_GRAPH = """
{ assetNodes { assetKey { path } groupName kinds isPartitioned
               dependencyKeys { path } partitionKeys } }
"""
LOCATIONS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on RepositoryLocation { repositories { name } }
                        ... on PythonError { message } } } } } }
"""
LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } ... on InvalidSubsetError { message } } }
"""
STATUS = "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status tags { key value } } } }"

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _default_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _gql(url: str, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            out = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"HTTP {exc.code} for {query.split()[0:3]}: {exc.read()[:2000]!r}") from exc
    assert "errors" not in out, out
    return out["data"]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    pgid = os.getpgid(proc.pid)
    os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.mark.timeout(300)
def test_webserver_graph_and_features_run(tiny_corpus, tmp_path):
    data = tmp_path / "data"
    home = tmp_path / "home"
    home.mkdir()
    config = (REPO / "dagster.yaml").read_text()
    config += "\nrun_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
    (home / "dagster.yaml").write_text(config)
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

    port = _free_port()
    url = f"http://127.0.0.1:{port}/graphql"
    log = open(tmp_path / "webserver.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(WEBSERVER), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_default_signals,
    )
    try:
        deadline = time.monotonic() + 120
        location = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "webserver.log").read_text()
            try:
                entries = _gql(url, LOCATIONS, timeout=5)["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["loadStatus"] == "LOADED":
                    location = entries[0]
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        assert location is not None, "the webserver did not answer in 120 s"
        assert location["locationOrLoadError"]["__typename"] == "RepositoryLocation", location
        repo_name = location["locationOrLoadError"]["repositories"][0]["name"]

        nodes = {tuple(n["assetKey"]["path"]): n for n in _gql(url, ASSET_GRAPH)["assetNodes"]}
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
        launched = _gql(url, LAUNCH, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        status = None
        while time.monotonic() < deadline + 120:
            run = _gql(url, STATUS, {"id": run_id})["runOrError"]
            status = run["status"]
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                break
            time.sleep(1)
        assert status == "SUCCESS", (tmp_path / "webserver.log").read_text()[-3000:]
        assert {t["key"]: t["value"] for t in run["tags"]}["dagster/partition"] == "1"
        store = res["features"].store()
        assert (store.generation(1) / "mel.h5").is_file()
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert instance.get_materialized_partitions(dg.AssetKey("mel_features")) == {"1"}
    finally:
        _stop(proc)
        log.close()
    assert proc.returncode is not None
    # no warning while loading the code location or running the partition
    warnings = [ln for ln in (tmp_path / "webserver.log").read_text().splitlines() if "Warning" in ln]
    assert warnings == [], warnings
    shutil.rmtree(home, ignore_errors=True)
