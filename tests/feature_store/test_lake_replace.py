"""A shard's rows replaced in one commit, and a shard published once however many builds race
for it (feature_store/engine/lake/writes.py), on a local folder and on SeaweedFS's S3."""

from __future__ import annotations

import multiprocessing
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import polars as pl
import pytest
from test_lake import LINEAGE, shard_rows

from feature_store.engine.lake import IndexTable
from feature_store.engine.storage import open_storage


@pytest.fixture(params=["local", "s3"])
def where(request, tmp_path: Path, monkeypatch) -> tuple[str, dict | None]:
    """A new table's URI and storage options, on each backend."""
    if request.param == "local":
        return str(tmp_path / "t"), None
    server = request.getfixturevalue("s3_server")
    for name, value in server.env.items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    url = server.env["GTZAN_STORE_URL"].rstrip("/")
    return f"{url}/lake-{uuid.uuid4().hex[:8]}", open_storage(url).storage_options()


def rebuilt(shard: int, n: int = 12) -> pl.DataFrame:
    """Another build of ``shard`` with other songs: other clips in a new object."""
    rows = shard_rows(shard, n, seed_part="train")
    return rows.with_columns(pl.col("song_id") + "-new", pl.col("clip_id") + "-new",
                             pl.lit(f"shards/{shard:04d}-new.h5").alias("object_key"))


def test_replace_swaps_a_shards_rows_in_one_commit(where) -> None:
    uri, options = where
    table = IndexTable(uri, storage_options=options)
    table.commit_shard(shard_rows(0), shard=0, task_id="task-0", lineage=LINEAGE)
    before = table.commit_shard(shard_rows(1), shard=1, task_id="task-1", lineage=LINEAGE).version
    done = table.replace_shard(rebuilt(0), shard=0, task_id="task-0-r", lineage=LINEAGE)
    assert (done.committed, done.rows, done.removed, done.version) == (True, 12, 12, before + 1)
    fresh = IndexTable(uri, storage_options=options)
    got = fresh.scan().collect()
    assert got.height == 24 and got["clip_id"].n_unique() == 24
    mine = got.filter(pl.col("shard") == 0).sort("clip_id")
    want = rebuilt(0).sort("clip_id")
    assert mine.select(want.columns).equals(want)
    assert got.filter(pl.col("shard") == 1).sort("clip_id").select(want.columns).equals(shard_rows(1).sort("clip_id"))
    # time travel: the version before still reads the old rows, from the old object
    old = fresh.scan(version=before).collect().filter(pl.col("shard") == 0)
    assert old.height == 12 and old["object_key"].unique().to_list() == ["shards/0000-abc.h5"]
    last = fresh.history()[-1]
    assert (last.version, last.operation, last.rows_added, last.rows_removed, last.total_rows, last.task_id) == (
        before + 1, "REPLACE", 12, 12, 24, "task-0-r")
    # a retried replace adds nothing; nor does another task's replace by the same rows
    again = table.replace_shard(rebuilt(0), shard=0, task_id="task-0-r", lineage=LINEAGE)
    other = table.replace_shard(rebuilt(0), shard=0, task_id="task-0-s", lineage=LINEAGE)
    assert not again.committed and not other.committed and other.note.startswith("already published")
    assert fresh.latest_version() == before + 1


def test_a_replace_after_compaction_keeps_the_other_shards_rows(where) -> None:
    uri, options = where
    table = IndexTable(uri, storage_options=options)
    for s in range(3):
        table.commit_shard(shard_rows(s), shard=s, task_id=f"task-{s}", lineage=LINEAGE)
    table.compact()  # a file per label and split part, each holding rows of all three shards
    done = table.replace_shard(rebuilt(1, n=6), shard=1, task_id="task-1-r", lineage=LINEAGE)
    assert (done.committed, done.removed) == (True, 12)
    got = table.scan().collect()
    assert got.height == 30 and got["clip_id"].n_unique() == 30
    assert sorted(got.filter(pl.col("shard") == 1)["clip_id"]) == sorted(rebuilt(1, n=6)["clip_id"])
    for s in (0, 2):
        assert sorted(got.filter(pl.col("shard") == s)["clip_id"]) == sorted(shard_rows(s)["clip_id"])
    assert table.history()[-1].total_rows == 30


def test_a_build_that_lost_the_race_for_its_shard_adds_nothing(tmp_path: Path, monkeypatch) -> None:
    """Two builds of shard 2 (other task ids, other objects) read the table before either
    committed: the second's commit conflicts on the shard's state, and on its retry it finds
    the shard published."""
    uri = tmp_path / "t"
    table = IndexTable(uri)
    table.commit_shard(shard_rows(0), shard=0, task_id="task-0", lineage=LINEAGE)
    stale = table._load()  # the losing build read this version...
    other_object = shard_rows(2).with_columns(pl.lit("shards/0002-other.h5").alias("object_key"))
    IndexTable(uri).commit_shard(other_object, shard=2, task_id="run-b.shard-2", lineage=LINEAGE)  # ...the winner
    first = [stale]
    real = IndexTable._load
    monkeypatch.setattr(IndexTable, "_load", lambda self, version=None, *, create=False:
                        first.pop() if first else real(self, version, create=create))
    lost = table.commit_shard(shard_rows(2), shard=2, task_id="run-a.shard-2", lineage=LINEAGE)
    assert (lost.committed, lost.retries) == (False, 1) and lost.note.startswith("already published")
    got = table.scan().collect()
    assert got.height == 24 and got.filter(pl.col("shard") == 2)["object_key"].unique().to_list() == [
        "shards/0002-other.h5"]
    on_disk = {str(p.relative_to(uri)) for p in uri.rglob("*.parquet") if "_delta_log" not in p.parts}
    assert on_disk == {f.path for f in table.files()}  # the loser's files were deleted


def _race(uri: str, options: dict | None, shard: int, task_id: str, replace: bool, barrier) -> bool:
    rows = shard_rows(shard) if not replace else rebuilt(shard)
    rows = rows.with_columns(pl.lit(f"shards/{task_id}.h5").alias("object_key"))  # each build its object
    table = IndexTable(uri, storage_options=options)
    barrier.wait(timeout=120)
    commit = table.replace_shard if replace else table.commit_shard
    return commit(rows, shard=shard, task_id=task_id, lineage=LINEAGE).committed


def test_builds_racing_from_processes_publish_each_shard_once(where) -> None:
    """Shard 3 built twice at once under other task ids, and shard 0 replaced twice at once:
    each clip once in the newest version, one commit per shard."""
    uri, options = where
    table = IndexTable(uri, storage_options=options)
    table.commit_shard(shard_rows(0), shard=0, task_id="task-0", lineage=LINEAGE)
    jobs = [(3, "a3", False), (3, "b3", False), (0, "a0", True), (0, "b0", True)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(len(jobs), mp_context=ctx) as pool:
        barrier = manager.Barrier(len(jobs))
        futures = [pool.submit(_race, uri, options, s, t, r, barrier) for s, t, r in jobs]
        won = [f.result(timeout=300) for f in futures]
    assert [won[0] + won[1], won[2] + won[3]] == [1, 1]
    got = IndexTable(uri, storage_options=options).scan().collect()
    assert got.height == 24 and got["clip_id"].n_unique() == 24
    assert got.group_by("shard").agg(pl.col("task_id").n_unique())["task_id"].to_list() == [1, 1]
    assert sorted(got.filter(pl.col("shard") == 0)["clip_id"]) == sorted(rebuilt(0)["clip_id"])
