"""deploy/cluster.py without root: its state, its environment, and which process groups it may stop."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "deploy"))

import cluster as cl  # noqa: E402


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    cl._CHILDREN[proc.pid] = proc  # as cluster.start records the servers it starts
    yield proc
    cl.stop_groups([proc.pid], grace=2)
    proc.wait(timeout=10)


def test_state_round_trips_and_is_private(tmp_path):
    c = cl.Cluster(dir=str(tmp_path), index=3, workers=["worker-1", "worker-2"], secret="s3cret", boot_id="b")
    c.groups["redis"], c.started["redis"] = 123, 456
    c.save()
    assert cl.Cluster.load(tmp_path) == c
    assert (tmp_path / cl.STATE).stat().st_mode & 0o777 == 0o600
    with pytest.raises(cl.ClusterError, match="no cluster in"):
        cl.Cluster.load(tmp_path / "elsewhere")


def test_every_host_gets_the_deployments_environment(tmp_path):
    from pipelines.deployment import Deployment

    c = cl.Cluster(dir=str(tmp_path), index=3, workers=["worker-1"], secret="s3cret", visibility_timeout=90)
    control, worker = Deployment.from_env(c.env("control")), Deployment.from_env(c.env("worker-1"))
    assert control.broker_url == worker.broker_url == "redis://:s3cret@10.214.3.1:6379/0"
    assert worker.postgres_url == "postgresql+psycopg2://gtzan:s3cret@10.214.3.1:5432/dagster"
    assert (control.host_name, worker.host_name, worker.visibility_timeout) == ("control", "worker-1", 90)
    assert c.env("worker-1")["GTZAN_DATA_DIR"] == str(tmp_path / "data")  # the shared folder
    assert c.namespace("control") == "gz3-ctl" and c.namespace("worker-1") == "gz3-w1"


def test_only_the_clusters_own_process_groups_are_stopped(tmp_path, sleeper):
    c = cl.Cluster(dir=str(tmp_path), index=3, workers=[], boot_id=cl._boot_id())
    c.groups = {"ours": sleeper.pid, "gone": 2**22 + 7, "reused": sleeper.pid}
    c.started = {"ours": cl._start_time(sleeper.pid), "gone": 1, "reused": cl._start_time(sleeper.pid) - 1}
    # a leader that exited leaves a group id that no new process can take while members live
    assert cl.our_groups(c) == {"ours": sleeper.pid, "gone": 2**22 + 7}
    c.boot_id = "another boot"
    assert cl.our_groups(c) == {}
    assert cl._alive(sleeper.pid)
    cl.stop_groups([sleeper.pid], grace=5)
    assert not cl._alive(sleeper.pid)
