"""What a local user who is not root can reach of a running cluster, and what the cluster's
own credentials may do (``make test-distributed``).

:func:`collect` runs, as root, the checks that need the cluster's passwords (what the Redis
ACL user and the PostgreSQL role may do, which files hold a password, which processes run as
root), and starts this file as ``nobody`` (``setpriv``) for the others: reading every file of
the cluster's folder and every process's environment and command line, guessing the
services' passwords, calling the UI's GraphQL API without the password and the webserver's
port directly. ``nobody`` gets the passwords on its standard input only to tell whether it
read one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
GUESSES = ["", "gtzan", "postgres", "redis", "password", "secret"]
#: Commands the Celery user must not run (tried with its real password).
ADMIN_COMMANDS = [("CONFIG", "GET", "*"), ("FLUSHALL",), ("FLUSHDB",), ("DEBUG", "SLEEP", "0"), ("MODULE", "LIST"),
                  ("KEYS", "*"), ("ACL", "LIST"), ("SAVE",), ("MONITOR",), ("REPLICAOF", "NO", "ONE")]


# ---------------------------------------------------------------------------------------
# as nobody
# ---------------------------------------------------------------------------------------
def _read_files(args: dict) -> dict:
    """Every file of the cluster's folder and every process's environ and cmdline that this user
    can read; those that hold a password."""
    leaks, read, denied = [], 0, 0
    paths = [Path(p) for p in args["proc_files"]]
    for top, dirs, files in os.walk(args["root"], onerror=lambda _e: None):
        paths += [Path(top) / f for f in files]
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read(64 << 20)
        except OSError:
            denied += 1
            continue
        read += 1
        if any(s.encode() in data for s in args["secrets"]):
            leaks.append(str(path))
    return {"leaks": leaks, "read": read, "denied": denied}


def _guess_services(args: dict) -> dict:
    """Logins to PostgreSQL and Redis with guessed or no passwords that succeed (none should)."""
    import psycopg2
    import redis

    host, ok = args["host"], []
    for user in ("gtzan", "postgres"):
        for password in GUESSES:
            for db in ("dagster", "postgres"):
                with contextlib.suppress(psycopg2.Error):
                    psycopg2.connect(host=host, port=args["pg_port"], user=user, password=password, dbname=db,
                                     connect_timeout=3).close()
                    ok.append(f"postgres {user}/{password!r}/{db}")
    tries = [{}] + [{"username": u, "password": p} for u in ("default", "gtzan") for p in GUESSES if p]
    for creds in tries:
        with contextlib.suppress(redis.RedisError):
            redis.Redis(host=host, port=args["redis_port"], socket_timeout=3, **creds).get("celery")
            ok.append(f"redis {creds}")
    return {"logins": ok}


def _http(args: dict) -> dict:
    """The proxy's answer to GraphQL without and with a wrong password; the webserver's own port."""
    import base64

    out = {}
    body = json.dumps({"query": "{ version }"}).encode()
    for name, auth in (("none", None), ("wrong", "gtzan:guess")):
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
        req = urllib.request.Request(f"{args['ui_url']}/graphql", data=body, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                out[name] = resp.status
        except urllib.error.HTTPError as exc:
            out[name] = exc.code
    try:
        socket.create_connection((args["host"], args["web_port"]), timeout=5).close()
        out["webserver port"] = "connected"
    except OSError as exc:
        out["webserver port"] = type(exc).__name__
    out["s3 anonymous"] = _anonymous_s3(args["s3_bucket_url"])
    out["s3 port elsewhere"] = {}
    for addr in args["root_addresses"]:  # this namespace's own addresses: none of them is the S3 server's
        try:
            socket.create_connection((addr, args["s3_port"]), timeout=5).close()
            out["s3 port elsewhere"][addr] = "connected"
        except OSError as exc:
            out["s3 port elsewhere"][addr] = type(exc).__name__
    return out


def _anonymous_s3(bucket_url: str) -> dict[str, int | str]:
    """The HTTP status of unsigned requests to the bucket: a listing, a read, a write."""
    out = {}
    for name, method, path, body in (("list", "GET", "?list-type=2", None), ("get", "GET", "/store/x", None),
                                     ("put", "PUT", "/store/anonymous.bin", b"x")):
        req = urllib.request.Request(f"{bucket_url}{path}", data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                out[name] = resp.status
        except urllib.error.HTTPError as exc:
            out[name] = exc.code
        except OSError as exc:
            out[name] = type(exc).__name__
    return out


def _s3_round_trip(args: dict) -> dict:
    """As the service user on a worker host: a create-only put and a get through ``open_storage``
    with the cluster's variables, a second put of the key refused, unsigned requests refused."""
    import uuid

    sys.path.insert(0, args["repo"])
    from feature_store.engine.storage import ObjectExists, open_storage

    store = open_storage(args["env"]["GTZAN_STORE_URL"], environ=args["env"])
    key, data = f"probe/{uuid.uuid4().hex}.bin", os.urandom(3 << 20) + b"end"  # several 1 MiB chunks
    store.put_new(key, data)
    out = {"same bytes": store.get(key) == data, "listed": key in [o.key for o in store.list("probe")]}
    try:
        store.put_new(key, b"other")
        out["second put"] = "overwrote"
    except ObjectExists:
        out["second put"] = "ObjectExists"
    out["anonymous"] = _anonymous_s3(args["bucket_url"])
    store.delete(key)
    return out


