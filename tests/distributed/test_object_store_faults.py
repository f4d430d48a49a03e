"""``make test-distributed``: the sharded store on the cluster's S3 server, and its four faults.

One scenario (the module fixture), then one test per property it must show:

1. beside the cluster, a local build of the same corpus: ``gtzan ingest`` and ``gtzan features
   publish`` of every view of the graph into the local folder ``<store>/objects`` (it runs
   while the steps below do: the comparison waits for it);
2. ``deploy/cluster.py up --object-store --shards 4``: SeaweedFS on the control host, every host
   with GTZAN_STORE_URL and the AWS variables, so the sharded assets (``<view>_shards``) are
   registered; ingest through the GraphQL API;
3. two builds of one shard racing: a probe on each worker host builds it, waits for the other
   at a barrier, and commits (into a prefix of their own);
4. every (clip length, shard) partition of the sharded assets, one run each; during it a
   worker host is lost while it runs a shard step (its processes SIGKILLed, its namespace
   deleted), then SeaweedFS is stopped until a step has failed and started again; the runs
   that failed are re-executed from their failure;
5. a shard writer (a probe publishing one shard, its host's uploads slowed by ``tc``) SIGKILLed
   while its put is in flight, and the same probe left to finish, each into a prefix of its own;
6. every table read back from S3 (rows, and the sha256 of every array), ``down``, and the same
   from the local build.

A lost host's step is redelivered by the surviving worker once the visibility timeout has
passed (see test_cluster.py); shard steps take seconds, so it is short here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "deploy"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cluster as cl  # noqa: E402
import shard_probes as sp  # noqa: E402
from graph import Graph, celery_hosts, materialize_sharded  # noqa: E402
from hosts import S3_PORT  # noqa: E402
from test_cluster import leftovers  # noqa: E402

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(1800)]

SHARDS = 4
VIEWS = ["mel", "timbre"]
WORKERS = ["worker-1", "worker-2"]
VISIBILITY_TIMEOUT = 60
#: The shard the racing probes build, and the one the killed and the finishing writer publish.
RACE, KILLED = {"view": "mel", "clip": 30, "shard": 1}, {"view": "mel", "clip": 30, "shard": 2}
#: Bytes of its put a killed writer has sent when it is killed; its host's upload rate then.
KILL_AFTER, SLOW_RATE = 256 << 10, "4mbit"
#: Seconds SeaweedFS stays down at most when no step has failed yet.
S3_DOWN_AT_MOST = 40.0


@dataclass
class Faults:
    """Called while the shard runs run: loses the worker host running a shard step once
    ``after_successes`` runs succeeded, then stops SeaweedFS until a step failed (or
    :data:`S3_DOWN_AT_MOST` passed) and starts it again."""

    cluster: cl.Cluster
    graph: Graph
    after_successes: int = 2
    host: str | None = None
    run_id: str | None = None
    step: str | None = None
    lost_at: float = 0.0
    s3_stopped: float | None = None
    s3_started: float | None = None
    failures_seen: list[dict] = field(default_factory=list)

    def __call__(self, run_ids: list[str]) -> None:
        if self.host is None:
            self.lose_mid_shard(run_ids)
        elif self.s3_stopped is None and time.time() - self.lost_at > 5:
            cl.stop_object_store(self.cluster)
            self.s3_stopped = time.time()
        elif self.s3_stopped is not None and self.s3_started is None:
            started = [r["runId"] for r in self.graph.runs(run_ids) if r["status"] in ("STARTED", "FAILURE")]
            self.failures_seen = sp.step_failures(self.graph, started)
            if self.failures_seen or time.time() - self.s3_stopped > S3_DOWN_AT_MOST:
                cl.restart_object_store(self.cluster)
                self.s3_started = time.time()

    def lose_mid_shard(self, run_ids: list[str]) -> None:
        runs = self.graph.runs(run_ids)
        if sum(r["status"] == "SUCCESS" for r in runs) < self.after_successes:
            return
        for r in runs:
            if r["status"] != "STARTED":
                continue
            events = self.graph.logs(r["runId"])
            for step, worker in reversed(celery_hosts(self.graph, r["runId"])):
                kinds = {e["__typename"] for e in events if e.get("stepKey") == step}
                if "ExecutionStepStartEvent" in kinds and not kinds & {"ExecutionStepSuccessEvent",
                                                                       "ExecutionStepFailureEvent"}:
                    self.host, self.run_id, self.step, self.lost_at = worker, r["runId"], step, time.time()
                    cl.lose_host(self.cluster, worker)
                    return


@dataclass
class Scenario:
    race: list[dict]
    race_table: dict
    race_objects: list[str]
    faults: Faults
    runs: dict[str, str]  # partition key -> run id
    reexecuted: dict[str, str]  # failed run id -> its re-execution's id
    statuses: dict[str, str]  # run id -> status
    handovers: dict[str, list[tuple[str, str]]]
    failures: list[dict]
    killed: dict
    killed_objects: list[str]
    killed_table: dict
    control: dict
    control_objects: list[str]
    control_table: dict
    cluster_tables: dict
    local_tables: dict
    wall: dict[str, float]
    left: dict[str, list] = field(default_factory=dict)


def local_build(base: Path) -> subprocess.Popen:
    """``gtzan ingest`` and ``gtzan features publish`` of every view into a local folder, alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GTZAN_", "AWS_", "DAGSTER_"))}
    env.update(GTZAN_DATA_DIR=str(base / "data"), GTZAN_WORKERS="1", TMPDIR=str(base / "tmp"), TF_CPP_MIN_LOG_LEVEL="2")
    (base / "tmp").mkdir(parents=True)
    gtzan = str(Path(sys.executable).parent / "gtzan")
    script = " && ".join([f"{gtzan} ingest"] + [f"{gtzan} features publish --view {v} --shards {SHARDS}"
                                                for v in VIEWS])
    log = open(base / "build.log", "wb")  # noqa: SIM115 - closed with the process below
    return subprocess.Popen(["bash", "-c", script], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def tables(storage) -> dict:
    from feature_store.params import CLIP_SECONDS

    return {(v, c): sp.table_digest(storage, v, c) for v in VIEWS for c in CLIP_SECONDS}


def s3(cluster: cl.Cluster, prefix: str = ""):
    from feature_store.engine.storage import open_storage

    env = cluster.s3_env()
    return open_storage(env["GTZAN_STORE_URL"] + (f"/{prefix}" if prefix else ""), environ=env)


def race(cluster: cl.Cluster) -> tuple[list[dict], dict, list[str]]:
    """Two probes, one per worker host, build the same shard and commit it at the same moment."""
    name = f"race-{uuid.uuid4().hex[:8]}"
    barrier = cluster.shared / "tmp" / name
    barrier.mkdir()
    shutil.chown(barrier, cl.SERVICE_USER, cl.SERVICE_USER)
    url = f"{cluster.s3_env()['GTZAN_STORE_URL']}/probes/{name}"
    procs = [sp.start(cluster, host, "race", {**RACE, "shards": SHARDS, "url": url, "task_id": f"{name}.{host}",
                                              "barrier": str(barrier), "peers": len(WORKERS)})
             for host in WORKERS]
    answers = [sp.answer(p) for p in procs]
    storage = s3(cluster, f"probes/{name}")
    return answers, sp.table_digest(storage, RACE["view"], RACE["clip"]), [o.key for o in storage.list("")]


def kill_mid_upload(cluster: cl.Cluster, host: str) -> dict:
    """A probe publishing a shard, its host's uploads slowed, SIGKILLed once its put is in flight."""
    name = f"killed-{uuid.uuid4().hex[:8]}"
    url = f"{cluster.s3_env()['GTZAN_STORE_URL']}/probes/{name}"
    out = {"prefix": f"probes/{name}", "killed": False, "sent": 0}
    with sp.limited(cluster, host, SLOW_RATE):
        p = sp.start(cluster, host, "publish", {**KILLED, "shards": SHARDS, "url": url, "task_id": name})
        try:
            deadline = time.monotonic() + 300
            while p.poll() is None and time.monotonic() < deadline:
                out["sent"] = sp.bytes_sent(cluster, host, p.pid, S3_PORT)
                if out["sent"] > KILL_AFTER:
                    os.killpg(p.pid, 9)
                    out["killed"] = True
                    break
                time.sleep(0.05)
        finally:
            sp.stop(p)
    out["exit"] = p.returncode
    out["stderr"] = p.stderr.read()[-2000:] if p.stderr else ""
    time.sleep(2)  # what the server does with a request cut short is done by now
    return out


def publish_on(cluster: cl.Cluster, host: str) -> dict:
    """The killed writer's probe, left to finish, into a prefix of its own."""
    name = f"control-{uuid.uuid4().hex[:8]}"
    url = f"{cluster.s3_env()['GTZAN_STORE_URL']}/probes/{name}"
    p = sp.start(cluster, host, "publish", {**KILLED, "shards": SHARDS, "url": url, "task_id": name})
    return {"prefix": f"probes/{name}", **sp.answer(p)}


def writers(cluster: cl.Cluster, host: str, wall: dict) -> tuple[dict, dict, dict]:
    """A shard writer killed mid-upload and the same writer left to finish, on ``host``: what
    each answered, and the objects and table each left in its prefix."""
    t0 = time.monotonic()
    killed = kill_mid_upload(cluster, host)
    wall["a writer killed mid-upload"] = time.monotonic() - t0
    t1 = time.monotonic()
    control = publish_on(cluster, host)
    wall["the same writer left to finish"] = time.monotonic() - t1
    left = {}
    for key, out in (("killed", killed), ("control", control)):
        storage = s3(cluster, out["prefix"])
        left[key] = ([o.key for o in storage.list("")], sp.table_digest(storage, KILLED["view"], KILLED["clip"]))
    return killed, control, left


def run_shards(cluster: cl.Cluster, graph: Graph, wall: dict) -> tuple[Faults, dict, dict, dict]:
    """Every partition of the sharded assets with the faults, then the failed runs re-executed."""
    faults = Faults(cluster, graph)
    t0 = time.monotonic()
    out = materialize_sharded(graph, views=VIEWS, shards=SHARDS, timeout=900, on_poll=faults)
    wall["shard runs, a host lost and SeaweedFS restarted"] = time.monotonic() - t0
    if faults.s3_stopped is not None and faults.s3_started is None:  # the runs ended while it was down
        cl.restart_object_store(cluster)
        faults.s3_started = time.time()
    t1 = time.monotonic()
    failed = [out.ids[k] for k, s in out.statuses.items() if s != "SUCCESS"]
    reexecuted = {run_id: graph.reexecute(run_id, strategy="FROM_FAILURE") for run_id in failed}
    statuses = {out.ids[k]: s for k, s in out.statuses.items()}
    statuses.update(graph.wait(reexecuted.values(), timeout=600))
    wall["re-executions of the failed runs"] = time.monotonic() - t1
    return faults, out.ids, reexecuted, statuses


@pytest.fixture(scope="module")
def scenario():
    from feature_store.engine.storage import open_storage

    base = Path(tempfile.mkdtemp(prefix="gtzan-faults-"))
    os.chmod(base, 0o755)
    shared, wall = base / "cluster", {}
    t0 = time.monotonic()
    ref = local_build(base / "local")
    cluster, done = None, False
    try:
        cluster = cl.up(shared, workers=len(WORKERS), visibility_timeout=VISIBILITY_TIMEOUT, object_store=True,
                        shards=SHARDS)
        wall["cluster up"] = time.monotonic() - t0
        graph = cluster.graph()
        graph.stop_sensors()
        t1 = time.monotonic()
        assert set(graph.wait([graph.launch("ingest_job")], timeout=600).values()) == {"SUCCESS"}, "ingest failed"
        wall["ingest"] = time.monotonic() - t1
        t2 = time.monotonic()
        race_answers, race_table, race_objects = race(cluster)
        wall["two racing builds of a shard"] = time.monotonic() - t2
        faults, runs, reexecuted, statuses = run_shards(cluster, graph, wall)
        handovers = {i: celery_hosts(graph, i) for i in [*runs.values(), *reexecuted.values()]}
        failures = sp.step_failures(graph, [*runs.values(), *reexecuted.values()])
        killed, control, probes = writers(cluster, next(w for w in WORKERS if w != faults.host), wall)
        t5 = time.monotonic()
        cluster_tables = tables(s3(cluster))
        wall["every table read back from S3"] = time.monotonic() - t5
        cl.down(shared, log=lambda _m: None)
        t6 = time.monotonic()
        assert ref.wait(timeout=900) == 0, (base / "local" / "build.log").read_text()[-4000:]
        wall["waiting for the local build"] = time.monotonic() - t6
        local_tables = tables(open_storage(base / "local" / "data" / "store" / "objects"))
        done = True
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(ref.pid, 9)
        ref.wait()
        state = cl.Cluster.load(shared) if (shared / cl.STATE).exists() else None
        if state is not None:
            cl.down(shared, log=lambda _m: None)
        if not done:
            shutil.rmtree(base, ignore_errors=True)
    left = leftovers(state or cluster)
    result = Scenario(race=race_answers, race_table=race_table, race_objects=race_objects, faults=faults, runs=runs,
                      reexecuted=reexecuted, statuses=statuses, handovers=handovers, failures=failures,
                      killed=killed, killed_objects=probes["killed"][0], killed_table=probes["killed"][1],
                      control=control, control_objects=probes["control"][0], control_table=probes["control"][1],
                      cluster_tables=cluster_tables, local_tables=local_tables, wall=wall, left=left)
    try:
        yield result
    finally:
        shutil.rmtree(base, ignore_errors=True)
        print("\nwall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in wall.items()))
        f = faults
        print(f"lost {f.host} during {f.step} of run {f.run_id}; SeaweedFS down "
              f"{(f.s3_started or 0) - (f.s3_stopped or 0):.0f} s, {len(f.failures_seen)} step failures seen meanwhile; "
              f"{len(reexecuted)} runs re-executed; the killed writer had sent {killed['sent']} bytes")


# ---------------------------------------------------------------------------------------
def test_the_whole_sharded_graph_on_s3_is_bit_identical_to_a_local_build(scenario):
    from feature_store.params import CLIP_SECONDS

    assert set(scenario.cluster_tables) == {(v, c) for v in VIEWS for c in CLIP_SECONDS}
    for key, remote in scenario.cluster_tables.items():
        local = scenario.local_tables[key]
        assert remote["exists"] and local["exists"], key
        a, b = remote["rows"], local["rows"]
        assert a.height > 0 and a.schema == b.schema, (key, a.schema, b.schema)
        assert [c for c in a.columns if not a[c].equals(b[c])] == [], key
        assert remote["arrays"] and remote["arrays"] == local["arrays"], key  # dtype, shape, sha256 of the bytes


def test_every_clip_is_in_its_table_once_and_every_shard_was_built(scenario):
    for key, table in scenario.cluster_tables.items():
        assert len(set(table["clip_ids"])) == len(table["clip_ids"]), key
        assert set(table["shards"]) == set(range(SHARDS)), key


def test_a_worker_host_lost_mid_shard_reruns_the_shard_on_the_other_host_with_no_duplicate_rows(scenario):
    f = scenario.faults
    assert f.host in WORKERS and f.step in {f"{v}_shards" for v in VIEWS}, "no host was lost during a shard step"
    survivor = next(w for w in WORKERS if w != f.host)
    run = f.run_id if f.run_id not in scenario.reexecuted else scenario.reexecuted[f.run_id]
    assert scenario.statuses[run] == "SUCCESS"
    handed = [w for step, w in scenario.handovers[f.run_id] if step == f.step]
    if f.run_id in scenario.reexecuted:  # its run failed later (SeaweedFS was down): the re-execution ran it
        handed += [w for step, w in scenario.handovers[run] if step == f.step]
    assert handed[0] == f.host and set(handed[1:]) == {survivor}, handed
    key = next(k for k, r in scenario.runs.items() if r == f.run_id)
    clip, shard = (int(x) for x in key.split("|"))
    table = scenario.cluster_tables[(f.step.removesuffix("_shards"), clip)]
    mine = [c for c, s in zip(table["clip_ids"], table["shards"], strict=True) if s == shard]
    assert mine and len(mine) == len(set(mine))


def test_two_builds_of_the_same_shard_racing_commit_it_once(scenario):
    committed = [a for a in scenario.race if a["committed"]]
    assert len(scenario.race) == 2 and len(committed) == 1, scenario.race
    loser = next(a for a in scenario.race if not a["committed"])
    assert "\n" not in loser.get("error", "") and "\n" not in loser.get("note", "")
    table = scenario.race_table
    assert table["exists"] and len(table["clip_ids"]) == len(set(table["clip_ids"])) > 0
    assert set(table["shards"]) == {RACE["shard"]}
    # the loser's object was deleted: only the winner's is left
    assert [k for k in scenario.race_objects if k.endswith(".h5")] == [committed[0]["object_key"]]


def test_a_shard_writer_killed_mid_upload_leaves_no_object_and_no_commit(scenario):
    killed = scenario.killed
    assert killed["killed"] and killed["sent"] > KILL_AFTER, killed
    assert killed["exit"] == -9, killed
    assert scenario.killed_objects == []  # no object, whole or partial, under its prefix
    assert scenario.killed_table == {"exists": False}
    # the same writer, left to finish, leaves its object and its commit: the checks above can fail
    control = scenario.control
    assert control["committed"] and control["rows"] > 0
    assert [k for k in scenario.control_objects if k.endswith(".h5")] == [control["object_key"]]
    assert scenario.control_table["exists"] and len(scenario.control_table["clip_ids"]) == control["rows"]


def test_steps_fail_in_one_line_while_seaweedfs_restarts_and_succeed_on_retry(scenario):
    f = scenario.faults
    assert f.s3_stopped is not None and f.s3_started is not None and f.s3_started > f.s3_stopped
    during = [e for e in scenario.failures if e["step"].endswith("_shards")]
    assert f.failures_seen and during, "no step failed while SeaweedFS was down"
    for e in during:
        assert e["class"] == "Failure", e  # the step's own one-line error, not an exception's traceback
        message = e["message"].strip().split(": ", 1)[-1]  # "dagster...Failure: StoreError: s3://..."
        assert message.startswith("StoreError: ") and "\n" not in message, e
        assert "s3://gtzan/store" in message, e
    # every run ended well: by the retry policy within the run, or re-executed from its failure
    for key, run_id in scenario.runs.items():
        final = scenario.reexecuted.get(run_id, run_id)
        assert scenario.statuses[final] == "SUCCESS", key


def test_teardown_leaves_nothing_behind(scenario):
    assert scenario.left == {"processes": [], "seaweedfs sockets": [], "process groups": [], "namespaces": [],
                             "links": []}
