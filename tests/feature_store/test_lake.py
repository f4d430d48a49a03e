"""The index as a Delta Lake table (feature_store.engine.lake): atomic and idempotent shard
commits, concurrent writers, time travel, history, vacuum, digests and partition pruning."""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from feature_store.engine.lake import IndexTable, Lineage
from feature_store.engine.lake import files as lake_files
from feature_store.errors import ParameterError, StoreError
from feature_store.integrity import IntegrityError

LINEAGE = Lineage(params_hash="p1", code_version="c1", run_id="run-1")
LABELS = 4


def shard_rows(shard: int, n: int = 12, *, seed_part: str | None = None) -> pl.DataFrame:
    """``n`` index rows of one shard over :data:`LABELS` labels; digests span the uint64 range."""
    return pl.DataFrame({
        "song_id": [f"s{shard}.{i // 2}" for i in range(n)],
        "clip_id": [f"s{shard}.{i // 2}#05s#{i % 2:02d}" for i in range(n)],
        "genre": [f"g{i % LABELS}" for i in range(n)],
        "label": [i % LABELS for i in range(n)],
        "seed": [seed_part or ("train" if i % 3 else "test") for i in range(n)],
        "stratified": ["valid" if i % 2 else "train" for i in range(n)],
        "fault_filtered": ["excluded"] * n,
        "object_key": [f"shards/{shard:04d}-abc.h5"] * n,
        "object_row": list(range(n)),
        "xxh3_clips": pl.Series([2**64 - shard * 1000 - i if i % 2 else shard * 1000 + i for i in range(n)],
                                dtype=pl.UInt64),
    })


def commit(table: IndexTable, shard: int, **kw: object):
    return table.commit_shard(shard_rows(shard), shard=shard, task_id=f"task-{shard}", lineage=LINEAGE, **kw)


def test_commit_round_trips_rows_and_digests_past_2_63(tmp_path: Path) -> None:
    table = IndexTable(tmp_path / "t")
    result = commit(table, 0)
    assert (result.committed, result.rows, result.version) == (True, 12, 1)
    got = table.scan().collect().sort("clip_id")
    want = shard_rows(0).sort("clip_id")
    assert got.schema == pl.Schema(table.row_schema)
    assert got.select(want.columns).equals(want)
    assert got["xxh3_clips"].max() == 2**64 - 1 and (got["xxh3_clips"] >= 2**63).sum() == 6
    assert got["run_id"].unique().to_list() == ["run-1"] and got["shard"].unique().to_list() == [0]
    # stored bit-reinterpreted: the files hold int64 and the large digests are negative there
    stored = pl.concat(pl.from_arrow(pq.read_table(p)) for p in (tmp_path / "t").glob("label=*/*.parquet"))
    assert stored.schema["xxh3_clips"] == pl.Int64 and (stored["xxh3_clips"] < 0).sum() == 6


def test_a_retried_task_adds_its_rows_once(tmp_path: Path) -> None:
    table = IndexTable(tmp_path / "t")
    first = commit(table, 3)
    again = commit(table, 3)
    assert first.committed and not again.committed and again.rows == 0
    assert table.latest_version() == first.version
    assert table.scan().collect().height == 12
    # another task of the same shard (a new task id) with the same rows adds nothing either...
    other = table.commit_shard(shard_rows(3), shard=3, task_id="task-3-b", lineage=LINEAGE)
    assert not other.committed and other.note.startswith("already published") and "\n" not in other.note
    assert table.latest_version() == first.version
    # ...and with other rows it is refused in one line: those are replaced, never appended
    with pytest.raises(StoreError, match="replace_shard") as err:
        table.commit_shard(shard_rows(3, seed_part="train"), shard=3, task_id="task-3-c", lineage=LINEAGE)
    assert "\n" not in str(err.value) and table.scan().collect().height == 12