PROBES = {"files": _read_files, "services": _guess_services, "http": _http, "s3": _s3_round_trip}

if __name__ == "__main__":
    print(json.dumps(PROBES[sys.argv[1]](json.loads(sys.stdin.read()))))


# ---------------------------------------------------------------------------------------
# as root
# ---------------------------------------------------------------------------------------
def as_nobody(cluster, probe: str, args: dict) -> dict:
    """Run ``probe`` of this file as ``nobody`` with the cluster's Python; its JSON answer."""
    env = {"PATH": "/usr/bin:/bin", **{k: v for k, v in cluster.env("control").items() if k == "PYTHONPATH"}}
    p = subprocess.run([*NOBODY, cluster.python, str(Path(__file__).resolve()), probe], input=json.dumps(args),
                       capture_output=True, text=True, cwd="/", env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)


def on_worker_host(cluster, probe: str, args: dict) -> dict:
    """Run ``probe`` of this file as the service user on a surviving worker host; its JSON answer."""
    host = next(h for h in cluster.workers if cluster.namespace(h) in cluster.namespaces)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cluster.shared / "home"),
           **{k: v for k, v in cluster.env("control").items() if k == "PYTHONPATH"}}
    cmd = ["ip", "netns", "exec", cluster.namespace(host), "setpriv", "--reuid=gtzan", "--regid=gtzan",
           "--clear-groups", "--", cluster.python, str(Path(__file__).resolve()), probe]
    p = subprocess.run(cmd, input=json.dumps(args), capture_output=True, text=True, cwd="/", env=env, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    return {"host": host, **json.loads(p.stdout)}


def s3_round_trip(cluster) -> dict:
    """:func:`_s3_round_trip` on a worker host, with the cluster's S3 variables (on its standard input)."""
    env = cluster.s3_env()
    return on_worker_host(cluster, "s3", {"repo": str(Path(__file__).resolve().parents[2]), "env": env,
                                          "bucket_url": f"{env['AWS_ENDPOINT_URL']}/{cluster.s3_state['bucket']}"})


def root_addresses() -> list[str]:
    """The IPv4 addresses of the root namespace (the machine's own and the cluster's links' root ends)."""
    p = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True)
    return sorted({line.split()[3].split("/")[0] for line in p.stdout.splitlines()})


def seaweed_listens(cluster) -> list[str]:
    """The local addresses on which SeaweedFS listens in the control host."""
    p = subprocess.run(["ip", "netns", "exec", cluster.namespace("control"), "ss", "-Hltnp"],
                       capture_output=True, text=True, check=True)
    return sorted(line.split()[3] for line in p.stdout.splitlines() if '(("weed",' in line)


