"""The cluster's state, its hosts (network namespaces) and the processes it starts on them.

``deploy/cluster.py`` brings the cluster up and down with these, ``deploy/services.py`` starts
PostgreSQL, Redis and the authenticating proxy with them. Every process is started in its own
process group with SIGTERM and SIGINT at their defaults and umask 077, as an unprivileged user:
only the namespace set-up (``ip``) runs as root.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
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
#: cluster.json holds names, addresses, passwords and process ids: a few kB.
STATE_MAX_BYTES = 1 << 20
#: The system user of the webserver, the daemon, the runs and the Celery workers.
SERVICE_USER = "gtzan"
#: The proxy (on the service address, with basic auth) and the webserver (on the control
#: host's loopback only); PostgreSQL; Redis.
UI_PORT, WEB_PORT, PG_PORT, REDIS_PORT = 3000, 3001, 5432, 6379
#: SeaweedFS: its S3 port and the HTTP ports of its other parts; its gRPC ports start at 20000 + 4 *
#: the cluster's index (each names a Unix socket in /tmp, which every namespace shares, so each
#: cluster has its own, below the ephemeral ports ``make object-store`` takes); the store's bucket.
S3_PORT, SEAWEED_HTTP_PORTS, SEAWEED_GRPC_BASE = 8333, {"master": 9333, "volume": 8080, "filer": 8888}, 20000
S3_BUCKET, S3_PREFIX = "gtzan", "store"
#: Debian packages the cluster needs, by the program that shows they are installed.
PACKAGES = {"ip": "iproute2", "redis-server": "redis-server", "setpriv": "util-linux", "postgres": "postgresql",
            "nginx": "nginx", "useradd": "passwd"}


class ClusterError(RuntimeError):
    """The cluster could not be started or reached; the message says what and where to look."""


@dataclass
class Cluster:
    """Everything ``down`` needs, written (0600, root) as soon as it exists.

    The passwords are new at every ``up``: PostgreSQL's role, Redis's ACL user and the UI's basic-auth
    user (the proxy's), all ``gtzan``, and SeaweedFS's S3 access key and secret. ``object_store``: whether
    the hosts get GTZAN_STORE_URL and the AWS variables (``up --object-store``); the S3 server runs anyway.
    """

    dir: str
    index: int
    workers: list[str]
    namespaces: list[str] = field(default_factory=list)
    root_links: list[str] = field(default_factory=list)
    groups: dict[str, int] = field(default_factory=dict)  # server name -> process group id
    started: dict[str, int] = field(default_factory=dict)  # server name -> its leader's start time
    boot_id: str = ""
    pg_password: str = ""
    redis_password: str = ""
    ui_password: str = ""
    visibility_timeout: int = 3600
    s3_access_key: str = ""
    s3_secret_key: str = ""
    object_store: bool = False
    shards: int = 0  # GTZAN_SHARDS of every host (0: the settings' default)
    python: str = sys.executable  # the interpreter of every Python process (:func:`service_python`)

    @property
    def prefix(self) -> str:
        return f"gz{self.index}"

    @property
    def service_address(self) -> str:
        return f"10.214.{self.index}.1"

    @property
    def ui_url(self) -> str:
        """The proxy in front of the UI and its GraphQL API (basic auth: :attr:`ui_auth`)."""
        return f"http://{self.service_address}:{UI_PORT}"

    @property
    def ui_auth(self) -> tuple[str, str]:
        return SERVICE_USER, self.ui_password

    @property
    def shared(self) -> Path:
        """The folder every host shares: stores, Dagster home, logs."""
        return Path(self.dir)

    @property
    def credentials_file(self) -> Path:
        """The UI's user and password (0600, root)."""
        return self.shared / "ui-credentials"

    @property
    def secrets(self) -> list[str]:
        return [s for s in (self.pg_password, self.redis_password, self.ui_password, self.s3_secret_key) if s]

    @property
    def object_store_dir(self) -> Path:
        """SeaweedFS's folder (the service user's, 0700): ``data``, ``logs``, ``run`` (its identities)."""
        return self.shared / "object-store"

    @property
    def s3_env_file(self) -> Path:  # export lines for GTZAN_STORE_URL and the AWS variables (0600, root)
        return self.shared / "s3-env"

    @property
    def s3_state(self) -> dict:
        """Where SeaweedFS listens, in the form of deploy/object_store.py's state."""
        ports = {**SEAWEED_HTTP_PORTS, "s3": S3_PORT}
        base = SEAWEED_GRPC_BASE + 4 * self.index
        ports.update({f"{part}.grpc": base + i for i, part in enumerate(("master", "volume", "filer", "s3"))})
        return {"pgid": self.groups.get("seaweedfs", 0), "host": self.service_address, "ports": ports,
                "bucket": S3_BUCKET, "prefix": S3_PREFIX, "endpoint": f"http://{self.service_address}:{S3_PORT}"}

    def s3_env(self) -> dict[str, str]:
        """GTZAN_STORE_URL and the AWS variables of the cluster's S3 server, with this ``up``'s keys."""
        from object_store import env_values

        return env_values(self.s3_state, self.s3_access_key, self.s3_secret_key)

    def namespace(self, host: str) -> str:
        return f"{self.prefix}-ctl" if host == "control" else f"{self.prefix}-{host.replace('worker-', 'w')}"

    def env(self, host: str) -> dict[str, str]:
        """The environment of every process on ``host``."""
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("GTZAN_", "DAGSTER_", "AWS_"))}
        a, user = self.service_address, SERVICE_USER
        return {
            **keep,
            "HOME": str(self.shared / "home"),  # the service user's caches (Keras, numba, matplotlib)
            "DAGSTER_HOME": str(self.shared / "dagster-home"),
            "GTZAN_EXECUTOR": "celery",
            "GTZAN_DATA_DIR": str(self.shared / "data"),
            "GTZAN_BROKER_URL": f"redis://{user}:{self.redis_password}@{a}:{REDIS_PORT}/0",
            "GTZAN_RESULT_BACKEND": f"redis://{user}:{self.redis_password}@{a}:{REDIS_PORT}/1",
            "GTZAN_POSTGRES_URL": f"postgresql+psycopg2://{user}:{self.pg_password}@{a}:{PG_PORT}/dagster",
            "GTZAN_HOST_NAME": host,
            "GTZAN_CELERY_VISIBILITY_TIMEOUT": str(self.visibility_timeout),
            "GTZAN_WORKERS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
            # Dagster's code servers put their sockets in temporary folders: keep them in ours
            "TMPDIR": str(self.shared / "tmp"),
            **({} if self.python == sys.executable else {"PYTHONPATH": str(Path(self.python).parents[1] / "extra")}),
            "PATH": os.pathsep.join(dict.fromkeys([str(Path(self.python).parent), str(BIN),
                                                   keep.get("PATH", "/usr/bin:/bin")])),
            **(self.s3_env() if self.object_store else {}), **({"GTZAN_SHARDS": str(self.shards)} if self.shards else {}),
        }

    def graph(self):
        """A GraphQL client of the UI, through the proxy, with the UI's password."""
        sys.path.insert(0, str(REPO / "deploy"))
        from graph import Graph

        return Graph(self.ui_url, auth=self.ui_auth)

    def save(self) -> None:
        write_private(self.shared / STATE, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Cluster:
        path = Path(directory) / STATE
        if not path.is_file():
            raise ClusterError(f"no cluster in {directory} (no {STATE}); start one with `make cluster`")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in _read_state(path).items() if k in known})


