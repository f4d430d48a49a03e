"""A multi-host Dagster deployment on one machine, for trying and testing the scale-out.

Hosts are Linux network namespaces joined by veth pairs; nothing listens outside them::

    root namespace (you, the browser) --veth-- control host --veth-- worker-1
                                                 |           --veth-- worker-2 ...
    control host (namespace gz<K>-ctl), service address 10.214.K.1:
      PostgreSQL  :5432   Dagster's run, event-log and schedule storage (dagster-postgres)
      Redis       :6379   the Celery broker (db 0) and result backend (db 1)
      dagster-webserver :3000, dagster-daemon, and the run orchestrators they start
    worker-N (namespace gz<K>-wN): `dagster-celery worker`, one step at a time

Every host runs the project from this checkout, with the same ``GTZAN_*`` environment (the
broker, backend and Postgres URLs of :class:`pipelines.deployment.Deployment`, and a data
folder that every host shares), except ``GTZAN_HOST_NAME``. Each server is started in its
own process group with SIGTERM and SIGINT at their defaults; ``down`` stops each group by its
id, then any process left in a namespace by its pid, then deletes the namespaces.

Usage (as root; missing Debian packages are installed with apt-get)::

    python deploy/cluster.py up [--dir DIR] [--workers 2] [--visibility-timeout S]
    python deploy/cluster.py materialize [--dir DIR] [--epochs 2]
    python deploy/cluster.py status [--dir DIR]
    python deploy/cluster.py down [--dir DIR] [--purge]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STATE = "cluster.json"
#: Debian packages the cluster needs, by the program that shows they are installed.
PACKAGES = {"ip": "iproute2", "redis-server": "redis-server", "setpriv": "util-linux", "postgres": "postgresql"}
UI_PORT, PG_PORT, REDIS_PORT = 3000, 5432, 6379


class ClusterError(RuntimeError):
    """The cluster could not be started or reached; the message says what and where to look."""


# ---------------------------------------------------------------------------------------
# the state of one cluster: everything `down` needs, written as soon as it exists
# ---------------------------------------------------------------------------------------
@dataclass
class Cluster:
    dir: str
    index: int
    workers: list[str]
    namespaces: list[str] = field(default_factory=list)
    root_links: list[str] = field(default_factory=list)
    groups: dict[str, int] = field(default_factory=dict)  # server name -> process group id
    started: dict[str, int] = field(default_factory=dict)  # server name -> its leader's start time
    boot_id: str = ""
    secret: str = ""
    visibility_timeout: int = 3600

    @property
    def prefix(self) -> str:
        return f"gz{self.index}"

    @property
    def service_address(self) -> str:
        return f"10.214.{self.index}.1"

    @property
    def ui_url(self) -> str:
        return f"http://{self.service_address}:{UI_PORT}"

    @property
    def shared(self) -> Path:
        """The folder every host shares: stores, Dagster home, logs."""
        return Path(self.dir)

    def namespace(self, host: str) -> str:
        return f"{self.prefix}-ctl" if host == "control" else f"{self.prefix}-{host.replace('worker-', 'w')}"

    def env(self, host: str) -> dict[str, str]:
        """The environment of every process on ``host``."""
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("GTZAN_", "DAGSTER_"))}
        a = self.service_address
        return {
            **keep,
            "DAGSTER_HOME": str(self.shared / "dagster-home"),
            "GTZAN_EXECUTOR": "celery",
            "GTZAN_DATA_DIR": str(self.shared / "data"),
            "GTZAN_BROKER_URL": f"redis://:{self.secret}@{a}:{REDIS_PORT}/0",
            "GTZAN_RESULT_BACKEND": f"redis://:{self.secret}@{a}:{REDIS_PORT}/1",
            "GTZAN_POSTGRES_URL": f"postgresql+psycopg2://gtzan:{self.secret}@{a}:{PG_PORT}/dagster",
            "GTZAN_HOST_NAME": host,
            "GTZAN_CELERY_VISIBILITY_TIMEOUT": str(self.visibility_timeout),
            "GTZAN_WORKERS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
            # Dagster's code servers put their sockets in temporary folders: keep them in ours
            "TMPDIR": str(self.shared / "tmp"),
            "PATH": f"{BIN}{os.pathsep}{keep.get('PATH', '/usr/bin:/bin')}",
        }

    def save(self) -> None:
        path = self.shared / STATE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.chmod(tmp, 0o600)
        tmp.replace(path)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Cluster:
        path = Path(directory) / STATE
        if not path.is_file():
            raise ClusterError(f"no cluster in {directory} (no {STATE}); start one with `make cluster`")
        return cls(**json.loads(path.read_text()))


# ---------------------------------------------------------------------------------------
# packages, namespaces and processes
# ---------------------------------------------------------------------------------------
def _run(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(list(cmd), capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise ClusterError(f"`{' '.join(cmd)}` exited {p.returncode}: {(p.stderr or p.stdout).strip()[-2000:]}")
    return p


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL server's bin folder (Debian's layout)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def ensure_packages(log=print) -> None:
    """Install the Debian packages the cluster needs that are missing; their services stay stopped."""
    missing = sorted({pkg for prog, pkg in PACKAGES.items()
                      if (postgres_bin() is None if prog == "postgres" else shutil.which(prog) is None)})
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ClusterError(f"the cluster needs the Debian packages {missing}; install them as root (apt-get install)")
    log(f"installing {' '.join(missing)} (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # policy-rc.d 101: the packages' own services are not started (ours run in namespaces)
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        _run("apt-get", "update", "-q", env=env)
        _run("apt-get", "install", "-y", "-q", "--no-install-recommends", *missing, env=env)
    finally:
        if ours:
            policy.unlink(missing_ok=True)


def default_signals() -> None:
    """SIGTERM and SIGINT back to their defaults (a server started from a background process
    may inherit them ignored): the ``preexec_fn`` of every server started here."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(cluster: Cluster, name: str, host: str, cmd: list[str], *, user: str | None = None) -> int:
    """Start ``cmd`` on ``host`` in its own process group; record and return the group id."""
    argv = ["ip", "netns", "exec", cluster.namespace(host)]
    if user:
        argv += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
    logs = cluster.shared / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(
            argv + cmd, cwd=REPO, env=cluster.env(host), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=default_signals,
        )
    _CHILDREN[proc.pid] = proc
    cluster.groups[name] = proc.pid  # a new session: its group id is its pid
    cluster.started[name] = _start_time(proc.pid) or 0
    cluster.save()
    return proc.pid


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def our_groups(cluster: Cluster) -> dict[str, int]:
    """The recorded process groups that are still this cluster's, not a reused id.

    After a reboot none is. A group id cannot be reused while a member of the group lives,
    so a group whose leader has exited is still ours; one whose id now names a process that
    started at another time is not.
    """
    if cluster.boot_id != _boot_id():
        return {}
    out = {}
    for name, pgid in cluster.groups.items():
        started = _start_time(pgid)
        if started is None or started == cluster.started.get(name):
            out[name] = pgid
    return out


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_groups(pgids: list[int], *, first: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """Signal the process groups (``first``), then SIGKILL those left after ``grace`` seconds."""
    for sig, wait in ((first, grace), (signal.SIGKILL, 5.0)):
        for pgid in pgids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while any(_alive(g) for g in pgids) and time.monotonic() < deadline:
            _reap()
            time.sleep(0.1)
        if not any(_alive(g) for g in pgids):
            return


#: The servers this process started (the group leaders), by pid.
_CHILDREN: dict[int, subprocess.Popen] = {}


def _reap() -> None:
    """Collect the servers this process started that have exited, so that their groups disappear.

    Only those: a ``waitpid(-1)`` would also take the exit status of the caller's other children.
    """
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            del _CHILDREN[pid]


def namespace_pids(ns: str) -> list[int]:
    p = _run("ip", "netns", "pids", ns, check=False)
    return [int(x) for x in p.stdout.split()] if p.returncode == 0 else []


def kill_namespace(ns: str) -> None:
    """SIGKILL every process still in namespace ``ns`` (all started by this cluster), by pid."""
    for _ in range(50):
        pids = namespace_pids(ns)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap()
        time.sleep(0.1)
    raise ClusterError(f"processes {namespace_pids(ns)} are still in namespace {ns}")


def _link(cluster: Cluster, ns_a: str | None, if_a: str, addr_a: str, ns_b: str, if_b: str, addr_b: str) -> None:
    """A veth pair ``if_a`` (in ``ns_a``, None: the root namespace) -- ``if_b`` (in ``ns_b``)."""
    side_a = ["name", if_a] + ([] if ns_a is None else ["netns", ns_a])
    _run("ip", "link", "add", *side_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
    if ns_a is None:
        cluster.root_links.append(if_a)
        cluster.save()
    for ns, ifname, addr in ((ns_a, if_a, addr_a), (ns_b, if_b, addr_b)):
        pre = ["ip"] if ns is None else ["ip", "-n", ns]
        _run(*pre, "addr", "add", addr, "dev", ifname)
        _run(*pre, "link", "set", ifname, "up")


def make_hosts(cluster: Cluster) -> None:
    """The control host's namespace and one per worker, joined by point-to-point veth pairs.

    The service address lives on the control host's loopback; the root namespace and each
    worker reach it through their link, and nothing else is routed.
    """
    k, svc = cluster.index, cluster.service_address
    ctl = cluster.namespace("control")
    for host in ["control", *cluster.workers]:
        ns = cluster.namespace(host)
        _run("ip", "netns", "add", ns)
        cluster.namespaces.append(ns)
        cluster.save()
        _run("ip", "-n", ns, "link", "set", "lo", "up")
    _run("ip", "-n", ctl, "addr", "add", f"{svc}/32", "dev", "lo")
    _link(cluster, None, f"{cluster.prefix}-root", f"10.215.{k}.1/30", ctl, "eth-root", f"10.215.{k}.2/30")
    _run("ip", "route", "add", f"{svc}/32", "via", f"10.215.{k}.2", "dev", f"{cluster.prefix}-root")
    for i, host in enumerate(cluster.workers):
        ns, a = cluster.namespace(host), 4 * i
        _link(cluster, ctl, f"eth-{host}", f"10.216.{k}.{a + 1}/30", ns, "eth0", f"10.216.{k}.{a + 2}/30")
        _run("ip", "-n", ns, "route", "add", f"{svc}/32", "via", f"10.216.{k}.{a + 1}")


def free_index() -> int:
    """The first cluster index whose namespaces and addresses are unused on this machine."""
    used = _run("ip", "netns", "list").stdout + _run("ip", "-br", "addr").stdout
    for k in range(1, 250):
        if f"gz{k}-" not in used and f"10.215.{k}." not in used:
            return k
    raise ClusterError("no free cluster index (gz1..gz249 all in use)")


# ---------------------------------------------------------------------------------------
# the services
# ---------------------------------------------------------------------------------------
def _wait(what: str, probe, timeout: float, cluster: Cluster, log_name: str) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        pgid = cluster.groups.get(log_name)
        if pgid is not None and not _alive(pgid):
            break
        try:
            if probe():
                return
        except Exception as exc:  # noqa: BLE001 - any failure of the probe means "not yet"
            last = exc
        time.sleep(0.5)
    tail = (cluster.shared / "logs" / f"{log_name}.log").read_text(errors="replace")[-3000:]
    raise ClusterError(f"{what} did not come up in {timeout:.0f} s ({last}); log {log_name}.log ends:\n{tail}")


def start_postgres(cluster: Cluster) -> None:
    """initdb (scram-sha-256, user gtzan) and PostgreSQL on the control host, as user postgres."""
    import psycopg2

    bindir = postgres_bin()
    pgdata = cluster.shared / "postgres"
    if not (pgdata / "PG_VERSION").exists():  # a cluster started here before keeps its database
        pgdata.mkdir(mode=0o700, exist_ok=True)
        shutil.chown(pgdata, "postgres", "postgres")
        pwfile = cluster.shared / "pg.pw"
        pwfile.write_text(cluster.secret + "\n")
        os.chmod(pwfile, 0o600)
        shutil.chown(pwfile, "postgres", "postgres")
        try:
            _run("setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", str(bindir / "initdb"),
                 "-D", str(pgdata), "-U", "gtzan", f"--pwfile={pwfile}", "-A", "scram-sha-256", "-E", "UTF8",
                 "--no-sync", cwd="/")
        finally:
            pwfile.unlink()
    k = cluster.index  # clients: the control host itself, the root namespace, the workers
    (pgdata / "pg_hba.conf").write_text("".join(
        f"host all all {net} scram-sha-256\n" for net in ("127.0.0.1/32", f"10.214.{k}.0/24", f"10.215.{k}.0/24",
                                                          f"10.216.{k}.0/24")
    ))
    start(cluster, "postgres", "control", [
        str(bindir / "postgres"), "-D", str(pgdata), "-p", str(PG_PORT),
        "-c", f"listen_addresses=127.0.0.1,{cluster.service_address}", "-c", "unix_socket_directories=",
        "-c", "max_connections=200",
    ], user="postgres")

    def ready() -> bool:
        with contextlib.closing(psycopg2.connect(host=cluster.service_address, port=PG_PORT, user="gtzan",
                                                 password=cluster.secret, dbname="postgres",
                                                 connect_timeout=3)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = 'dagster'")
                if cur.fetchone() is None:
                    cur.execute("CREATE DATABASE dagster")
        return True

    _wait("PostgreSQL", ready, 60, cluster, "postgres")


def start_redis(cluster: Cluster) -> None:
    """Redis on the control host, as user redis, with a password and no persistence."""
    import redis

    rdir = cluster.shared / "redis"
    rdir.mkdir(mode=0o700, exist_ok=True)
    conf = rdir / "redis.conf"
    conf.write_text(
        f"bind 127.0.0.1 {cluster.service_address}\nport {REDIS_PORT}\nrequirepass {cluster.secret}\n"
        f"dir {rdir}\nsave \"\"\nappendonly no\ndaemonize no\nprotected-mode yes\n"
    )
    os.chmod(conf, 0o600)
    for p in (rdir, conf):
        shutil.chown(p, "redis", "redis")
    start(cluster, "redis", "control", [shutil.which("redis-server") or "redis-server", str(conf)], user="redis")
    client = redis.Redis(host=cluster.service_address, port=REDIS_PORT, password=cluster.secret, socket_timeout=3)
    _wait("Redis", client.ping, 30, cluster, "redis")


def write_instance(cluster: Cluster) -> tuple[Path, dict]:
    """The cluster's DAGSTER_HOME (dagster.yaml from deploy/dagster.yaml.in) and the workers' Celery YAML.

    Returns the YAML's path and the Celery config it holds.
    """
    import yaml

    sys.path.insert(0, str(REPO))
    from pipelines.deployment import Deployment

    home = cluster.shared / "dagster-home"
    home.mkdir(exist_ok=True)
    template = (REPO / "deploy" / "dagster.yaml.in").read_text()
    (home / "dagster.yaml").write_text(template.replace("@SHARED@", str(cluster.shared)))
    celery_yaml = cluster.shared / "celery.yaml"
    config = Deployment.from_env(cluster.env(cluster.workers[0])).celery_config()
    celery_yaml.write_text(yaml.safe_dump({"execution": {"config": config}}, sort_keys=False))
    os.chmod(celery_yaml, 0o600)
    for sub in ("data", "dagster-storage", "compute-logs", "tmp"):
        (cluster.shared / sub).mkdir(exist_ok=True)
    # One training step per worker host at a time (each worker runs one step at a time), where
    # a single machine has one: the pool's limit lives in the instance's storage.
    _run(str(BIN / "dagster"), "instance", "concurrency", "set", "training", str(len(cluster.workers)),
         env=cluster.env("control"), cwd=REPO)
    return celery_yaml, config


def start_dagster(cluster: Cluster, celery_yaml: Path, celery_config: dict) -> None:
    """The webserver and daemon on the control host, a Celery worker on each worker host."""
    workspace = str(REPO / "workspace.yaml")
    start(cluster, "webserver", "control", [str(BIN / "dagster-webserver"), "-w", workspace,
                                            "-h", cluster.service_address, "-p", str(UI_PORT)])
    start(cluster, "daemon", "control", [str(BIN / "dagster-daemon"), "run", "-w", workspace])
    # the worker command reads broker, backend and config_source from the YAML, but not include
    includes = [arg for module in celery_config["include"] for arg in ("-i", module)]
    for host in cluster.workers:
        start(cluster, host, host, [
            str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(celery_yaml),
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
    """Until the webserver has loaded the code location, the daemon beats and every worker answers."""
    sys.path.insert(0, str(REPO / "deploy"))
    from graph import Graph

    g = Graph(cluster.ui_url)
    _wait("dagster-webserver", g.location_loaded, timeout, cluster, "webserver")
    _wait("dagster-daemon", g.daemons_healthy, timeout, cluster, "daemon")
    for host in cluster.workers:
        _wait(f"the Celery worker on {host}", lambda h=host: h in celery_ping(cluster), timeout, cluster, host)


# ---------------------------------------------------------------------------------------
# up and down
# ---------------------------------------------------------------------------------------
def up(directory: str | os.PathLike[str], *, workers: int = 2, visibility_timeout: int = 3600,
       log=print) -> Cluster:
    """Install what is missing, then start every host and service; on any failure, tear down."""
    if os.geteuid() != 0:
        raise ClusterError("the cluster makes network namespaces: run it as root")
    ensure_packages(log)
    shared = Path(directory).resolve()
    if (shared / STATE).exists():
        raise ClusterError(f"a cluster already runs in {shared}; stop it with `make cluster-down`")
    closed = [str(p) for p in shared.parents if p.exists() and not p.stat().st_mode & 0o001]
    if closed:  # PostgreSQL and Redis run as their own users, below this folder
        raise ClusterError(f"{closed[0]} is closed to other users, so PostgreSQL could not reach {shared}; "
                           "choose a folder under one they may enter (CLUSTER_DIR=/tmp/gtzan-cluster)")
    shared.mkdir(parents=True, exist_ok=True)
    os.chmod(shared, 0o755)  # postgres and redis run as their own users below it
    shutil.rmtree(shared / "tmp", ignore_errors=True)  # the last run's sockets, if any
    (shared / "tmp").mkdir()
    secret = shared / "secret"  # PostgreSQL's and Redis's password, kept for the next `up`
    if not secret.exists():
        secret.write_text(secrets.token_hex(16))
        os.chmod(secret, 0o600)
    cluster = Cluster(dir=str(shared), index=free_index(), workers=[f"worker-{i + 1}" for i in range(workers)],
                      secret=secret.read_text().strip(), visibility_timeout=visibility_timeout, boot_id=_boot_id())
    cluster.save()
    try:
        log(f"hosts: control + {', '.join(cluster.workers)} (namespaces {cluster.prefix}-*)")
        make_hosts(cluster)
        log("PostgreSQL and Redis on the control host")
        start_postgres(cluster)
        start_redis(cluster)
        celery_yaml, celery_config = write_instance(cluster)
        log("dagster-webserver, dagster-daemon and the Celery workers")
        start_dagster(cluster, celery_yaml, celery_config)
        wait_ready(cluster)
    except BaseException:
        down(shared, log=lambda _m: None)
        raise
    log(f"ready: the UI is on {cluster.ui_url}; stores under {shared / 'data'}")
    return cluster


#: The servers stopped after the others (their clients), each with its fast-shutdown signal.
SERVICES = {"redis": signal.SIGTERM, "postgres": signal.SIGINT}


def down(directory: str | os.PathLike[str], *, purge: bool = False, log=print) -> None:
    """Stop every process group, any process left in the namespaces, delete the namespaces."""
    cluster = Cluster.load(directory)
    groups = our_groups(cluster)
    stop_groups([g for name, g in groups.items() if name not in SERVICES])
    for name, sig in SERVICES.items():
        if name in groups:
            stop_groups([groups[name]], first=sig)
    for ns in reversed(cluster.namespaces):
        kill_namespace(ns)
        _run("ip", "netns", "delete", ns, check=False)
    for link in cluster.root_links:
        if Path(f"/sys/class/net/{link}").exists():
            _run("ip", "link", "delete", link, check=False)
    left = [ns for ns in cluster.namespaces if Path(f"/run/netns/{ns}").exists()]
    if left:
        raise ClusterError(f"namespaces {left} could not be deleted")
    if purge:
        shutil.rmtree(cluster.shared, ignore_errors=True)
    else:
        (cluster.shared / STATE).unlink()
    log(f"stopped {len(cluster.groups)} process groups, deleted {len(cluster.namespaces)} namespaces")


def lose_host(cluster: Cluster, host: str) -> None:
    """Lose a worker host at once: SIGKILL its process group and delete its namespace."""
    pgid = our_groups(cluster)[host]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    ns = cluster.namespace(host)
    kill_namespace(ns)
    _run("ip", "netns", "delete", ns)
    _reap()
    cluster.namespaces.remove(ns)
    cluster.save()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/cluster.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "materialize"])
    parser.add_argument("--dir", default=str(REPO / ".cluster"), help="the shared folder (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="worker hosts (default: %(default)s)")
    parser.add_argument("--visibility-timeout", type=int, default=3600,
                        help="seconds before a lost worker's step goes to another worker (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=2, help="materialize: epoch cap per model (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="materialize: seeds per model (default: 0)")
    parser.add_argument("--clip-seconds", type=int, nargs="+", default=None,
                        help="materialize: clip lengths (default: all)")
    parser.add_argument("--models", nargs="+", default=None,
                        help="materialize: models to train (default: those of `make run`), or 'all'")
    parser.add_argument("--purge", action="store_true", help="down: also delete the folder and its stores")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(args.dir, workers=args.workers, visibility_timeout=args.visibility_timeout)
        elif args.command == "down":
            down(args.dir, purge=args.purge)
        elif args.command == "status":
            cluster = Cluster.load(args.dir)
            ours = our_groups(cluster)
            for name, pgid in cluster.groups.items():
                print(f"{name:<10} process group {pgid:<8} {'running' if name in ours and _alive(pgid) else 'stopped'}")
            print(f"UI: {cluster.ui_url}  workers answering: {sorted(celery_ping(cluster))}")
        else:
            sys.path.insert(0, str(REPO / "deploy"))
            from graph import Graph, materialize_default_graph

            cluster = Cluster.load(args.dir)
            models = args.models
            if models == ["all"]:
                from assets.partitions import PIPELINE_MODELS

                models = list(PIPELINE_MODELS)
            out = materialize_default_graph(Graph(cluster.ui_url), epochs=args.epochs, seeds=args.seeds,
                                            clip_seconds=args.clip_seconds, models=models)
            print(f"{len(out.runs)} runs succeeded; evaluation report: {out.report}")
    except ClusterError as exc:
        print(f"cluster: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