def s3_environments(cluster) -> dict[str, list[str]]:
    """Which processes of the cluster's namespaces hold the S3 variables: ``all`` of them with this
    ``up``'s values, ``none``, or ``some``; each named ``user:server`` (the server by its process group)."""
    import pwd

    expected = cluster.s3_env()
    names = {pgid: name for name, pgid in cluster.groups.items()}
    out: dict[str, list[str]] = {"all": [], "none": [], "some": []}
    for ns in cluster.namespaces:
        for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
            with contextlib.suppress(OSError):
                raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                env = dict(item.decode(errors="replace").partition("=")[::2] for item in raw if b"=" in item)
                have = {k: env[k] for k in expected if k in env}
                kind = "all" if have == expected else "some" if have else "none"
                user = pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name
                out[kind].append(f"{user}:{names.get(os.getpgid(int(pid)), 'other')}")
    return {k: sorted(set(v)) for k, v in out.items()}


def files_holding_secrets(root: Path, secrets: list[str]) -> list[str]:
    """The files under ``root`` that hold one of ``secrets`` (read as root)."""
    out = []
    for top, _dirs, files in os.walk(root):
        for f in files:
            path = Path(top) / f
            with contextlib.suppress(OSError):
                if path.is_file() and any(s.encode() in path.read_bytes() for s in secrets):
                    out.append(str(path.relative_to(root)))
    return sorted(out)


def redis_refusals(cluster) -> dict[str, str]:
    """What Redis answers the Celery user for each admin command (the error's class)."""
    import redis

    r = redis.Redis(host=cluster.service_address, port=6379, username="gtzan", password=cluster.redis_password,
                    socket_timeout=5)
    out = {}
    for cmd in ADMIN_COMMANDS:
        try:
            r.execute_command(*cmd)
            out[" ".join(cmd)] = "allowed"
        except redis.RedisError as exc:
            out[" ".join(cmd)] = f"{type(exc).__name__}: {str(exc)[:80]}"
    return out