def test_an_empty_shard_is_committed_once(tmp_path: Path) -> None:
    table = IndexTable(tmp_path / "t")
    empty = shard_rows(0).head(0)
    first = table.commit_shard(empty, shard=0, task_id="task-0", lineage=LINEAGE)
    again = table.commit_shard(empty, shard=0, task_id="task-0", lineage=LINEAGE)
    assert (first.committed, first.rows, again.committed) == (True, 0, False)
    assert table.scan().collect().height == 0 and table.history()[-1].task_id == "task-0"


def test_a_try_racing_a_committed_try_of_its_task_adds_nothing(tmp_path: Path, monkeypatch) -> None:
    table = IndexTable(tmp_path / "t")
    commit(table, 0)
    stale = table._load()  # this try found no commit of task-1 here...
    assert stale.transaction_version("gtzan-shard-task:task-1") is None
    commit(IndexTable(tmp_path / "t"), 1)  # ...and another try of task-1 committed meanwhile
    first = [stale]
    real = IndexTable._load
    monkeypatch.setattr(IndexTable, "_load", lambda self, version=None, *, create=False:
                        first.pop() if first else real(self, version, create=create))
    result = commit(table, 1)
    # the library's conflict check refused the stale try's commit; the retry saw the task's id
    assert (result.committed, result.retries) == (False, 1)
    df = table.scan().collect()
    assert df.height == 24 and df.filter(pl.col("shard") == 1).height == 12
    # the losing try's files were deleted: every data file on disk is a committed one
    on_disk = {str(p.relative_to(tmp_path / "t")) for p in (tmp_path / "t").rglob("*.parquet")
               if "_delta_log" not in p.parts}
    assert on_disk == {f.path for f in table.files()}


def _writer(args: tuple[str, int, list[int]]) -> list[tuple[int, bool]]:
    uri, _, shards = args
    table = IndexTable(uri)
    return [(s, commit(table, s).committed) for s in shards]


def test_concurrent_commits_from_processes_keep_every_row_once(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    # four writers; writers 0 and 1 race on the same tasks (a task retried on another host)
    jobs = [(uri, 0, [0, 1, 2, 3]), (uri, 1, [0, 1, 2, 3]), (uri, 2, [4, 5, 6]), (uri, 3, [7, 8, 9])]
    # an executor ends its workers by telling them to stop, not by SIGTERM (which a process
    # started in the background may ignore), and a worker that dies fails the test
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_writer, jobs))
    committed = [s for r in results for s, ok in r if ok]
    assert sorted(committed) == list(range(10))  # each task committed by exactly one writer
    df = IndexTable(uri).scan().collect()
    assert df.height == 10 * 12
    assert df.select("shard", "clip_id").n_unique() == df.height
    assert sorted(df["shard"].unique().to_list()) == list(range(10))


def test_time_travel_by_version_and_as_of(tmp_path: Path) -> None:
    table = IndexTable(tmp_path / "t")
    v1, v2 = commit(table, 0).version, commit(table, 1).version
    assert table.scan(version=v1).collect().height == 12
    assert table.scan(version=v2).collect().height == 24
    assert table.scan(version=0).collect().height == 0  # the empty table's creation
    at_v1 = table.history()[v1].timestamp
    assert table.resolve(as_of=at_v1) == v1
    assert table.scan(as_of=at_v1.isoformat()).collect()["shard"].unique().to_list() == [0]
    assert table.resolve(as_of=datetime.now(UTC) + timedelta(days=1)) == v2


def test_history_lists_versions_rows_and_lineage(tmp_path: Path) -> None:
    table = IndexTable(tmp_path / "t")
    commit(table, 0)
    commit(table, 0)  # a retry: no version
    table.commit_shard(shard_rows(5, n=8), shard=5, task_id="task-5",
                       lineage=Lineage(params_hash="p1", code_version="c2", run_id="run-2"))
    hist = table.history()
    assert [h.version for h in hist] == [0, 1, 2]
    assert [(h.rows_added, h.total_rows) for h in hist] == [(0, 0), (12, 12), (8, 20)]
    assert [(h.run_id, h.task_id, h.code_version, h.shard) for h in hist[1:]] == [
        ("run-1", "task-0", "c1", 0), ("run-2", "task-5", "c2", 5)]
    assert hist[0].operation == "CREATE TABLE" and hist[1].operation == "WRITE"
    assert hist[0].timestamp <= hist[1].timestamp <= hist[2].timestamp
    table.compact()  # moves rows, adds none
    last = table.history()[-1]
    assert (last.operation, last.rows_added, last.total_rows, last.run_id) == ("COMPACT", 0, 20, None)


