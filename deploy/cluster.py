"""A multi-host Dagster deployment on one machine, for trying and testing the scale-out.

Hosts are Linux network namespaces joined by veth pairs; nothing listens outside them::

    root namespace (you, the browser) --veth-- control host --veth-- worker-1
                                                 |           --veth-- worker-2 ...
    control host (namespace gz<K>-ctl), service address 10.214.K.1:
      nginx       :3000   the UI and its GraphQL API, basic auth (the password: <dir>/ui-credentials)
      PostgreSQL  :5432   Dagster's run, event-log and schedule storage (dagster-postgres)
      Redis       :6379   the Celery broker (db 0) and result backend (db 1), one ACL user
      SeaweedFS   :8333   an S3 server (deploy/object_store.py), bucket ``gtzan``, one identity
      dagster-webserver on 127.0.0.1:3001 (the control host's loopback), dagster-daemon, the runs
    worker-N (namespace gz<K>-wN): `dagster-celery worker`, one step at a time

Every host runs the project from this checkout, with the same ``GTZAN_*`` environment (the
broker, backend and Postgres URLs of :class:`pipelines.deployment.Deployment`, and a data
folder that every host shares), except ``GTZAN_HOST_NAME``. Only the namespace set-up runs as
root: Dagster's processes run as the system user ``gtzan`` (made by ``up``), the services as
their Debian users, every one with umask 077, so that no other user reads a password or a
store. The passwords are new at every ``up`` (deploy/services.py). Each server is started in
its own process group with SIGTERM and SIGINT at their defaults; ``down`` stops each group by
its id, then any process left in a namespace by its pid, then deletes the namespaces.

The S3 server runs at every ``up`` (its keys in ``<dir>/s3-env``, 0600, root); the hosts get
GTZAN_STORE_URL and the AWS variables only with ``up --object-store``, since the default graph
keeps its store in the shared folder.

Usage (as root; missing Debian packages are installed with apt-get)::

    python deploy/cluster.py up [--dir DIR] [--workers 2] [--visibility-timeout S] [--object-store] [--shards S]
    python deploy/cluster.py materialize [--dir DIR] [--epochs N]
    python deploy/cluster.py status [--dir DIR]
    python deploy/cluster.py down [--dir DIR] [--purge]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hosts import (  # noqa: E402  (re-exported: the tests and the benchmark use them as cluster.*)
    _CHILDREN, BIN, REPO, SERVICE_USER, STATE, UI_PORT, WEB_PORT, Cluster, ClusterError, alive, as_user,
    boot_id, default_signals, ensure_packages, ensure_service_user, free_index, kill_namespace, make_hosts,
    our_groups, reap, run, server_preexec, service_python, start, stop_groups, wait_for, write_private,
)
from object_store import STOP_TIMEOUT, new_credentials, remove_sockets  # noqa: E402
from services import new_password, start_object_store, start_postgres, start_proxy, start_redis  # noqa: E402

_run, _alive, _reap = run, alive, reap  # the names the tests knew
#: The folders the service user writes (0700, its own).
SERVICE_DIRS = ("data", "dagster-home", "dagster-storage", "compute-logs", "tmp", "home")
__all__ = ["_CHILDREN", "BIN", "Cluster", "ClusterError", "STATE", "UI_PORT", "WEB_PORT", "default_signals",
           "server_preexec", "stop_groups", "up", "down", "lose_host", "stop_object_store", "restart_object_store", "main"]


def _as_service_user(*cmd: str, cluster: Cluster) -> None:
    run(*as_user(SERVICE_USER), *cmd, env=cluster.env("control"), cwd=REPO, preexec_fn=server_preexec)


def write_instance(cluster: Cluster) -> tuple[Path, dict]:
    """The cluster's DAGSTER_HOME (dagster.yaml from deploy/dagster.yaml.in) and the workers' Celery YAML.

    Both belong to the service user, 0600. Returns the YAML's path and the Celery config it holds.
    """
    import yaml

    sys.path.insert(0, str(REPO))
    from pipelines.deployment import Deployment

    for sub in SERVICE_DIRS:
        path = cluster.shared / sub
        path.mkdir(mode=0o700, exist_ok=True)
        if path.stat().st_uid != _uid(SERVICE_USER):  # a folder of an older cluster, made as root
            run("chown", "-R", f"{SERVICE_USER}:{SERVICE_USER}", str(path))
        os.chmod(path, 0o700)
    home = cluster.shared / "dagster-home"
    template = (REPO / "deploy" / "dagster.yaml.in").read_text()
    write_private(home / "dagster.yaml", template.replace("@SHARED@", str(cluster.shared)), owner=SERVICE_USER,
                  group=SERVICE_USER)
    celery_yaml = home / "celery.yaml"
    config = Deployment.from_env(cluster.env(cluster.workers[0])).celery_config()
    write_private(celery_yaml, yaml.safe_dump({"execution": {"config": config}}, sort_keys=False),
                  owner=SERVICE_USER, group=SERVICE_USER)
    # One training step per worker host at a time (each worker runs one step at a time), where
    # a single machine has one: the pool's limit lives in the instance's storage.
    _as_service_user(cluster.python, str(BIN / "dagster"), "instance", "concurrency", "set", "training",
                     str(len(cluster.workers)), cluster=cluster)
    return celery_yaml, config


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


def start_dagster(cluster: Cluster, celery_yaml: Path, celery_config: dict) -> None:
    """The webserver (control host's loopback) and daemon on the control host, a Celery worker on each worker host."""
    workspace = str(REPO / "workspace.yaml")
    py = cluster.python  # runs the entry points' scripts: their #! names this environment's Python
    start(cluster, "webserver", "control", [py, str(BIN / "dagster-webserver"), "-w", workspace,
                                            "-h", "127.0.0.1", "-p", str(WEB_PORT)])
    start(cluster, "daemon", "control", [py, str(BIN / "dagster-daemon"), "run", "-w", workspace])
    # the worker command reads broker, backend and config_source from the YAML, but not include
    includes = [arg for module in celery_config["include"] for arg in ("-i", module)]
    for host in cluster.workers:
        start(cluster, host, host, [
            py, str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(celery_yaml),
            "-n", host, *includes, "-l", "INFO", "--", "--concurrency=1",
        ])


def celery_ping(cluster: Cluster, timeout: float = 2.0) -> set[str]:
    """Names of the Celery workers that answer a ping through the broker."""
    from celery import Celery

    app = Celery(broker=cluster.env("control")["GTZAN_BROKER_URL"])
    try:
        replies = app.control.ping(timeout=timeout) or []
    finally:
        app.close()
    return {name.split("@")[0] for reply in replies for name in reply}


def wait_ready(cluster: Cluster, timeout: float = 240) -> None:
    """Until the webserver has loaded the code location (through the proxy), the daemon beats
    and every worker answers."""
    g = cluster.graph()
    wait_for("dagster-webserver", g.location_loaded, timeout, cluster, "webserver")
    wait_for("dagster-daemon", g.daemons_healthy, timeout, cluster, "daemon")
    for host in cluster.workers:
        wait_for(f"the Celery worker on {host}", lambda h=host: h in celery_ping(cluster), timeout, cluster, host)


def _check_folder(shared: Path) -> None:
    """The folder's parents and the checkout must be open to the services' users."""
    closed = [str(p) for p in (*shared.parents, *REPO.parents, REPO) if p.exists() and not p.stat().st_mode & 0o001]
    if closed:  # PostgreSQL, Redis and the service user run below this folder, and from the checkout
        raise ClusterError(f"{closed[0]} is closed to other users, so the cluster's users could not reach {shared} "
                           "or the checkout; choose a folder under one they may enter (CLUSTER_DIR=/tmp/gtzan-cluster)")


def up(directory: str | os.PathLike[str], *, workers: int = 2, visibility_timeout: int = 3600,
       object_store: bool = False, shards: int = 0, log=print) -> Cluster:
    """Install what is missing, then start every host and service; on any failure, tear down.

    ``object_store``: give the hosts GTZAN_STORE_URL and the AWS variables of the S3 server;
    ``shards``: their GTZAN_SHARDS (0: unset, the settings' default).
    """
    if os.geteuid() != 0:
        raise ClusterError("the cluster makes network namespaces: run it as root")
    ensure_packages(log)
    ensure_service_user()
    shared = Path(directory).resolve()
    if (shared / STATE).exists():
        raise ClusterError(f"a cluster already runs in {shared}; stop it with `make cluster-down`")
    _check_folder(shared)
    shared.mkdir(parents=True, exist_ok=True)
    os.chmod(shared, 0o755)  # the services' users enter it; each of their folders is 0700
    shutil.rmtree(shared / "tmp", ignore_errors=True)  # the last run's sockets, if any
    (shared / "secret").unlink(missing_ok=True)  # an older cluster's one password, kept between runs
    s3_key, s3_secret = new_credentials()
    cluster = Cluster(dir=str(shared), index=free_index(), workers=[f"worker-{i + 1}" for i in range(workers)],
                      pg_password=new_password(), redis_password=new_password(), ui_password=new_password(),
                      s3_access_key=s3_key, s3_secret_key=s3_secret, object_store=object_store, shards=shards,
                      visibility_timeout=visibility_timeout, boot_id=boot_id(), python=str(service_python(shared)))
    cluster.save()
    try:
        log(f"hosts: control + {', '.join(cluster.workers)} (namespaces {cluster.prefix}-*)")
        make_hosts(cluster)
        log("PostgreSQL, Redis, SeaweedFS (S3) and the UI's proxy on the control host")
        start_postgres(cluster)
        start_redis(cluster)
        start_object_store(cluster)
        celery_yaml, celery_config = write_instance(cluster)
        start_proxy(cluster)
        log(f"dagster-webserver, dagster-daemon and the Celery workers (as user {SERVICE_USER})")
        start_dagster(cluster, celery_yaml, celery_config)
        wait_ready(cluster)
    except BaseException:
        down(shared, log=lambda _m: None)
        raise
    log(f"ready: the UI is on {cluster.ui_url} (user {SERVICE_USER}, password in {cluster.credentials_file}, "
        f"readable by root only); stores under {shared / 'data'}; S3 at {cluster.s3_state['endpoint']} "
        f"(`source {cluster.s3_env_file}`{'' if object_store else '; the hosts use it with --object-store'})")
    return cluster


#: The servers stopped after the others (their clients), each with its fast-shutdown signal.
SERVICES = {"proxy": signal.SIGTERM, "seaweedfs": signal.SIGTERM, "redis": signal.SIGTERM,
            "postgres": signal.SIGINT}
#: Seconds before SIGKILL, where not the default: SeaweedFS's filer waits on its metadata
#: subscribers at SIGTERM, and what it acknowledged is already written to the kernel.
GRACE = {"seaweedfs": STOP_TIMEOUT}
#: What holds this ``up``'s passwords, deleted by every ``down`` (the passwords die with it anyway).
SECRET_FILES = ("ui-credentials", "dagster-home/celery.yaml", "dagster-home/dagster_celery",
                "dagster-storage/dagster_celery", "proxy",
                "redis/redis.conf", "s3-env", "object-store/run")


def down(directory: str | os.PathLike[str], *, purge: bool = False, log=print) -> None:
    """Stop every process group, any process left in the namespaces, delete the namespaces and
    the files that hold the passwords (``purge``: the whole folder)."""
    cluster = Cluster.load(directory)
    groups = our_groups(cluster)
    stop_groups([g for name, g in groups.items() if name not in SERVICES])
    for name, sig in SERVICES.items():
        if name in groups:
            stop_groups([groups[name]], first=sig, grace=GRACE.get(name, 10.0))
    if "seaweedfs" in cluster.groups:  # its gRPC sockets, in /tmp, named after this cluster's ports
        remove_sockets(cluster.s3_state["ports"], uid=_uid(SERVICE_USER))
    for ns in reversed(cluster.namespaces):
        kill_namespace(ns)
        run("ip", "netns", "delete", ns, check=False)
    for link in cluster.root_links:
        if Path(f"/sys/class/net/{link}").exists():
            run("ip", "link", "delete", link, check=False)
    left = [ns for ns in cluster.namespaces if Path(f"/run/netns/{ns}").exists()]
    if left:
        raise ClusterError(f"namespaces {left} could not be deleted")
    if purge:
        shutil.rmtree(cluster.shared, ignore_errors=True)
    else:
        for name in SECRET_FILES:
            path = cluster.shared / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        (cluster.shared / STATE).unlink()
    log(f"stopped {len(cluster.groups)} process groups, deleted {len(cluster.namespaces)} namespaces")


def lose_host(cluster: Cluster, host: str) -> None:
    """Lose a worker host at once: SIGKILL its process group and delete its namespace."""
    pgid = our_groups(cluster)[host]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    ns = cluster.namespace(host)
    kill_namespace(ns)
    run("ip", "netns", "delete", ns)
    reap()
    cluster.namespaces.remove(ns)
    cluster.save()


def stop_object_store(cluster: Cluster) -> None:
    """Stop the cluster's SeaweedFS (its process group, as ``down`` does); its data stays."""
    pgid = our_groups(cluster).get("seaweedfs")
    if pgid is not None:
        stop_groups([pgid], first=SERVICES["seaweedfs"], grace=GRACE["seaweedfs"])
    remove_sockets(cluster.s3_state["ports"], uid=_uid(SERVICE_USER))
    cluster.groups.pop("seaweedfs", None)
    cluster.save()


def restart_object_store(cluster: Cluster) -> None:
    """Start the cluster's SeaweedFS again after :func:`stop_object_store`: the same address,
    keys, bucket and data, so every host's variables still hold."""
    if "seaweedfs" in our_groups(cluster):
        raise ClusterError("SeaweedFS of this cluster is running: stop it first")
    start_object_store(cluster)


def _materialize(args: argparse.Namespace) -> None:
    from graph import materialize_default_graph

    cluster = Cluster.load(args.dir)
    models = args.models
    if models == ["all"]:
        sys.path.insert(0, str(REPO))
        from assets.partitions import PIPELINE_MODELS

        models = list(PIPELINE_MODELS)
    out = materialize_default_graph(cluster.graph(), epochs=args.epochs, seeds=args.seeds,
                                    clip_seconds=args.clip_seconds, models=models)
    print(f"{len(out.runs)} runs succeeded; evaluation report: {out.report}")


def _status(args: argparse.Namespace) -> None:
    cluster = Cluster.load(args.dir)
    ours = our_groups(cluster)
    for name, pgid in cluster.groups.items():
        print(f"{name:<10} process group {pgid:<8} {'running' if name in ours and alive(pgid) else 'stopped'}")
    print(f"S3: {cluster.s3_state['endpoint']} (keys in {cluster.s3_env_file}; the hosts use it: "
          f"{'yes' if cluster.object_store else 'no, up --object-store'})")
    print(f"UI: {cluster.ui_url} (user {SERVICE_USER}, password in {cluster.credentials_file})  "
          f"workers answering: {sorted(celery_ping(cluster))}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/cluster.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "materialize"])
    parser.add_argument("--dir", default=str(REPO / ".cluster"), help="the shared folder (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="worker hosts (default: %(default)s)")
    parser.add_argument("--visibility-timeout", type=int, default=3600,
                        help="seconds before a lost worker's step goes to another worker (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="materialize: epoch cap per model (default: the settings' cap, TrainConfig's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="materialize: seeds per model (default: 0)")
    parser.add_argument("--clip-seconds", type=int, nargs="+", default=None,
                        help="materialize: clip lengths (default: all)")
    parser.add_argument("--models", nargs="+", default=None,
                        help="materialize: models to train (default: those of `make run`), or 'all'")
    parser.add_argument("--object-store", action="store_true",
                        help="up: give every host GTZAN_STORE_URL and the AWS variables of the cluster's S3 server "
                             "(it runs either way)")
    parser.add_argument("--shards", type=int, default=0,
                        help="up: the hosts' GTZAN_SHARDS, shards of the sharded assets (default: the settings')")
    parser.add_argument("--purge", action="store_true", help="down: also delete the folder and its stores")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(args.dir, workers=args.workers, visibility_timeout=args.visibility_timeout,
               object_store=args.object_store, shards=args.shards)
        elif args.command == "down":
            down(args.dir, purge=args.purge)
        elif args.command == "status":
            _status(args)
        else:
            _materialize(args)
    except ClusterError as exc:
        print(f"cluster: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
