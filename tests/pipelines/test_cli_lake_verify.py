"""``gtzan features lake-verify [--repair]`` (pipelines/cli/features_lake_verify.py): a published
index table checked, a damaged and a deleted shard object named one line per shard with exit
code 1, rebuilt by ``--repair`` with the same arrays; on a local folder and on SeaweedFS's S3.
On the demo corpus, the timbre view at 5 s."""

from __future__ import annotations

import io
import re
import uuid
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import env_for, fails, ok, run

from feature_store.engine.sharded import read_clips
from feature_store.engine.storage import LocalStorage, open_storage
from feature_store.views import get_view

SHARDS = 3
PUBLISHED = re.compile(r"^timbre  5 s shard (\d): (\d+) rows?, object (\S+), version (\d+)$", re.M)
VERIFY = ["features", "lake-verify", "--view", "timbre", "--clip-seconds", "5"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 demo songs of 6 s, ingested."""
    data = tmp_path_factory.mktemp("cli-lake-verify") / "data"
    env = env_for(data, GTZAN_STORE_URL=None)  # type: ignore[arg-type]
    ok(["demo", "--songs-per-genre", "2", "--seconds", "6"], env)
    ok(["ingest"], env)
    return data


def rot(storage, key: str) -> None:
    """Flip one byte of a row's chunk of the object in place (on S3, keeping the sha256 it
    was put with): bit rot on the disk or the server."""
    import h5py

    data = bytearray(storage.get(key))
    with h5py.File(io.BytesIO(bytes(data)), "r") as h5:
        chunk = h5["timbre"].id.get_chunk_info(0)
    data[chunk.byte_offset + chunk.size // 2] ^= 0xFF
    if isinstance(storage, LocalStorage):
        Path(storage.uri(key)).write_bytes(bytes(data))
        return
    import obstore

    obstore.put(storage._store, key, bytes(data), attributes={"sha256": storage.head(key).sha256})


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_damaged_shards_are_named_then_repaired_with_the_same_arrays(demo: Path, backend: str,
                                                                      request: pytest.FixtureRequest) -> None:
    if backend == "local":
        env = env_for(demo, GTZAN_SHARDS=str(SHARDS), GTZAN_STORE_URL=None)  # type: ignore[arg-type]
    else:
        s3 = request.getfixturevalue("s3_env")
        env = env_for(demo, GTZAN_SHARDS=str(SHARDS), **{**s3, "GTZAN_STORE_URL": f"{s3['GTZAN_STORE_URL']}/"
                                                                              f"{uuid.uuid4().hex[:12]}"})
    out = ok(["features", "publish", "--view", "timbre", "--clip-seconds", "5", "--task-id", "t1"], env).stdout
    keys = {int(k): key for k, _, key, _ in PUBLISHED.findall(out)}
    assert sorted(keys) == [0, 1, 2], out
    storage = open_storage(str(demo / "store" / "objects") if backend == "local" else env["GTZAN_STORE_URL"],
                           environ={k: v for k, v in env.items() if v is not None})
    view = get_view("timbre")
    rows_before, before = read_clips(storage, view, clip_seconds=5)
    clean = ok(VERIFY, env).stdout
    assert re.fullmatch(r"timbre 5 s, version 3 of \S+: \d+ table files?, 3 objects, 20 rows checked: sound\n",
                        clean), clean
    # one byte of shard 0's object flipped, shard 2's object deleted
    rot(storage, keys[0])
    storage.delete(keys[2])
    r = fails(VERIFY, env, 1, r"1 index table of timbre damaged; `gtzan features lake-verify --repair`")
    lines = r.stdout.splitlines()
    assert re.fullmatch(r"timbre 5 s, version 3 of \S+: .*, 3 objects, \d+ rows checked: 2 shards damaged",
                        lines[0]), r.stdout
    assert len(lines) == 3, r.stdout  # one line per damaged shard
    assert lines[1].startswith(f"  shard 0: object {keys[0]} (") and " damaged (" in lines[1]
    assert re.fullmatch(rf"  shard 2: object {re.escape(keys[2])} \(\d+ rows\) missing", lines[2]), lines[2]
    fails([*VERIFY, "--repair", "--version", "3"], env, 2, r"--repair repairs the newest version")
    # --repair rebuilds both shards from the audio into new objects, one commit each
    fixed = ok([*VERIFY, "--repair"], env).stdout
    repaired = re.findall(r"^  repaired shard (\d): \d+ rows?, new object (\S+), version (\d+)$", fixed, re.M)
    assert [(k, v) for k, _, v in repaired] == [("0", "4"), ("2", "5")], fixed
    assert fixed.rstrip().endswith("now sound") and not {key for _, key, _ in repaired} & set(keys.values())
    assert "sound" in ok(VERIFY, env).stdout.splitlines()[0]
    rows_after, after = read_clips(storage, view, clip_seconds=5)
    assert rows_after["clip_id"].to_list() == rows_before["clip_id"].to_list()
    assert rows_after["xxh3_timbre"].to_list() == rows_before["xxh3_timbre"].to_list()
    for name in before.arrays:
        np.testing.assert_array_equal(after.arrays[name], before.arrays[name])
        assert after.arrays[name].tobytes() == before.arrays[name].tobytes()


def test_usage_errors_are_one_line(demo: Path, tmp_path: Path) -> None:
    env = env_for(demo, GTZAN_SHARDS=str(SHARDS), GTZAN_STORE_URL=None)  # type: ignore[arg-type]
    fails([*VERIFY, "--repair", "--version", "1"], env, 2, r"--repair repairs the newest version: leave out --version")
    fails(["features", "lake-verify", "--view", "timbre", "--clip-seconds", "1"], env, 1,
          r"no published timbre index at 1 s .*`gtzan features publish --view timbre --clip-seconds 1`")
    fails([*VERIFY, "--task-id", "a/b"], env, 2, r"--task-id must be 1 to 180")
    fails(["features", "lake-verify"], env_for(tmp_path / "empty", GTZAN_STORE_URL=None), 1,  # type: ignore[arg-type]
          r"no published mel index under")
    r = run(["features", "--help"], env)
    assert re.search(r"^\s+lake-verify\s+\S", r.stdout, re.M), r.stdout
    assert re.search(r"^\s+gtzan features lake-verify ", ok([*VERIFY, "--help"], env).stdout, re.M)
