"""The Delta index table on S3 (SeaweedFS of the session's fixture): commits, a retried task,
time travel, history and concurrent writers of other processes, as on a local folder."""

from __future__ import annotations

import multiprocessing
import uuid
from concurrent.futures import ProcessPoolExecutor

import polars as pl
import pytest
from test_lake import LINEAGE, shard_rows

from feature_store.engine.lake import IndexTable
from feature_store.engine.storage import open_storage


@pytest.fixture
def s3_table(s3_server, monkeypatch):
    for name, value in s3_server.env.items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    storage = open_storage(s3_server.env["GTZAN_STORE_URL"])
    uri = f"{s3_server.env['GTZAN_STORE_URL'].rstrip('/')}/lake-{uuid.uuid4().hex[:8]}"
    return uri, storage.storage_options()


def test_commits_retries_and_time_travel_on_s3(s3_table) -> None:
    uri, options = s3_table
    table = IndexTable(uri, storage_options=options)
    first = table.commit_shard(shard_rows(0), shard=0, task_id="task-0", lineage=LINEAGE)
    again = table.commit_shard(shard_rows(0), shard=0, task_id="task-0", lineage=LINEAGE)
    second = table.commit_shard(shard_rows(1), shard=1, task_id="task-1", lineage=LINEAGE)
    assert first.committed and not again.committed and second.committed
    fresh = IndexTable(uri, storage_options=options)
    got = fresh.scan().collect()
    assert got.height == 24 and got["clip_id"].n_unique() == 24
    want = pl.concat([shard_rows(0), shard_rows(1)]).sort("clip_id")
    assert got.sort("clip_id").select(want.columns).equals(want)
    assert fresh.scan(version=first.version).collect().height == 12
    assert [v.task_id for v in fresh.history()][-2:] == ["task-0", "task-1"]


def _commit_in_child(uri: str, options: dict, shard: int) -> bool:
    return IndexTable(uri, storage_options=options).commit_shard(
        shard_rows(shard), shard=shard, task_id=f"task-{shard % 3}", lineage=LINEAGE).committed


def test_concurrent_writers_on_s3_lose_no_row_and_add_none_twice(s3_table) -> None:
    """Six commits from three processes, two tries of each of three tasks: each task's rows once."""
    uri, options = s3_table
    IndexTable(uri, storage_options=options).commit_shard(shard_rows(9).head(0), shard=9, task_id="init",
                                                         lineage=LINEAGE)
    # an executor, not a Pool: a writer process that dies fails the test (BrokenProcessPool)
    # instead of leaving its task waiting forever
    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_commit_in_child, uri, options, s) for s in (0, 1, 2, 3, 4, 5)]
        done = [f.result(timeout=300) for f in futures]
    assert sum(done) == 3
    got = IndexTable(uri, storage_options=options).scan().collect()
    assert got.height == 36 and got["task_id"].value_counts()["count"].to_list() == [12, 12, 12]


def test_s3_data_files_carry_page_checksums_and_digest_names(s3_table) -> None:
    """Data files on S3 are the project writer's (page checksums, digest names), compacted the
    same way; a flipped byte in one is refused in one line."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from feature_store.engine.lake import files as lake_files
    from feature_store.integrity import IntegrityError

    uri, options = s3_table
    table = IndexTable(uri, storage_options=options)
    for s in range(3):
        table.commit_shard(shard_rows(s), shard=s, task_id=f"task-{s}", lineage=LINEAGE)
    want = table.scan().collect().sort("clip_id")
    before = table.files()
    assert all(lake_files._DATA_PATH.fullmatch(f.path) for f in before) and len(before) == 3 * 4
    table.compact()
    after = table.files()
    assert len(after) == want.select("label", "seed").n_unique()  # a file per label and split part
    assert all(lake_files._DATA_PATH.fullmatch(f.path) for f in after)
    assert table.scan().collect().sort("clip_id").equals(want)
    storage = table.storage
    blob = storage.get(after[0].path)
    with pq.ParquetFile(pa.BufferReader(blob), page_checksum_verification=True) as pf:
        assert pf.read().num_rows == after[0].rows  # checksums written: a reader verifies them
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 1
    storage.delete(after[0].path)
    storage.put_new(after[0].path, bytes(flipped))
    with pytest.raises(IntegrityError, match="does not match the digest in its name") as err:
        IndexTable(uri, storage_options=options).scan().collect()
    assert "\n" not in str(err.value) and uri in str(err.value)
