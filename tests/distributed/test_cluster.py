"""``make test-distributed``: the whole default graph on a multi-host cluster, against ``make run``.

One scenario (the module fixture), then one test per property it must show:

1. ``make run`` on the demo corpus, outside the cluster, into a folder of its own (it runs
   while the steps below do: the comparison waits for it);
2. ``deploy/cluster.py up``: PostgreSQL, Redis, dagster-webserver and dagster-daemon on a
   control host, two Celery worker hosts, each host a network namespace;
3. the same graph through the webserver's GraphQL API with ``GTZAN_EXECUTOR=celery``, one
   run per partition; during a training step, the worker host running it is lost (its
   processes SIGKILLed, its namespace deleted);
4. one run of each job re-executed through GraphQL;
5. while the cluster still runs, what a local user who is not root can reach of it
   (:mod:`probes`: as ``nobody``), what its own credentials may do (the S3 server's too, from
   a worker host), and a run whose config points outside the deployment's folders (issue 17);
6. ``down``, and ``up --object-store`` again on the same folder: new passwords and S3 keys,
   the old ones refused, the runs still there, the S3 variables in the environment of the
   service user's processes (and still readable by no other user);
7. ``down``: every process group stopped, namespaces deleted, the files that held a password
   and SeaweedFS's sockets deleted, then the folder removed.

Losing a host: a Celery worker acknowledges a step only when it ends (``task_acks_late``),
so the lost host's step stays unacknowledged in Redis; once the visibility timeout has
passed, the surviving worker's periodic sweep puts it back in the queue and runs it, and
the run succeeds. The timeout here is 90 s, longer than any step of the demo corpus.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "deploy"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cluster as cl  # noqa: E402
import probes  # noqa: E402
from graph import Graph, celery_hosts, materialize_default_graph  # noqa: E402
from object_store import grpc_sockets  # noqa: E402

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(1800)]

EPOCHS = 1  # both sides train the same (short) way; the graph is the default one
VISIBILITY_TIMEOUT = 90
WORKERS = ["worker-1", "worker-2"]


@dataclass
class HostLoss:
    """Loses the worker host that runs a training step, once some training has succeeded."""

    cluster: cl.Cluster
    graph: Graph
    after_successes: int = 3
    host: str | None = None
    run_id: str | None = None
    partition: str | None = None
    at: float = 0.0

    def __call__(self, run_ids: list[str]) -> None:
        if self.host is not None:
            return
        runs = self.graph.runs(run_ids)
        if sum(r["status"] == "SUCCESS" for r in runs) < self.after_successes:
            return
        for r in runs:
            partition = {t["key"]: t["value"] for t in r["tags"]}.get("dagster/partition", "")
            if r["status"] != "STARTED" or partition.endswith("|baseline"):  # baseline trains in a blink
                continue
            events = self.graph.logs(r["runId"])
            kinds = {e["__typename"] for e in events if e.get("stepKey") == "genre_models"}
            handed = [w for step, w in celery_hosts(self.graph, r["runId"]) if step == "genre_models"]
            if "ExecutionStepStartEvent" in kinds and not kinds & {"ExecutionStepSuccessEvent",
                                                                   "ExecutionStepFailureEvent"} and handed:
                self.host, self.run_id, self.partition = handed[-1], r["runId"], partition
                self.at = time.time()
                cl.lose_host(self.cluster, self.host)
                return


@dataclass
class Scenario:
    single: Path
    data: Path
    runs: list[tuple[str, str | None, str]]
    listed: dict[str, dict]
    details: dict[str, dict]
    handovers: dict[str, list[tuple[str, str]]]
    reexecuted: dict[str, str]
    loss: HostLoss
    security: dict
    attack: dict
    again: dict
    secrets_after_down: list[str]
    wall: dict[str, float] = field(default_factory=dict)
    left: dict[str, list] = field(default_factory=dict)


def make_run(single: Path) -> subprocess.Popen:
    """``make run`` on this machine alone, with its own DAGSTER_HOME and data folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTZAN_")}
    env["TMPDIR"] = str(single / "tmp")
    (single / "tmp").mkdir(parents=True)
    log = open(single / "make-run.log", "wb")  # noqa: SIM115 - closed with the process below
    return subprocess.Popen(
        ["make", "run", f"DAGSTER_HOME={single / 'home'}", f"GTZAN_DATA_DIR={single / 'data'}",
         f"RUN_ARGS=--epochs {EPOCHS}"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


@pytest.fixture(scope="module")
def scenario():
    base = Path(tempfile.mkdtemp(prefix="gtzan-distributed-"))
    os.chmod(base, 0o755)
    single, shared = base / "single", base / "cluster"
    wall: dict[str, float] = {}
    t0 = time.monotonic()
    ref = make_run(single)
    cluster = None
    try:
        cluster = cl.up(shared, workers=len(WORKERS), visibility_timeout=VISIBILITY_TIMEOUT)
        wall["cluster up"] = time.monotonic() - t0
        graph = cluster.graph()
        loss = HostLoss(cluster, graph)
        t1 = time.monotonic()
        out = materialize_default_graph(graph, epochs=EPOCHS, on_training_poll=loss, timeout=900)
        wall["graph on the cluster"] = time.monotonic() - t1
        t2 = time.monotonic()
        firsts = {}
        for job, _partition, run_id in out.runs:
            firsts.setdefault(job, run_id)
        children = {parent: graph.reexecute(parent) for parent in firsts.values()}
        graph.wait(children.values(), timeout=600)
        wall["re-executions"] = time.monotonic() - t2
        assert ref.wait(timeout=900) == 0, (single / "make-run.log").read_text()[-4000:]
        wall["make run (beside the cluster, from the start)"] = time.monotonic() - t0
        ids = [r for _j, _p, r in out.runs] + list(children.values())
        listed = {r["runId"]: r for r in graph.runs()}
        details = {i: graph.run(i) for i in ids}
        handovers = {i: celery_hosts(graph, i) for i in ids}
        t3 = time.monotonic()
        security = probes.collect(cluster)
        attack = probes.replay_issue_17(graph, base)
        wall["least-privilege probes"] = time.monotonic() - t3
        old = {k: getattr(cluster, k) for k in OLD_KEYS}
        cl.down(shared, log=lambda _m: None)
        t4 = time.monotonic()
        cluster, again = up_again(shared, old)
        wall["up again (--object-store) and its probes"] = time.monotonic() - t4
        passwords = cluster.secrets + [v for k, v in old.items() if k != "s3_access_key"]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(ref.pid, 9)
        ref.wait()
        state = cl.Cluster.load(shared) if (shared / cl.STATE).exists() else cluster
        if (shared / cl.STATE).exists():
            cl.down(shared, log=lambda _m: None)
    left = leftovers(state)
    after = probes.files_holding_secrets(shared, passwords)
    result = Scenario(single=single / "data", data=shared / "data", runs=out.runs, listed=listed, details=details,
                      handovers=handovers, reexecuted=children, loss=loss, security=security, attack=attack,
                      again=again, secrets_after_down=after, wall=wall, left=left)
    try:
        yield result
    finally:
        shutil.rmtree(base, ignore_errors=True)
        assert not base.exists()
        print("\nwall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in wall.items()))
        if loss.run_id in listed:
            print(f"lost {loss.host} during the training step of [{loss.partition}]; its run ended "
                  f"{listed[loss.run_id]['endTime'] - loss.at:.0f} s later")


#: What each ``up`` makes anew: the services' passwords and the S3 server's keys.
OLD_KEYS = ("pg_password", "redis_password", "ui_password", "s3_access_key", "s3_secret_key")


def up_again(shared: Path, old: dict[str, str]) -> tuple[cl.Cluster, dict]:
    """``up --object-store`` on the folder of the cluster just stopped (whose keys were ``old``):
    the new cluster, and what it answers the old keys, what it kept, who holds the S3 variables."""
    cluster = cl.up(shared, workers=len(WORKERS), visibility_timeout=VISIBILITY_TIMEOUT, object_store=True)
    return cluster, {"old passwords": probes.old_passwords_refused(cluster, old),
                     "new passwords": all(getattr(cluster, k) != v for k, v in old.items()),
                     "runs": {r["runId"] for r in cluster.graph().runs()},
                     "s3 environments": probes.s3_environments(cluster),
                     "nobody reads": probes.as_nobody(cluster, "files", probes.files_args(cluster))}


def leftovers(state: cl.Cluster) -> dict[str, list]:
    """What the cluster left behind after ``down``: processes, namespaces, links."""
    netns = cl._run("ip", "netns", "list").stdout
    links = cl._run("ip", "-br", "link").stdout
    marker = f"DAGSTER_HOME={state.shared / 'dagster-home'}".encode()
    weed = str(state.object_store_dir).encode()  # SeaweedFS's environment is not the cluster's
    processes = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            cmdline = (environ.parent / "cmdline").read_bytes()
            if marker in environ.read_bytes().split(b"\0") or weed in cmdline:
                processes.append(int(environ.parent.name))
    return {
        "processes": processes,  # anything started with the cluster's environment, or SeaweedFS
        "seaweedfs sockets": [str(p) for p in grpc_sockets(state.s3_state["ports"]) if p.exists()],
        "process groups": [n for n, pgid in state.groups.items() if cl._alive(pgid)],
        "namespaces": [ns for ns in state.namespaces + [state.namespace(h) for h in ["control", *state.workers]]
                       if ns in netns.split()],
        "links": [link for link in state.root_links if link in links],
    }


# ---------------------------------------------------------------------------------------
def test_every_step_of_every_run_succeeded(scenario):
    from feature_store.params import CLIP_SECONDS
    from pipelines.settings import DEFAULT_MODELS

    clips = len(CLIP_SECONDS)  # ingest, features per clip, model x clip, report
    assert len(scenario.runs) == 1 + clips + len(DEFAULT_MODELS) * clips + 1
    for run_id in [r for _j, _p, r in scenario.runs] + list(scenario.reexecuted.values()):
        run = scenario.details[run_id]
        assert run["status"] == "SUCCESS", run
        assert run["stepStats"] and {s["status"] for s in run["stepStats"]} == {"SUCCESS"}, run["stepStats"]


def test_steps_ran_on_both_worker_hosts(scenario):
    hosts = set()
    for run_id, run in scenario.details.items():
        handed = dict(scenario.handovers[run_id])  # step -> the last worker it was handed to
        for mat in run["assetMaterializations"]:
            meta = {m["label"]: m.get("text") for m in mat["metadataEntries"]}
            assert meta["worker_host"] == handed[mat["stepKey"]], (run_id, mat["stepKey"])
            hosts.add(meta["worker_host"])
    assert hosts == set(WORKERS)


def test_graphql_lists_every_run_and_the_runs_reexecute(scenario):
    launched = [r for _j, _p, r in scenario.runs]
    assert set(launched) | set(scenario.reexecuted.values()) <= set(scenario.listed)
    assert {scenario.listed[r]["jobName"] for r in launched} == {"ingest_job", "features_job", "training_job",
                                                                "report_job"}
    assert len(scenario.reexecuted) == 4
    for parent, child in scenario.reexecuted.items():
        tags = {t["key"]: t["value"] for t in scenario.details[child]["tags"]}
        assert tags["dagster/parent_run_id"] == parent
        assert scenario.details[child]["jobName"] == scenario.listed[parent]["jobName"]
        assert scenario.listed[child]["status"] == "SUCCESS"


def test_a_lost_worker_hosts_training_step_reruns_on_the_other(scenario):
    loss = scenario.loss
    assert loss.host in WORKERS, "no worker host was lost during a training step"
    survivor = next(w for w in WORKERS if w != loss.host)
    run = scenario.details[loss.run_id]
    assert run["status"] == "SUCCESS"
    assert [w for step, w in scenario.handovers[loss.run_id] if step == "genre_models"] == [loss.host, survivor]
    (mat,) = [m for m in run["assetMaterializations"] if m["stepKey"] == "genre_models"]
    assert {m["label"]: m.get("text") for m in mat["metadataEntries"]}["worker_host"] == survivor
    listed = scenario.listed[loss.run_id]
    assert listed["status"] == "SUCCESS"
    # every other step was handed to a worker once: no step outlived the visibility timeout
    twice = {(r, s) for r, h in scenario.handovers.items() for s in {s for s, _w in h}
             if [x for x, _w in h].count(s) > 1}
    assert twice == {(loss.run_id, "genre_models")}


def test_the_lost_step_completed_within_a_bounded_time(scenario):
    """The run ends within the visibility timeout (plus the step itself and the sweep) of the loss."""
    loss = scenario.loss
    end = scenario.listed[loss.run_id]["endTime"]
    assert end is not None and 0 < end - loss.at < VISIBILITY_TIMEOUT + 120


def test_stores_match_a_single_machine_make_run(scenario):
    from feature_store import FeatureStore
    from feature_store.engine.store import ViewStore
    from feature_store.params import CLIP_SECONDS
    from feature_store.views import get_view
    from pipelines.settings import DEFAULT_MODELS
    from training.train import ModelStore

    a, b = FeatureStore(scenario.single / "store"), FeatureStore(scenario.data / "store")
    cat_a, cat_b = (pl.read_parquet(s.catalog_path).drop("path") for s in (a, b))
    assert cat_a.height == 100 and cat_a.equals(cat_b)  # the same corpus, file by file (sha256)
    assert pl.read_parquet(a.splits_path).equals(pl.read_parquet(b.splits_path))
    timbre_a, timbre_b = (ViewStore(s.root, get_view("timbre")) for s in (a, b))
    for c in CLIP_SECONDS:
        for sa, sb in ((a, b), (timbre_a, timbre_b)):  # every view of features_job
            ta, tb = sa.tensors(clip_seconds=c), sb.tensors(clip_seconds=c)
            assert ta.x.dtype == tb.x.dtype == np.float32 and ta.x.shape == tb.x.shape and len(ta.x) > 0
            assert hashlib.sha256(ta.x.tobytes()).digest() == hashlib.sha256(tb.x.tobytes()).digest(), c
            assert ta.index.equals(tb.index)
    runs_a = {(r.model, r.clip_seconds, r.seed): r for r in ModelStore(scenario.single / "models").runs()}
    runs_b = {(r.model, r.clip_seconds, r.seed): r for r in ModelStore(scenario.data / "models").runs()}
    assert len(runs_a) == len(DEFAULT_MODELS) * len(CLIP_SECONDS) and set(runs_a) == set(runs_b)
    for key, ra in runs_a.items():
        assert ra.metrics == runs_b[key].metrics, key
        history = {k: v for k, v in ra.history.items() if k != "epoch_seconds"}  # the one measured value
        assert history and history == {k: runs_b[key].history[k] for k in history}, key


def test_teardown_leaves_nothing_behind(scenario):
    assert scenario.left == {"processes": [], "seaweedfs sockets": [], "process groups": [], "namespaces": [],
                             "links": []}


# ---------------------------------------------------------------------------------------
# least privilege (issue 17): what a local user who is not root reaches, as `nobody`
# ---------------------------------------------------------------------------------------
def test_no_file_or_process_gives_another_user_a_password(scenario):
    sec = scenario.security
    held = sec["files holding a password"]
    # the files that hold one exist (the probe can find them), dagster-celery's config among them
    assert {"cluster.json", "ui-credentials", "dagster-home/celery.yaml", "redis/redis.conf", "s3-env",
            "object-store/run/s3.json"} <= set(held)
    assert any(p.startswith("dagster-storage/dagster_celery/config/") for p in held), held
    # the cluster's processes, then those of `up --object-store`, whose environment holds the S3 secret
    for nobody in (sec["nobody reads"], scenario.again["nobody reads"]):
        assert nobody["leaks"] == [] and nobody["read"] > 0 and nobody["denied"] > 0, nobody


def test_down_deletes_every_file_that_held_a_password(scenario):
    assert scenario.secrets_after_down == []


def test_up_again_makes_new_passwords_and_refuses_the_old_ones(scenario):
    again = scenario.again
    assert again["new passwords"]
    assert again["old passwords"] == {"postgres": "refused", "redis": "refused", "ui": "HTTP 401", "s3": "refused"}
    assert set(scenario.listed) <= again["runs"]  # the runs, in PostgreSQL, are kept


def test_services_refuse_guessed_passwords_and_the_celery_user_cannot_administer_redis(scenario):
    sec = scenario.security
    assert sec["nobody logs in"] == {"logins": []}
    refused = sec["redis refuses"]
    assert set(refused) == {" ".join(c) for c in probes.ADMIN_COMMANDS}
    for cmd, answer in refused.items():
        assert answer.startswith("NoPermissionError") or "not allowed" in answer, (cmd, answer)


def test_the_postgres_role_owns_its_database_and_nothing_else(scenario):
    pg = scenario.security["postgres"]
    assert pg["attributes"] == [False] * 7  # no superuser, CREATEROLE, CREATEDB, replication, RLS bypass, programs
    assert pg["owns"] == ["dagster"]
    assert pg["copy to program"] == "InsufficientPrivilege"
    assert pg["other database"] == "refused"


def test_the_ui_needs_the_password_and_the_webserver_listens_on_the_control_hosts_loopback(scenario):
    sec = scenario.security
    calls = {k: sec["nobody calls"][k] for k in ("none", "wrong", "webserver port")}
    assert calls == {"none": 401, "wrong": 401, "webserver port": "ConnectionRefusedError"}
    assert sec["webserver listens"] == [f"127.0.0.1:{cl.WEB_PORT}"]
    assert scenario.listed  # while the client with the password listed every run


def test_no_cluster_process_runs_as_root(scenario):
    sec = scenario.security
    assert sec["root processes"] == []
    users = sec["users"]  # by namespace: the control host's, then the surviving worker's
    assert list(users.values())[0] == {"gtzan", "postgres", "redis", "www-data"}, users
    assert list(users.values())[1:] == [{"gtzan"}], users


def test_the_s3_server_round_trips_from_a_worker_host_with_the_clusters_keys_and_refuses_anonymous_requests(
        scenario):
    trip = scenario.security["s3 round trip"]
    assert trip.pop("host") in WORKERS
    forbidden = {"list": 403, "get": 403, "put": 403}
    assert trip == {"same bytes": True, "listed": True, "second put": "ObjectExists", "anonymous": forbidden}
    assert scenario.security["nobody calls"]["s3 anonymous"] == forbidden  # from the root namespace, too


def test_the_s3_server_listens_on_the_control_host_only(scenario):
    from hosts import S3_PORT

    sec, service = scenario.security, scenario.security["cluster address"]
    listens = sec["seaweedfs listens"]
    # the service address (the worker hosts reach it), or the control host's own loopback
    assert f"{service}:{S3_PORT}" in listens and len(listens) >= 8, listens
    assert {a.rsplit(":", 1)[0] for a in listens} <= {service, "127.0.0.1"}, listens
    elsewhere = sec["nobody calls"]["s3 port elsewhere"]
    assert "127.0.0.1" in elsewhere and len(elsewhere) >= 3, elsewhere  # loopback, the links' ends, the machine's
    assert set(elsewhere.values()) == {"ConnectionRefusedError"}, elsewhere


def test_the_hosts_get_the_s3_variables_only_with_object_store(scenario):
    first, again = scenario.security["s3 environments"], scenario.again["s3 environments"]
    assert first["all"] == first["some"] == [] and first["none"], first  # the default: the shared folder
    services = {"gtzan:webserver", "gtzan:daemon", *(f"gtzan:{w}" for w in WORKERS)}
    assert services <= set(again["all"]) and again["some"] == [], again
    assert all(name.startswith("gtzan:") and name != "gtzan:seaweedfs" for name in again["all"]), again
    assert [n for n in again["none"] if n.startswith("gtzan:")] == ["gtzan:seaweedfs"], again  # reads its file


def test_run_config_cannot_point_a_resource_outside_the_roots(scenario):
    attack = scenario.attack
    assert attack["status"] == "FAILURE" and attack["wrote"] == []
    assert any("resources.audio.config.path" in m and "is outside the allowed roots" in m for m in attack["errors"]), \
        attack["errors"]
