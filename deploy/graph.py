"""Launch, watch and re-execute runs through a dagster-webserver's GraphQL API (stdlib only).

:func:`materialize_default_graph` runs the same graph as ``make run`` (ingest, the features of
every clip length, every default model at every clip length, the report), one run per
partition, through whatever instance serves the UI: on the cluster, the daemon dequeues them
and the Celery workers run their steps.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

FINISHED = ("SUCCESS", "FAILURE", "CANCELED")

LOCATIONS = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on RepositoryLocation { repositories { name } }
  ... on PythonError { message } } } } } }"""
DAEMONS = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"
LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } ... on InvalidSubsetError { message } } }"""
REEXECUTE = """mutation($p: ReexecutionParams!) { launchRunReexecution(reexecutionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
RUNS = """query($ids: [String!]) { runsOrError(filter: {runIds: $ids}) { __typename
  ... on Runs { results { runId jobName status startTime endTime tags { key value } } } } }"""
RUN = """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { runId jobName status
  startTime endTime tags { key value } stepStats { stepKey status }
  assetMaterializations { stepKey partition assetKey { path }
    metadataEntries { label ... on TextMetadataEntry { text } ... on PathMetadataEntry { path }
      ... on FloatMetadataEntry { floatValue } } } } } }"""
SENSORS = """query($sel: RepositorySelector!) { sensorsOrError(repositorySelector: $sel) { __typename
  ... on Sensors { results { name jobOriginId sensorState { status selectorId } } } } }"""
STOP_SENSOR = """mutation($o: String!, $s: String!) { stopSensor(jobOriginId: $o, jobSelectorId: $s) { __typename
  ... on StopSensorMutationResult { instigationState { status } } ... on PythonError { message } } }"""
LOGS = """query($id: ID!, $cursor: String) { logsForRun(runId: $id, afterCursor: $cursor) { __typename
  ... on EventConnection { cursor hasMore events { __typename
    ... on MessageEvent { message stepKey timestamp }
    ... on EngineEvent { metadataEntries { label ... on TextMetadataEntry { text } } } } } } }"""


class GraphError(RuntimeError):
    """A GraphQL call failed or a run did not end as expected."""


@dataclass
class Graph:
    """A dagster-webserver at ``url`` (``http://host:port``), behind a proxy that asks for
    ``auth`` (user, password) with HTTP basic auth, or none."""

    url: str
    auth: tuple[str, str] | None = field(default=None, repr=False)
    _location: tuple[str, str] | None = field(default=None, repr=False)

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.auth is not None:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return headers

    def query(self, q: str, variables: dict | None = None, *, timeout: float = 60) -> dict:
        body = json.dumps({"query": q, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", data=body, headers=self.headers())
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                out = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise GraphError(f"HTTP {exc.code}: {exc.read()[:2000]!r}") from exc
        if out.get("errors"):
            raise GraphError(str(out["errors"])[:2000])
        return out["data"]

    # -- the code location and the daemon --------------------------------------------------
    def location(self) -> tuple[str, str]:
        """(location name, repository name) of the one code location."""
        if self._location is None:
            entries = self.query(LOCATIONS)["workspaceOrError"]["locationEntries"]
            loc = entries[0]["locationOrLoadError"]
            if loc is None or loc["__typename"] != "RepositoryLocation":
                raise GraphError(f"the code location did not load: {loc}")
            self._location = (entries[0]["name"], loc["repositories"][0]["name"])
        return self._location

    def location_loaded(self) -> bool:
        entries = self.query(LOCATIONS, timeout=5)["workspaceOrError"]["locationEntries"]
        if entries and entries[0]["loadStatus"] == "LOADED":
            self.location()
            return True
        return False

    def daemons_healthy(self) -> bool:
        statuses = self.query(DAEMONS, timeout=5)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return all(s["healthy"] for s in statuses if s["required"])

    def stop_sensors(self) -> list[str]:
        """Stop every running sensor of the code location; the names of those stopped."""
        location, repo = self.location()
        sel = {"repositoryLocationName": location, "repositoryName": repo}
        stopped = []
        for s in self.query(SENSORS, {"sel": sel})["sensorsOrError"]["results"]:
            if s["sensorState"]["status"] == "RUNNING":
                out = self.query(STOP_SENSOR, {"o": s["jobOriginId"], "s": s["sensorState"]["selectorId"]})
                if out["stopSensor"]["__typename"] != "StopSensorMutationResult":
                    raise GraphError(f"stopping sensor {s['name']} failed: {out}")
                stopped.append(s["name"])
        return stopped

    # -- runs ------------------------------------------------------------------------------
    def launch(self, job: str, *, partition: str | None = None, run_config: dict | None = None,
               tags: dict[str, str] | None = None, assets: list[str] | None = None,
               dimensions: tuple[str, str] = ("clip", "model")) -> str:
        """Launch ``job`` (for one ``partition``: ``"5"`` or ``"5|cnn"``); return the run id.

        ``assets``: the assets it materializes (their keys; the job ``__ASSET_JOB`` takes any);
        ``dimensions``: the names of a multi-partition key's two dimensions, in its order.
        """
        location, repo = self.location()
        all_tags = dict(tags or {})
        if partition is not None:
            all_tags["dagster/partition"] = partition
            if "|" in partition:  # a multi-partition key: its dimensions by name
                all_tags.update({f"dagster/partition/{d}": v
                                 for d, v in zip(dimensions, partition.split("|"), strict=True)})
        selector = {"repositoryLocationName": location, "repositoryName": repo, "jobName": job}
        if assets is not None:
            selector["assetSelection"] = [{"path": [a]} for a in assets]
        params = {
            "selector": selector,
            "runConfigData": run_config or {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in all_tags.items()]},
        }
        out = self.query(LAUNCH, {"p": params})["launchRun"]
        if out["__typename"] != "LaunchRunSuccess":
            raise GraphError(f"launching {job} [{partition}] failed: {out}")
        return out["run"]["runId"]

    def reexecute(self, run_id: str, *, strategy: str = "ALL_STEPS") -> str:
        """Re-execute run ``run_id`` (every step, or ``FROM_FAILURE``); return the new run's id."""
        out = self.query(REEXECUTE, {"p": {"parentRunId": run_id, "strategy": strategy}})["launchRunReexecution"]
        if out["__typename"] != "LaunchRunSuccess":
            raise GraphError(f"re-executing {run_id} failed: {out}")
        return out["run"]["runId"]

    def run(self, run_id: str) -> dict:
        out = self.query(RUN, {"id": run_id})["runOrError"]
        if out["__typename"] != "Run":
            raise GraphError(f"no run {run_id}: {out}")
        return out

    def runs(self, run_ids: Iterable[str] | None = None) -> list[dict]:
        """Every run the instance lists (or those of ``run_ids``)."""
        ids = None if run_ids is None else list(run_ids)
        return self.query(RUNS, {"ids": ids})["runsOrError"]["results"]

    def logs(self, run_id: str) -> list[dict]:
        events, cursor = [], None
        while True:
            out = self.query(LOGS, {"id": run_id, "cursor": cursor})["logsForRun"]
            events += out["events"]
            cursor = out["cursor"]
            if not out.get("hasMore"):
                return events

    def wait(self, run_ids: Iterable[str], *, timeout: float, poll: float = 1.0,
             on_poll: Callable[[], None] | None = None) -> dict[str, str]:
        """Wait until every run has finished; their statuses. GraphError on timeout."""
        pending, done = set(run_ids), {}
        deadline = time.monotonic() + timeout
        while pending:
            for r in self.runs(pending):
                if r["status"] in FINISHED:
                    done[r["runId"]] = r["status"]
                    pending.discard(r["runId"])
            if not pending:
                break
            if time.monotonic() > deadline:
                raise GraphError(f"runs {sorted(pending)} still not finished after {timeout:.0f} s")
            if on_poll is not None:
                on_poll()
            time.sleep(poll)
        return done


def celery_hosts(graph: Graph, run_id: str) -> list[tuple[str, str]]:
    """(step key, Celery worker name) of every step hand-over to a worker, in order."""
    out = []
    for e in graph.logs(run_id):
        # dagster-celery's "[CeleryExecutor] Executing steps <key> in celery worker", with the worker's name
        if e["__typename"] == "EngineEvent" and "Executing steps" in e["message"]:
            worker = {m["label"]: m.get("text") for m in e["metadataEntries"]}.get("Celery worker", "")
            out.append((e["stepKey"], worker.split("@")[0]))
    return out


@dataclass
class GraphRuns:
    """The runs of one pass over the graph, in launch order, and the report's path."""

    runs: list[tuple[str, str | None, str]]  # (job, partition, run id)
    report: str


def materialize_default_graph(
    graph: Graph,
    *,
    epochs: int | None = None,
    seeds: list[int] | None = None,
    clip_seconds: list[int] | None = None,
    models: list[str] | None = None,
    timeout: float = 1800,
    on_training_poll: Callable[[list[str]], None] | None = None,
    log: Callable[[str], None] = print,
) -> GraphRuns:
    """Launch ``make run``'s graph stage by stage; raise GraphError if a run does not succeed.

    The code location's sensors are stopped first: this launches every run itself, and the
    audio-folder and automation sensors would launch overlapping ones (start them again in
    the UI, Automation).

    ``on_training_poll`` is called with the training runs' ids while they run (the
    distributed test loses a worker host from it). ``epochs`` defaults to the settings' cap
    (:func:`pipelines.settings.default_epochs`).
    """
    from assets.partitions import model_key
    from pipelines.settings import DEFAULT_MODELS, default_epochs
    from feature_store.params import CLIP_SECONDS

    clips = [str(c) for c in (clip_seconds or CLIP_SECONDS)]
    names = list(models or DEFAULT_MODELS)
    epochs = default_epochs() if epochs is None else epochs
    train = {"ops": {"genre_models": {"config": {"epochs": epochs, "seeds": seeds or [0], "scheme": "seed"}}}}
    runs: list[tuple[str, str | None, str]] = []
    stopped = graph.stop_sensors()
    if stopped:
        log(f"  stopped the sensors {', '.join(stopped)} (this launches every run itself)")

    def stage(label: str, launches: list[tuple[str, str | None, dict | None]], on_poll=None) -> None:
        t0 = time.monotonic()
        ids = [graph.launch(job, partition=p, run_config=c) for job, p, c in launches]
        statuses = graph.wait(ids, timeout=timeout, on_poll=on_poll and (lambda: on_poll(ids)))
        bad = {i: s for i, s in statuses.items() if s != "SUCCESS"}
        if bad:
            raise GraphError(f"{label}: runs did not succeed: {bad}")
        runs.extend((job, p, i) for (job, p, _c), i in zip(launches, ids, strict=True))
        log(f"  ok  {label:<10} {len(ids):>2} runs {time.monotonic() - t0:6.1f} s")

    stage("ingest", [("ingest_job", None, None)])
    stage("features", [("features_job", c, None) for c in clips])
    stage("training", [("training_job", str(model_key(model=m, clip_seconds=c)), train) for c in clips for m in names],
          on_training_poll)
    stage("report", [("report_job", None, None)])
    mats = graph.run(runs[-1][2])["assetMaterializations"]
    report = next(m.get("path") for m in mats[0]["metadataEntries"] if m["label"] == "path")
    return GraphRuns(runs=runs, report=report)


@dataclass
class ShardRuns:
    """The runs of the sharded assets' partitions, by partition key (``"5|0003"``)."""

    ids: dict[str, str]
    statuses: dict[str, str]


def materialize_sharded(
    graph: Graph,
    *,
    views: list[str],
    shards: int,
    clip_seconds: list[int] | None = None,
    timeout: float = 1800,
    on_poll: Callable[[list[str]], None] | None = None,
) -> ShardRuns:
    """Launch one run per (clip length, shard) partition of the sharded assets of ``views``
    (``<view>_shards``, registered when the hosts have GTZAN_STORE_URL), all of them at once;
    wait for them. A run that failed is the caller's to re-execute
    (``Graph.reexecute(..., strategy="FROM_FAILURE")``).

    ``on_poll`` is called with the runs' ids while they run (the fault tests act from it).
    """
    from feature_store.params import CLIP_SECONDS

    clips = [str(c) for c in (clip_seconds or CLIP_SECONDS)]
    keys = [f"{c}|{s:04d}" for c in clips for s in range(shards)]
    assets = [f"{v}_shards" for v in views]
    ids = {key: graph.launch("__ASSET_JOB", partition=key, assets=assets, dimensions=("clip", "shard"))
           for key in keys}
    statuses = graph.wait(ids.values(), timeout=timeout, on_poll=on_poll and (lambda: on_poll(list(ids.values()))))
    return ShardRuns(ids=ids, statuses={key: statuses[run_id] for key, run_id in ids.items()})