def postgres_privileges(cluster) -> dict:
    """The role's attributes, and what COPY ... TO PROGRAM and a connection to another database meet."""
    import psycopg2

    url = dict(host=cluster.service_address, port=5432, user="gtzan", password=cluster.pg_password, connect_timeout=5)
    out = {}
    with contextlib.closing(psycopg2.connect(dbname="dagster", **url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, "
                    "pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER'), "
                    "pg_has_role(current_user, 'pg_read_server_files', 'MEMBER') FROM pg_roles "
                    "WHERE rolname = current_user")
        out["attributes"] = list(cur.fetchone())
        cur.execute("SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = 'gtzan')")
        out["owns"] = [r[0] for r in cur.fetchall()]
        conn.rollback()
        try:
            cur.execute("COPY (SELECT 1) TO PROGRAM 'id > /tmp/gtzan-pwned'")
            out["copy to program"] = "allowed"
        except psycopg2.Error as exc:
            out["copy to program"] = type(exc).__name__
    try:
        psycopg2.connect(dbname="postgres", **url).close()
        out["other database"] = "connected"
    except psycopg2.OperationalError:
        out["other database"] = "refused"
    return out


def root_processes(cluster) -> list[str]:
    """Every process in the cluster's namespaces with a uid 0 (real, effective, saved or fs)."""
    out = []
    for ns in cluster.namespaces:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{pid}/status").read_text()
                uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
                if "0" in uids:
                    out.append(f"{ns} {pid} {Path(f'/proc/{pid}/cmdline').read_bytes()[:200]!r}")
    return out


def service_users(cluster) -> dict[str, set[str]]:
    """The user names of each namespace's processes."""
    import pwd

    out = {}
    for ns in cluster.namespaces:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        out[ns] = {pwd.getpwuid(os.stat(f"/proc/{p}").st_uid).pw_name for p in pids if Path(f"/proc/{p}").exists()}
    return out


def webserver_listens(cluster, port: int) -> list[str]:
    """The local addresses on which something listens on ``port`` in the control host."""
    p = subprocess.run(["ip", "netns", "exec", cluster.namespace("control"), "ss", "-Hltn", f"sport = :{port}"],
                       capture_output=True, text=True, check=True)
    return sorted(line.split()[3] for line in p.stdout.splitlines() if line.strip())


def files_args(cluster) -> dict:
    """What :func:`_read_files` reads (the cluster's folder, every process's environ and cmdline) and looks for."""
    proc_files = [str(p) for pid in Path("/proc").glob("[0-9]*") for p in (pid / "environ", pid / "cmdline")]
    return {"root": str(cluster.shared), "secrets": cluster.secrets, "proc_files": proc_files}


def collect(cluster) -> dict:
    """Everything the least-privilege tests assert, gathered while the cluster runs."""
    return {
        "cluster address": cluster.service_address,
        "files holding a password": files_holding_secrets(cluster.shared, cluster.secrets),
        "nobody reads": as_nobody(cluster, "files", files_args(cluster)),
        "nobody logs in": as_nobody(cluster, "services", {"host": cluster.service_address, "pg_port": 5432,
                                                          "redis_port": 6379}),
        "nobody calls": as_nobody(cluster, "http", {
            "ui_url": cluster.ui_url, "host": cluster.service_address, "web_port": 3001,
            "s3_bucket_url": f"{cluster.s3_state['endpoint']}/{cluster.s3_state['bucket']}",
            "s3_port": cluster.s3_state["ports"]["s3"], "root_addresses": root_addresses()}),
        "s3 round trip": s3_round_trip(cluster),
        "seaweedfs listens": seaweed_listens(cluster),
        "s3 environments": s3_environments(cluster),
        "redis refuses": redis_refusals(cluster),
        "postgres": postgres_privileges(cluster),
        "root processes": root_processes(cluster),
        "users": service_users(cluster),
        "webserver listens": webserver_listens(cluster, 3001),
    }


ERRORS = """query($id: ID!) { logsForRun(runId: $id) { __typename ... on EventConnection { events { __typename
  ... on ErrorEvent { error { message } } } } } }"""


def replay_issue_17(graph, base: Path) -> dict:
    """A run launched with the UI's password whose config points the audio at a root-only folder
    and the store at a folder of the caller's choice: how it ends and what it wrote."""
    private, loot = base / "private", base / "loot"
    private.mkdir(mode=0o700)
    (private / "blues.00000.wav").write_bytes(b"RIFF")
    loot.mkdir()
    os.chmod(loot, 0o777)
    config = {"resources": {"audio": {"config": {"path": str(private)}}, "features": {"config": {"root": str(loot)}}}}
    run_id = graph.launch("ingest_job", run_config=config)
    status = graph.wait([run_id], timeout=300)[run_id]
    events = graph.query(ERRORS, {"id": run_id})["logsForRun"]["events"]
    errors = [e["error"]["message"] for e in events if e.get("error")]
    return {"status": status, "wrote": sorted(os.listdir(loot)), "errors": errors}


def old_passwords_refused(cluster, old: dict[str, str]) -> dict[str, str]:
    """What PostgreSQL, Redis and the proxy answer a cluster brought up again to the last ``up``'s passwords."""
    import psycopg2
    import redis

    from graph import Graph, GraphError

    out = {}
    try:
        psycopg2.connect(host=cluster.service_address, port=5432, user="gtzan", password=old["pg_password"],
                         dbname="dagster", connect_timeout=5).close()
        out["postgres"] = "connected"
    except psycopg2.OperationalError:
        out["postgres"] = "refused"
    try:
        redis.Redis(host=cluster.service_address, port=6379, username="gtzan", password=old["redis_password"],
                    socket_timeout=5).ping()
        out["redis"] = "connected"
    except redis.AuthenticationError:
        out["redis"] = "refused"
    try:
        Graph(cluster.ui_url, auth=("gtzan", old["ui_password"])).query("{ version }")
        out["ui"] = "answered"
    except GraphError as exc:
        out["ui"] = str(exc)[:8]
    out["s3"] = _old_s3_keys(cluster, old["s3_access_key"], old["s3_secret_key"])
    return out


def _old_s3_keys(cluster, access_key: str, secret_key: str) -> str:
    """What the S3 server answers a signed request with the keys of the last ``up``."""
    from feature_store.engine.storage.s3 import S3Config, S3Storage
    from feature_store.errors import StoreError

    state = cluster.s3_state
    config = S3Config(endpoint=state["endpoint"], access_key_id=access_key, secret_access_key=secret_key,
                      allow_http=True)
    try:
        S3Storage(f"s3://{state['bucket']}/{state['prefix']}", config=config).get("any.bin")
        return "answered"
    except StoreError as exc:
        return "refused" if "refused" in str(exc) else str(exc)[:200]