def _read_state(path: Path) -> dict:
    """The cluster's state file, refused in one line unless it is ours, private and small: it
    names the processes that `down` signals as root."""
    from feature_store.integrity import IntegrityError, read_bounded

    st = path.lstat()
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise ClusterError(f"{path} is not a private file of this user (mode {st.st_mode & 0o777:o}, uid "
                           f"{st.st_uid}): refusing to act on it")
    try:
        state = json.loads(read_bounded(path, limit=STATE_MAX_BYTES, what="cluster state file"))
    except (IntegrityError, ValueError) as exc:
        raise ClusterError(f"{path} cannot be read ({str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict):
        raise ClusterError(f"{path} does not hold a JSON object")
    return state


def write_private(path: Path, text: str, *, owner: str | None = None, group: str | None = None,
                  mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` atomically, never readable by others at any moment."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if owner or group:
        shutil.chown(tmp, owner, group)
    os.chmod(tmp, mode)
    tmp.replace(path)


# ---------------------------------------------------------------------------------------
# packages and commands
# ---------------------------------------------------------------------------------------
def run(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
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
        run("apt-get", "update", "-q", env=env)
        run("apt-get", "install", "-y", "-q", "--no-install-recommends", *missing, env=env)
    finally:
        if ours:
            policy.unlink(missing_ok=True)


def ensure_service_user() -> None:
    """The cluster's system user (no login, no home of its own), made once."""
    if run("getent", "passwd", SERVICE_USER, check=False).returncode != 0:
        run("useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
            "--shell", "/usr/sbin/nologin", SERVICE_USER)


def open_to_others(path: Path) -> bool:
    """Whether a user other than root reaches ``path``: every folder above it searchable, it readable."""
    real = Path(os.path.realpath(path))
    return all(p.stat().st_mode & 0o001 for p in real.parents) and bool(real.stat().st_mode & 0o004)


def service_python(shared: Path) -> Path:
    """A Python that the service users may run, with this environment's packages.

    This interpreter when they reach it. Otherwise (a pyenv build under root's closed home, say)
    a virtual environment in ``shared/python`` of the system's Python of the same version,
    whose site-packages are this environment's: its ``sys.executable``, which Dagster's code
    servers and run workers are started with, is then one they may run too.
    """
    if open_to_others(Path(sys.executable)):
        return Path(sys.executable)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = Path("/usr/bin") / version
    if not system.exists() or not open_to_others(system):
        raise ClusterError(f"{sys.executable} is closed to other users and there is no {system}: "
                           f"install {version} (apt-get) or make the environment with a Python they may run")
    import sysconfig

    venv = shared / "python"
    shutil.rmtree(venv, ignore_errors=True)
    (venv / "bin").mkdir(parents=True)
    (venv / "lib" / version).mkdir(parents=True)
    (venv / "lib" / version / "site-packages").symlink_to(sysconfig.get_paths()["purelib"])
    (venv / "bin" / "python").symlink_to(system)
    (venv / "pyvenv.cfg").write_text(f"home = {system.parent}\ninclude-system-site-packages = false\n")
    # redis-py imports async_timeout below Python 3.11.3 (Debian 12 has 3.11.2): the stdlib's same timeout
    (venv / "extra").mkdir()
    (venv / "extra" / "async_timeout.py").write_text("from asyncio import timeout  # noqa: F401\n")
    # the entry points that processes start by name (dagster-celery starts `celery`), with a #! of this Python
    shebang = f"#!{BIN / 'python'}"
    for script in BIN.iterdir():
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = script.read_text() if script.is_file() and not script.is_symlink() else ""
            if text.startswith(shebang + "\n") or text.startswith(shebang + "3\n"):
                copy = venv / "bin" / script.name
                copy.write_text(f"#!{venv / 'bin' / 'python'}\n" + text.split("\n", 1)[1])
                os.chmod(copy, 0o755)
    for p in (venv, venv / "bin", venv / "lib", venv / "lib" / version, venv / "pyvenv.cfg", venv / "extra",
              venv / "extra" / "async_timeout.py"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return venv / "bin" / "python"


# ---------------------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------------------
def server_preexec() -> None:
    """SIGTERM and SIGINT back to their defaults (a server started from a background process
    may inherit them ignored), and umask 077 (every file a server writes is its own): the
    ``preexec_fn`` of every process started here."""
    from feature_store.procs import default_signals

    default_signals()
    os.umask(0o077)


#: The old name of :func:`server_preexec` (benchmarks/bench_distributed.py starts its servers with it).
default_signals = server_preexec


def as_user(user: str) -> list[str]:
    """The argv prefix that runs a command as ``user`` (its own group, no other)."""
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--"]


#: The servers this process started (the group leaders), by pid.
_CHILDREN: dict[int, subprocess.Popen] = {}


def start(cluster: Cluster, name: str, host: str, cmd: list[str], *, user: str = SERVICE_USER,
          env: dict[str, str] | None = None) -> int:
    """Start ``cmd`` on ``host`` as ``user`` in its own process group; record and return the group id.

    ``env``: its environment (default: :meth:`Cluster.env` of ``host``).
    """
    argv = ["ip", "netns", "exec", cluster.namespace(host), *as_user(user)]
    env = cluster.env(host) if env is None else env
    if user != SERVICE_USER:  # the S3 keys are the service user's alone
        env = {k: v for k, v in env.items() if k not in cluster.s3_env()}
    logs = cluster.shared / "logs"
    logs.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(logs / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as out:
        proc = subprocess.Popen(
            argv + cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=server_preexec,
        )
    _CHILDREN[proc.pid] = proc
    cluster.groups[name] = proc.pid  # a new session: its group id is its pid
    cluster.started[name] = _start_time(proc.pid) or 0
    cluster.save()
    return proc.pid


def boot_id() -> str:
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
    if cluster.boot_id != boot_id():
        return {}
    out = {}
    for name, pgid in cluster.groups.items():
        started = _start_time(pgid)
        if started is None or started == cluster.started.get(name):
            out[name] = pgid
    return out


def alive(pgid: int) -> bool:
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
        while any(alive(g) for g in pgids) and time.monotonic() < deadline:
            reap()
            time.sleep(0.1)
        if not any(alive(g) for g in pgids):
            return


def reap() -> None:
    """Collect the servers this process started that have exited, so that their groups disappear.

    Only those: a ``waitpid(-1)`` would also take the exit status of the caller's other children.
    """
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            del _CHILDREN[pid]


def wait_for(what: str, probe, timeout: float, cluster: Cluster, log_name: str) -> None:
    """Until ``probe()`` is true; ClusterError with the end of the server's log if it is not in time."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        pgid = cluster.groups.get(log_name)
        if pgid is not None and not alive(pgid):
            break
        try:
            if probe():
                return
        except Exception as exc:  # noqa: BLE001 - any failure of the probe means "not yet"
            last = exc
        time.sleep(0.5)
    tail = (cluster.shared / "logs" / f"{log_name}.log").read_text(errors="replace")[-3000:]
    raise ClusterError(f"{what} did not come up in {timeout:.0f} s ({last}); log {log_name}.log ends:\n{tail}")


# ---------------------------------------------------------------------------------------
# namespaces
# ---------------------------------------------------------------------------------------
def namespace_pids(ns: str) -> list[int]:
    p = run("ip", "netns", "pids", ns, check=False)
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
        reap()
        time.sleep(0.1)
    raise ClusterError(f"processes {namespace_pids(ns)} are still in namespace {ns}")


def _link(cluster: Cluster, ns_a: str | None, if_a: str, addr_a: str, ns_b: str, if_b: str, addr_b: str) -> None:
    """A veth pair ``if_a`` (in ``ns_a``, None: the root namespace) -- ``if_b`` (in ``ns_b``)."""
    side_a = ["name", if_a] + ([] if ns_a is None else ["netns", ns_a])
    run("ip", "link", "add", *side_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
    if ns_a is None:
        cluster.root_links.append(if_a)
        cluster.save()
    for ns, ifname, addr in ((ns_a, if_a, addr_a), (ns_b, if_b, addr_b)):
        pre = ["ip"] if ns is None else ["ip", "-n", ns]
        run(*pre, "addr", "add", addr, "dev", ifname)
        run(*pre, "link", "set", ifname, "up")


def make_hosts(cluster: Cluster) -> None:
    """The control host's namespace and one per worker, joined by point-to-point veth pairs.

    The service address lives on the control host's loopback; the root namespace and each
    worker reach it through their link, and nothing else is routed.
    """
    k, svc = cluster.index, cluster.service_address
    ctl = cluster.namespace("control")
    for host in ["control", *cluster.workers]:
        ns = cluster.namespace(host)
        run("ip", "netns", "add", ns)
        cluster.namespaces.append(ns)
        cluster.save()
        run("ip", "-n", ns, "link", "set", "lo", "up")
    run("ip", "-n", ctl, "addr", "add", f"{svc}/32", "dev", "lo")
    _link(cluster, None, f"{cluster.prefix}-root", f"10.215.{k}.1/30", ctl, "eth-root", f"10.215.{k}.2/30")
    run("ip", "route", "add", f"{svc}/32", "via", f"10.215.{k}.2", "dev", f"{cluster.prefix}-root")
    for i, host in enumerate(cluster.workers):
        ns, a = cluster.namespace(host), 4 * i
        _link(cluster, ctl, f"eth-{host}", f"10.216.{k}.{a + 1}/30", ns, "eth0", f"10.216.{k}.{a + 2}/30")
        run("ip", "-n", ns, "route", "add", f"{svc}/32", "via", f"10.216.{k}.{a + 1}")


def free_index() -> int:
    """The first cluster index whose namespaces and addresses are unused on this machine."""
    used = run("ip", "netns", "list").stdout + run("ip", "-br", "addr").stdout
    for k in range(1, 250):
        if f"gz{k}-" not in used and f"10.215.{k}." not in used:
            return k
    raise ClusterError("no free cluster index (gz1..gz249 all in use)")
