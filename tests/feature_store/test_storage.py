"""The storage interface on both backends: a local folder and SeaweedFS's S3 (deploy/object_store.py)."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import server_down, server_up
from object_store import group_members, grpc_sockets

from feature_store.engine.storage import LocalStorage, ObjectExists, ObjectNotFound, ObjectTooLarge, open_storage
from feature_store.engine.storage.s3 import S3Config, S3Storage
from feature_store.errors import ParameterError, StoreError

BLOB_BYTES = 12 << 20  # a .keras-sized file: past obstore's 5 MB multipart threshold
BAD_KEYS = ["", "/abs", "a/../b", "..", "a//b", "a/", "./a", "a\x00b", "a\nb", "a\tb", "a\\b", ".gtzan-put-x/y",
            "k" * 1025, 7]


def s3_config(server) -> S3Config:
    return S3Config.from_env(server.env)


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    """A fresh, empty storage of each backend (on S3: a new prefix of the session's bucket)."""
    if request.param == "local":
        return LocalStorage(tmp_path / "objects")
    server = request.getfixturevalue("s3_server")
    return S3Storage(f"s3://{server.state['bucket']}/test-{uuid.uuid4().hex[:12]}", config=s3_config(server))


@pytest.fixture(scope="module")
def store_files(tmp_path_factory) -> dict[str, Path]:
    """Every kind of file the store writes, real: a view's HDF5 file and index.parquet, a JSON record
    (a generation's manifest), a cache .npz, and a .keras-sized binary file."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from toy_view import ClipToyView

    from feature_store import ingest
    from feature_store.demo import write_demo_corpus
    from feature_store.engine.store import ViewStore

    root = tmp_path_factory.mktemp("store-files")
    write_demo_corpus(root / "audio", songs_per_genre=1, duration=6.0)
    ingest(root / "audio", root / "store")
    store = ViewStore(root / "store", ClipToyView())
    store.build(audio_root=root / "audio", clip_seconds=[1], workers=1)
    gen = store.generation(1)
    blob = root / "model.keras"
    blob.write_bytes(np.random.default_rng(0).bytes(BLOB_BYTES))
    return {"h5": gen / "cliptoy.h5", "index": gen / "index.parquet", "json": gen / "manifest.json",
            "npz": next((root / "store" / "cache").rglob("*.npz")), "keras": blob}


@pytest.mark.parametrize("kind", ["h5", "index", "json", "npz", "keras"])
def test_every_kind_of_store_file_round_trips_byte_for_byte(storage, store_files, kind, tmp_path):
    data = store_files[kind].read_bytes()
    key = f"views/toy/{store_files[kind].name}"
    info = storage.put_new(key, store_files[kind])  # from the file, as a writer publishes it
    assert info.size == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    head = storage.head(key)
    assert head.size == len(data)  # not aws-chunked framed: the stored object is the bytes sent
    back = storage.get(key)
    assert back == data and hashlib.sha256(back).hexdigest() == info.sha256
    if isinstance(storage, S3Storage):
        assert head.sha256 == info.sha256 and head.etag
    # and it still reads as what it is
    out = tmp_path / store_files[kind].name
    out.write_bytes(back)
    if kind == "h5":
        import h5py

        with h5py.File(out, "r") as f, h5py.File(store_files[kind], "r") as g:
            assert sorted(f) == sorted(g) and all(np.array_equal(f[k][()], g[k][()]) for k in g)
    elif kind == "index":
        from feature_store.integrity import read_parquet

        assert read_parquet(out).equals(read_parquet(store_files[kind]))
    elif kind == "json":
        from feature_store.integrity import read_json

        assert read_json(out) == read_json(store_files[kind])
    elif kind == "npz":
        from feature_store.integrity import read_npz

        a, b = read_npz(out), read_npz(store_files[kind])
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_bytes_and_file_objects_round_trip_too(storage):
    data = np.random.default_rng(1).bytes(3 << 20)
    storage.put_new("a/bytes.bin", data)
    storage.put_new("a/file.bin", io.BytesIO(data))
    storage.put_new("a/empty.bin", b"")
    assert storage.get("a/bytes.bin") == data and storage.get("a/file.bin") == data
    assert storage.get("a/empty.bin") == b"" and storage.head("a/empty.bin").size == 0


def test_a_create_only_put_never_overwrites(storage):
    storage.put_new("shard/0001.h5", b"first")
    with pytest.raises(ObjectExists, match=r"'shard/0001.h5' already exists; it was not overwritten"):
        storage.put_new("shard/0001.h5", b"second")
    assert storage.get("shard/0001.h5") == b"first"


def test_of_concurrent_create_only_puts_of_one_key_exactly_one_wins(storage):
    n = 6
    barrier = threading.Barrier(n)
    won, lost, errors = [], [], []

    def put(i: int) -> None:
        payload = bytes([i]) * (1 << 20)
        barrier.wait()
        try:
            storage.put_new("race/object.bin", payload)
            won.append(payload)
        except ObjectExists:
            lost.append(i)
        except Exception as exc:  # noqa: BLE001 - any other outcome fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(won) == 1 and len(lost) == n - 1
    assert storage.get("race/object.bin") == won[0]
    assert [o.key for o in storage.list("race")] == ["race/object.bin"]  # no temporary file shows


def test_listings_and_heads_give_when_an_object_was_written(storage):
    from datetime import UTC, datetime, timedelta

    start = datetime.now(UTC)
    storage.put_new("t/a", b"x")
    end = datetime.now(UTC)
    listed = storage.list("t")[0].last_modified
    assert listed is not None and listed.tzinfo is not None
    # S3 gives whole seconds, and a server's clock may be a little off ours
    assert start - timedelta(minutes=5) <= listed <= end + timedelta(minutes=5)
    assert abs(storage.head("t/a").last_modified - listed) <= timedelta(seconds=1)


def test_get_refuses_an_object_larger_than_max_bytes(storage):
    storage.put_new("big.bin", b"x" * 1000)
    with pytest.raises(ObjectTooLarge, match=r"is 1000 bytes, more than the 999 this reader allows: refused unread"):
        storage.get("big.bin", max_bytes=999)
    assert storage.get("big.bin", max_bytes=1000) == b"x" * 1000


def test_s3_get_refuses_before_reading_the_body(s3_server, monkeypatch):
    import obstore

    store = S3Storage(f"s3://{s3_server.state['bucket']}/unread", config=s3_config(s3_server))
    store.put_new("big.bin", b"y" * 4096)
    real_get, bodies = obstore.get, []

    class Unread:
        def __init__(self, result):
            self.meta, self.attributes, self._result = result.meta, result.attributes, result

        def stream(self, *a, **kw):
            bodies.append(True)
            return self._result.stream(*a, **kw)

    monkeypatch.setattr(obstore, "get", lambda *a, **kw: Unread(real_get(*a, **kw)))
    with pytest.raises(ObjectTooLarge):
        store.get("big.bin", max_bytes=4095)
    assert bodies == []
    assert store.get("big.bin", max_bytes=4096) == b"y" * 4096 and bodies == [True]


def test_s3_get_checks_the_sha256_stored_with_the_object(s3_server):
    import obstore

    from feature_store.integrity import IntegrityError

    store = S3Storage(f"s3://{s3_server.state['bucket']}/tamper", config=s3_config(s3_server))
    info = store.put_new("rows.h5", b"the real rows")
    # another client replaces the bytes behind the store's back, keeping the recorded digest
    obstore.put(store._store, "rows.h5", b"the fake rows", attributes={"sha256": info.sha256})
    with pytest.raises(IntegrityError, match="do not match the sha256 stored with it"):
        store.get("rows.h5")


def test_local_get_refuses_a_huge_file_by_its_size_and_never_follows_a_symlink(tmp_path):
    storage = LocalStorage(tmp_path / "objects")
    storage.put_new("small", b"ok")
    with open(tmp_path / "objects" / "huge", "wb") as f:  # sparse: 3 GiB claimed, nothing to read
        f.truncate(3 << 30)
    with pytest.raises(ObjectTooLarge, match="more than the 2147483648"):
        storage.get("huge")
    secret = tmp_path / "secret"
    secret.write_bytes(b"not the store's")
    os.symlink(secret, tmp_path / "objects" / "link")
    with pytest.raises(StoreError, match="is a symlink"):
        storage.get("link")
    os.mkfifo(tmp_path / "objects" / "fifo")
    with pytest.raises(StoreError, match="not a regular file"):
        storage.get("fifo")
    assert [o.key for o in storage.list()] == ["huge", "small"]


def test_local_keys_and_their_prefixes_stay_apart(tmp_path):
    storage = LocalStorage(tmp_path / "objects")
    storage.put_new("a/1", b"x")
    with pytest.raises(StoreError, match="would be under an object"):
        storage.put_new("a/1/2", b"y")
    with pytest.raises(StoreError, match="is a prefix of other objects"):
        storage.put_new("a", b"z")
    assert [o.key for o in storage.list()] == ["a/1"]


def test_get_ranges_returns_the_bytes_of_each_range_in_one_call(storage):
    data = np.random.default_rng(2).bytes(7 << 20)
    storage.put_new("rows.h5", data)
    ranges = [(0, 10), (5 << 20, 4096), (123, 0), (len(data) - 7, 7), (1 << 20, 1)]
    assert storage.get_ranges("rows.h5", ranges) == [data[o:o + n] for o, n in ranges]
    assert storage.get_ranges("rows.h5", []) == []
    with pytest.raises(ParameterError, match=r"ends past its 7340032 bytes"):
        storage.get_ranges("rows.h5", [(len(data) - 1, 2)])
    with pytest.raises(ParameterError, match="non-negative integers"):
        storage.get_ranges("rows.h5", [(-1, 2)])
    with pytest.raises(ParameterError, match="more than the 100 allowed"):
        storage.get_ranges("rows.h5", [(0, 60), (100, 60)], max_bytes=100)


def test_get_start_gives_the_first_bytes_and_the_size_of_large_and_small_objects(storage):
    big, small = np.random.default_rng(4).bytes(200_000), b"tiny"
    storage.put_new("start/big.h5", big)
    storage.put_new("start/small.h5", small)
    data, info = storage.get_start("start/big.h5", length=65536)
    assert data == big[:65536] and info.size == len(big) and info.key == "start/big.h5"
    data, info = storage.get_start("start/small.h5", length=65536)
    assert data == small and info.size == 4
    from feature_store.engine.storage import ObjectNotFound

    with pytest.raises(ObjectNotFound):
        storage.get_start("start/none.h5", length=10)


def test_get_ranges_of_a_caller_that_knows_the_size_asks_no_head_and_still_fails_past_the_end(storage,
                                                                                               monkeypatch):
    data = np.random.default_rng(3).bytes(1 << 20)
    storage.put_new("sized.h5", data)
    monkeypatch.setattr(storage, "head", lambda key: pytest.fail("a head for a size the caller gave"))
    assert storage.get_ranges("sized.h5", [(7, 9), (1000, 24)], size=len(data)) == [data[7:16], data[1000:1024]]
    # a caller told a wrong size gets an error for a range past the real end, never fewer bytes
    with pytest.raises((ParameterError, StoreError)) as err:
        storage.get_ranges("sized.h5", [(len(data) - 4, 8)], size=len(data) + 100)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("key", BAD_KEYS, ids=range(len(BAD_KEYS)))
def test_invalid_keys_are_refused_naming_the_key(storage, key):
    shown = repr(key)[:20] if isinstance(key, str) and key else ""
    for call in (lambda: storage.put_new(key, b"x"), lambda: storage.get(key), lambda: storage.head(key),
                 lambda: storage.delete(key), lambda: storage.get_ranges(key, [(0, 1)])):
        with pytest.raises(ParameterError) as exc:
            call()
        assert shown[:-1] in str(exc.value) and "\n" not in str(exc.value)


def test_missing_objects_list_and_delete(storage):
    with pytest.raises(ObjectNotFound, match="no object 'nothing/here'") as exc:
        storage.get("nothing/here")
    assert isinstance(exc.value, FileNotFoundError)
    with pytest.raises(ObjectNotFound):
        storage.head("nothing/here")
    for key in ("a/1", "a/2", "ab/3", "b/c/4"):
        storage.put_new(key, key.encode())
    assert [o.key for o in storage.list()] == ["a/1", "a/2", "ab/3", "b/c/4"]
    assert [(o.key, o.size) for o in storage.list("a")] == [("a/1", 3), ("a/2", 3)]  # whole segments only
    assert [o.key for o in storage.list("b")] == ["b/c/4"] and storage.list("zzz") == []
    assert storage.list("a/1") == [] and [o.key for o in storage.list("b/c")] == ["b/c/4"]  # prefix/... only
    storage.delete("a/1")
    storage.delete("a/1")  # a missing key is no error, as on S3
    assert [o.key for o in storage.list("a")] == ["a/2"]
    storage.put_new("a/1", b"again")  # a deleted key may be created again
    assert storage.get("a/1") == b"again"
    with pytest.raises(ObjectNotFound):
        storage.get("b/c")  # a prefix is no object


def test_polars_reads_an_object_through_storage_options(storage, store_files):
    storage.put_new("t/index.parquet", store_files["index"])
    got = pl.read_parquet(storage.uri("t/index.parquet"), storage_options=storage.storage_options() or None)
    assert got.equals(pl.read_parquet(store_files["index"]))


def test_anonymous_and_wrongly_signed_requests_are_refused(s3_server):
    endpoint, bucket = s3_server.state["endpoint"], s3_server.state["bucket"]
    store = S3Storage(f"s3://{bucket}/anon", config=s3_config(s3_server))
    store.put_new("kept.bin", b"secret bytes")
    for method, path, body in (("GET", "/anon/kept.bin", None), ("PUT", "/anon/new.bin", b"x"),
                               ("GET", "?list-type=2", None), ("DELETE", "/anon/kept.bin", None)):
        req = urllib.request.Request(f"{endpoint}/{bucket}{path}", data=body, method=method)
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=10)
        assert exc.value.code == 403, (method, path)
    wrong = S3Config(endpoint=endpoint, access_key_id=s3_server.env["AWS_ACCESS_KEY_ID"],
                     secret_access_key="not-the-secret", allow_http=True)
    with pytest.raises(StoreError, match="access to 'kept.bin' refused"):
        S3Storage(f"s3://{bucket}/anon", config=wrong).get("kept.bin")
    assert store.get("kept.bin") == b"secret bytes" and [o.key for o in store.list()] == ["kept.bin"]


def test_open_storage_and_the_s3_configuration(tmp_path, s3_server):
    assert isinstance(open_storage(tmp_path), LocalStorage)
    s3 = open_storage("s3://gtzan/some/prefix/", environ=s3_server.env)
    assert isinstance(s3, S3Storage) and s3.url == "s3://gtzan/some/prefix"
    assert s3.uri("k/x.h5") == "s3://gtzan/some/prefix/k/x.h5"
    opts = s3.storage_options()
    assert opts["aws_endpoint_url"] == s3_server.env["AWS_ENDPOINT_URL"] and opts["aws_allow_http"] == "true"
    with pytest.raises(ParameterError, match="a folder or s3://bucket/prefix"):
        open_storage("gs://bucket/x")
    with pytest.raises(ParameterError, match="not an S3 bucket name"):
        open_storage("s3://B!/x", environ={})
    with pytest.raises(ParameterError, match="set AWS_ALLOW_HTTP=true"):
        open_storage("s3://gtzan/x", environ={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    env = {**s3_server.env, "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:1"}  # the S3-specific variable wins
    assert S3Config.from_env(env).endpoint == "http://127.0.0.1:1"


def test_the_store_url_setting():
    from pipelines.settings import Settings

    assert Settings.from_env({}).store_url is None and Settings.from_env({}).store_location == "data/store"
    s = Settings.from_env({"GTZAN_STORE_URL": "s3://gtzan/store/"})
    assert s.store_location == "s3://gtzan/store" and s.env()["GTZAN_STORE_URL"] == "s3://gtzan/store"
    with pytest.raises(ParameterError, match="GTZAN_STORE_URL: an S3 location must be s3://bucket/prefix"):
        Settings.from_env({"GTZAN_STORE_URL": "/some/folder"})


def _listening(pids: list[int]) -> list[str]:
    """``address:port`` of every TCP socket the processes ``pids`` listen on."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd) if fd.is_symlink() else ""
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # LISTEN
                host, port = f[1].split(":")
                addr = ".".join(str(int(host[i:i + 2], 16)) for i in (6, 4, 2, 0)) if len(host) == 8 else host
                found.append(f"{addr}:{int(port, 16)}")
    return found


def test_the_server_listens_on_loopback_only_keeps_its_secrets_and_down_leaves_nothing(tmp_path):
    server = server_up(tmp_path / "os")
    try:
        members = group_members(server.pgid)
        listening = _listening(members)
        assert len(listening) >= 8 and all(a.startswith("127.0.0.1:") for a in listening), listening
        assert f"127.0.0.1:{server.state['ports']['s3']}" in listening
        for path, mode in (("env", 0o600), ("run", 0o700), ("run/s3.json", 0o600), ("state.json", 0o600), ("", 0o700)):
            assert stat.S_IMODE(os.stat(server.folder / path).st_mode) == mode, path
        secret = server.env["AWS_SECRET_ACCESS_KEY"]
        assert len(secret) >= 30 and secret in (server.folder / "run" / "s3.json").read_text()
        assert server.env["GTZAN_STORE_URL"] == "s3://gtzan/store"
        assert secret not in (server.folder / "logs" / "weed.out").read_text(errors="replace")
        assert "-master.telemetry=false" in Path(f"/proc/{server.pgid}/cmdline").read_text().split("\0")
    finally:
        server_down(server)
    assert group_members(server.pgid) == []
    assert not any((server.folder / p).exists() for p in ("env", "state.json", "run"))
    assert not any(p.exists() for p in grpc_sockets(server.state["ports"]))
