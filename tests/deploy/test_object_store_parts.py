"""The parts of deploy/object_store.py that ``make cluster`` reuses for its own SeaweedFS."""

import os
import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "deploy"))

import object_store as osd  # noqa: E402


def test_ports_are_distinct_and_credentials_new():
    ports = osd.choose_ports("127.0.0.1")
    assert set(ports) == {*osd.PARTS, *(f"{p}.grpc" for p in osd.PARTS)} and len(set(ports.values())) == 8
    (k1, s1), (k2, s2) = osd.new_credentials(), osd.new_credentials()
    assert k1 != k2 and s1 != s2 and len(s1) >= 40 and k1.startswith("GZ")
    state = {"bucket": "gtzan", "prefix": "store", "endpoint": "http://10.214.3.1:8333"}
    assert osd.env_values(state, k1, s1)["AWS_SECRET_ACCESS_KEY"] == s1
    assert f"export AWS_ACCESS_KEY_ID={k1}\n" in osd.env_lines(state, k1, s1)


def test_sockets_of_the_servers_user_are_claimed_and_removed_others_refused():
    ports = {f"{p}.grpc": osd.free_port("127.0.0.1") for p in osd.PARTS}
    master = osd.grpc_sockets(ports)[0]
    try:
        master.write_text("not a socket")
        with pytest.raises(osd.ObjectStoreError, match="is not a socket of the server's user: refused"):
            osd.claim_sockets(ports)
        master.unlink()
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(master))  # a stale socket of this user's
        with pytest.raises(osd.ObjectStoreError, match="not a socket of the server's user"):
            osd.claim_sockets(ports, uid=os.getuid() + 1)
        osd.remove_sockets(ports, uid=os.getuid() + 1)  # another user's: kept
        assert master.is_socket()
        osd.claim_sockets(ports)
        assert not master.exists()
    finally:
        master.unlink(missing_ok=True)