def test_vacuum_deletes_only_files_no_kept_version_references(tmp_path: Path) -> None:
    root = tmp_path / "t"
    table = IndexTable(root)
    commit(table, 0)
    commit(table, 1)
    before = {str(p.relative_to(root)) for p in root.rglob("*.parquet")}
    compacted = table.compact()  # a file per label and split part now; the small ones: by 1 and 2 only
    rows = table.scan().collect().sort("clip_id")
    # versions 2 and 3 kept: version 2 references every small file, so nothing goes
    kept = table.vacuum(retain_versions=2, retention_hours=0)
    assert kept.deleted == () and kept.kept_versions == (compacted - 1, compacted)
    for v in kept.kept_versions:
        assert table.scan(version=v).collect().height == 24
    assert table.scan(version=1).collect().height == 12
    dry = table.vacuum(retain_versions=1, retention_hours=0, dry_run=True)
    assert set(dry.deleted) == before and all((root / p).exists() for p in before)
    stray = root / "label=0" / f"part-{'0' * 32}-{'1' * 32}.parquet"  # written, never committed
    stray.write_bytes(b"not yet committed")
    os.utime(stray, (1e9, 1e9))  # however old
    report = table.vacuum(retain_versions=1, retention_hours=0)
    assert stray.exists()
    assert set(report.deleted) == before and report.kept_versions[-1] >= compacted
    assert not any((root / p).exists() for p in before)
    assert table.scan().collect().sort("clip_id").equals(rows)  # the kept version is whole
    with pytest.raises(StoreError, match="is gone"):
        table.scan(version=2).collect()
    # a long retention keeps every version of that age, whatever retain_versions says
    assert table.kept_versions(retain_versions=1, retention_hours=24) == [h.version for h in table.history()]


def test_referenced_object_keys_are_those_of_kept_versions(tmp_path: Path) -> None:
    table = IndexTable(tmp_path / "t")
    commit(table, 0)
    commit(table, 1)
    assert table.referenced_object_keys() == {"shards/0000-abc.h5", "shards/0001-abc.h5"}
    # only the version before shard 1 kept by count, none by age: shard 1's object is still
    # referenced by the newest version, which is always kept
    assert table.referenced_object_keys(retain_versions=1, retention_hours=0) == {"shards/0000-abc.h5",
                                                                                   "shards/0001-abc.h5"}


def test_a_selective_query_on_a_new_reader_reads_only_its_files(tmp_path: Path, monkeypatch) -> None:
    uri = tmp_path / "t"
    writer = IndexTable(uri)
    for s in range(5):
        commit(writer, s)
    writer.commit_shard(shard_rows(9, seed_part="train"), shard=9, task_id="task-9", lineage=LINEAGE)
    read: list[str] = []
    real = lake_files.read_file
    monkeypatch.setattr(lake_files, "read_file", lambda **kw: read.append(kw["f"].path) or real(**kw))
    reader = IndexTable(uri)  # a new reader: no state shared with the writer
    everything = reader.scan().collect()
    assert len(read) == 6 * LABELS
    read.clear()
    got = reader.scan(labels=[1], scheme="seed", parts=["test"]).collect()
    # shard 9's label-1 file holds only "train" rows: its statistics skip it
    assert len(read) == 5 and all(p.startswith("label=1/") for p in read)
    want = everything.filter(pl.col("label") == 1, pl.col("seed") == "test")
    assert got.height > 0 and got.sort("clip_id").equals(want.sort("clip_id"))


