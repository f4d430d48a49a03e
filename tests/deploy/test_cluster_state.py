"""deploy/cluster.py without root: its state, its environment, and which process groups it may stop."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "deploy"))

import cluster as cl  # noqa: E402
import hosts  # noqa: E402


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    cl._CHILDREN[proc.pid] = proc  # as cluster.start records the servers it starts
    yield proc
    cl.stop_groups([proc.pid], grace=2)
    proc.wait(timeout=10)


def test_state_round_trips_and_is_private(tmp_path):
    c = cl.Cluster(dir=str(tmp_path), index=3, workers=["worker-1", "worker-2"], pg_password="p", redis_password="r",
                   ui_password="u", boot_id="b")
    c.groups["redis"], c.started["redis"] = 123, 456
    c.save()
    assert cl.Cluster.load(tmp_path) == c
    assert (tmp_path / cl.STATE).stat().st_mode & 0o777 == 0o600
    with pytest.raises(cl.ClusterError, match="no cluster in"):
        cl.Cluster.load(tmp_path / "elsewhere")


def test_a_state_file_others_could_write_or_a_huge_one_is_refused(tmp_path):
    c = cl.Cluster(dir=str(tmp_path), index=3, workers=["worker-1"], pg_password="p", redis_password="r",
                   ui_password="u", boot_id="b")
    c.save()
    state = tmp_path / cl.STATE
    state.chmod(0o666)  # anyone could have planted process ids for `down` to signal
    with pytest.raises(cl.ClusterError, match=r"not a private file of this user \(mode 666"):
        cl.Cluster.load(tmp_path)
    state.chmod(0o600)
    state.write_text("[" * (2 << 20))
    with pytest.raises(cl.ClusterError, match=r"cluster.json cannot be read \(.* more than the 1048576"):
        cl.Cluster.load(tmp_path)


def test_every_host_gets_the_deployments_environment(tmp_path):
    from pipelines.deployment import Deployment

    c = cl.Cluster(dir=str(tmp_path), index=3, workers=["worker-1"], pg_password="p", redis_password="r",
                   ui_password="u", visibility_timeout=90)
    control, worker = Deployment.from_env(c.env("control")), Deployment.from_env(c.env("worker-1"))
    assert control.broker_url == worker.broker_url == "redis://gtzan:r@10.214.3.1:6379/0"
    assert worker.result_backend == "redis://gtzan:r@10.214.3.1:6379/1"
    assert worker.postgres_url == "postgresql+psycopg2://gtzan:p@10.214.3.1:5432/dagster"
    assert "u" not in c.env("worker-1").values()  # the UI's password stays with root
    assert c.ui_url == "http://10.214.3.1:3000" and c.ui_auth == ("gtzan", "u")
    assert (control.host_name, worker.host_name, worker.visibility_timeout) == ("control", "worker-1", 90)
    assert c.env("worker-1")["GTZAN_DATA_DIR"] == str(tmp_path / "data")  # the shared folder
    assert c.namespace("control") == "gz3-ctl" and c.namespace("worker-1") == "gz3-w1"


def test_only_the_clusters_own_process_groups_are_stopped(tmp_path, sleeper):
    c = cl.Cluster(dir=str(tmp_path), index=3, workers=[], boot_id=cl.boot_id())
    c.groups = {"ours": sleeper.pid, "gone": 2**22 + 7, "reused": sleeper.pid}
    c.started = {"ours": hosts._start_time(sleeper.pid), "gone": 1, "reused": hosts._start_time(sleeper.pid) - 1}
    # a leader that exited leaves a group id that no new process can take while members live
    assert cl.our_groups(c) == {"ours": sleeper.pid, "gone": 2**22 + 7}
    c.boot_id = "another boot"
    assert cl.our_groups(c) == {}
    assert cl._alive(sleeper.pid)
    cl.stop_groups([sleeper.pid], grace=5)
    assert not cl._alive(sleeper.pid)


def test_private_files_are_never_readable_by_others(tmp_path):
    target = tmp_path / "secret"
    target.write_text("old")
    target.chmod(0o644)
    cl.write_private(target, "new")
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_htpasswd_entries_are_salted_sha1_that_verify():
    import base64
    import hashlib

    import services

    a, b = services.htpasswd_line("gtzan", "pw"), services.htpasswd_line("gtzan", "pw")
    assert a != b  # a new salt each time
    user, entry = a.strip().split(":", 1)
    assert user == "gtzan" and entry.startswith("{SSHA}")
    raw = base64.b64decode(entry[len("{SSHA}"):])
    digest, salt = raw[:20], raw[20:]
    assert hashlib.sha1(b"pw" + salt).digest() == digest and hashlib.sha1(b"other" + salt).digest() != digest


def test_graph_sends_basic_auth(tmp_path):
    """The GraphQL client authenticates to the proxy; without the password it gets the proxy's 401."""
    import http.server
    import threading

    from graph import Graph, GraphError

    seen = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the handler's API
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.headers.get("Authorization"))
            ok = self.headers.get("Authorization") == "Basic Z3R6YW46cHc="  # gtzan:pw
            self.send_response(200 if ok else 401)
            self.end_headers()
            self.wfile.write(b'{"data": {"ok": 1}}' if ok else b"")

        def log_message(self, *_args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        assert Graph(url, auth=("gtzan", "pw")).query("{ ok }") == {"ok": 1}
        with pytest.raises(GraphError, match="HTTP 401"):
            Graph(url).query("{ ok }")
        assert "pw" not in repr(Graph(url, auth=("gtzan", "pw")))
    finally:
        server.shutdown()
    assert seen == ["Basic Z3R6YW46cHc=", None]


def test_the_hosts_get_the_s3_variables_only_with_object_store(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "roots-own")  # root's variables never reach the hosts
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    c = cl.Cluster(dir=str(tmp_path), index=3, workers=["worker-1"], s3_access_key="GZKEY", s3_secret_key="s3secret")
    for host in ("control", "worker-1"):
        assert not {k for k in c.env(host) if k.startswith("AWS_") or k == "GTZAN_STORE_URL"}, host
    c.object_store = True
    want = {"GTZAN_STORE_URL": "s3://gtzan/store", "AWS_ENDPOINT_URL": "http://10.214.3.1:8333",
            "AWS_ACCESS_KEY_ID": "GZKEY", "AWS_SECRET_ACCESS_KEY": "s3secret", "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true"}
    for host in ("control", "worker-1"):
        env = c.env(host)
        assert {k: env[k] for k in want} == want
    from pipelines.settings import Settings

    assert Settings.from_env(c.env("worker-1")).store_location == "s3://gtzan/store"
    assert "s3secret" in c.secrets
    c.save()
    assert cl.Cluster.load(tmp_path).s3_secret_key == "s3secret" and cl.Cluster.load(tmp_path).object_store


def test_each_clusters_seaweedfs_has_its_own_grpc_ports_below_the_ephemeral_range(tmp_path):
    ports = [cl.Cluster(dir=str(tmp_path), index=k, workers=[]).s3_state["ports"] for k in (1, 2, 249)]
    grpc = [{v for name, v in p.items() if name.endswith(".grpc")} for p in ports]
    assert all(len(g) == 4 for g in grpc) and not grpc[0] & grpc[1] and not grpc[1] & grpc[2]
    assert max(max(g) for g in grpc) < 32768 and all(len(set(p.values())) == 8 for p in ports)
    assert ports[0]["s3"] == hosts.S3_PORT


def test_only_the_service_users_servers_get_the_s3_keys(tmp_path, monkeypatch):
    started = {}

    class Popen:
        def __init__(self, argv, **kw):
            self.pid, started[argv[-1]] = 2**22 + len(started), kw["env"]

    monkeypatch.setattr(hosts.subprocess, "Popen", Popen)
    monkeypatch.setattr(hosts, "_CHILDREN", {})
    c = cl.Cluster(dir=str(tmp_path), index=3, workers=["worker-1"], s3_access_key="GZKEY", s3_secret_key="s3secret",
                   object_store=True)
    hosts.start(c, "postgres", "control", ["postgres"], user="postgres")
    hosts.start(c, "worker-1", "worker-1", ["celery"])
    hosts.start(c, "seaweedfs", "control", ["weed"], env={"PATH": "/usr/bin:/bin"})
    assert "s3secret" not in started["postgres"].values() and "GTZAN_STORE_URL" not in started["postgres"]
    assert started["celery"]["AWS_SECRET_ACCESS_KEY"] == "s3secret"
    assert started["weed"] == {"PATH": "/usr/bin:/bin"}  # it reads its identity from its 0600 file
    assert set(c.groups) == {"postgres", "worker-1", "seaweedfs"}