def test_version_digest_names_rows_not_files_or_runs(tmp_path: Path) -> None:
    a, b = IndexTable(tmp_path / "a"), IndexTable(tmp_path / "b")
    commit(a, 0)
    commit(a, 1)
    other = Lineage(params_hash="p1", code_version="c1", run_id="run-9")
    b.commit_shard(shard_rows(1), shard=1, task_id="x1", lineage=other)
    b.commit_shard(shard_rows(0), shard=0, task_id="x0", lineage=other)
    assert a.version_digest() == b.version_digest()
    assert a.version_digest(1) != a.version_digest(2)
    assert a.version_digest().startswith("sha256:") and len(a.version_digest()) == 71
    b.compact()
    assert a.version_digest() == b.version_digest()


def test_bad_versions_and_times_are_one_line_errors(tmp_path: Path) -> None:
    table = IndexTable(tmp_path / "t")
    with pytest.raises(StoreError, match="no index table"):
        table.scan()
    commit(table, 0)
    for bad in (7, -1, "1", True):
        with pytest.raises(StoreError, match="has versions 0 to 1") as err:
            table.scan(version=bad)
        assert "\n" not in str(err.value)
    with pytest.raises(StoreError, match="before the index table") as err:
        table.scan(as_of=datetime(2000, 1, 1, tzinfo=UTC))
    assert "\n" not in str(err.value)
    with pytest.raises(ParameterError, match="ISO 8601"):
        table.scan(as_of="yesterday")
    with pytest.raises(ParameterError, match="not both"):
        table.scan(version=1, as_of="2026-01-01T00:00:00Z")
    with pytest.raises(ParameterError, match="unknown split scheme"):
        table.scan(scheme="nope", parts=["train"])


def test_bad_rows_and_tasks_are_refused(tmp_path: Path) -> None:
    table = IndexTable(tmp_path / "t")
    rows = shard_rows(0)
    signed = rows.with_columns(pl.col("xxh3_clips").reinterpret(signed=True))
    for bad, match in [(signed, "columns and types"), (rows.drop("object_key"), "columns and types"),
                       (rows.with_columns(pl.lit(None, pl.String).alias("genre")), "nulls")]:
        with pytest.raises(ParameterError, match=match):
            table.commit_shard(bad, shard=0, task_id="t", lineage=LINEAGE)
    for kw, match in [({"shard": -1}, "shard"), ({"task_id": ""}, "task_id"), ({"task_id": "a\nb"}, "task_id")]:
        with pytest.raises(ParameterError, match=match):
            table.commit_shard(rows, **{"shard": 0, "task_id": "t", "lineage": LINEAGE, **kw})
    with pytest.raises(ParameterError, match="run_id"):
        Lineage(params_hash="p", code_version="c", run_id="")
    assert not table.exists()  # nothing was created by refused commits


def test_a_crafted_log_or_file_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "t"
    table = IndexTable(root)
    commit(table, 0)
    data = sorted(root.glob("label=*/*.parquet"))[0]
    original_bytes = data.read_bytes()
    for pos in (0, len(original_bytes) // 2, len(original_bytes) - 9):  # header, a page, the footer
        flipped = bytearray(original_bytes)
        flipped[pos] ^= 1
        data.write_bytes(bytes(flipped))
        with pytest.raises(IntegrityError, match="digest in its name"):
            table.scan().collect()
    data.write_bytes(original_bytes)
    assert table.scan().collect().height == 12
    with data.open("ab") as fh:  # the file no longer has the size its log recorded
        fh.write(b"x")
    with pytest.raises(IntegrityError, match="the log says"):
        table.scan().collect()
    log = root / "_delta_log" / "00000000000000000001.json"
    original = log.read_text()
    lines = [json.loads(x) for x in original.splitlines()]
    for action in lines:
        if "add" in action:  # the rows of one folder relabelled by the log
            action["add"]["partitionValues"]["label"] = str((int(action["add"]["partitionValues"]["label"]) + 1) % 4)
    log.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    with pytest.raises(StoreError, match="not the label of its folder"):
        IndexTable(root).scan().collect()
    lines = [json.loads(x) for x in original.splitlines()]
    for action in lines:
        if "add" in action:
            action["add"]["path"] = "../../outside.parquet"
    log.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    with pytest.raises(StoreError, match="not a path this table writes") as err:
        IndexTable(root).scan().collect()
    assert "\n" not in str(err.value)
