"""Builds compact (feature_store/engine/lake/upkeep.py ``compact_small``, run by
``publish_shard``): a label partition of many small files becomes one, with the same rows, and
appends racing compactions from other processes lose no row and add none twice."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import polars as pl
from test_lake import LABELS, LINEAGE, shard_rows
from test_shards import CLIP, SHARDS, corpus, storage, today  # noqa: F401 (fixtures)
from toy_view import ToyView

from feature_store.engine.lake import IndexTable
from feature_store.engine.lake import upkeep
from feature_store.engine.sharded import index_table, publish_shard
from feature_store.errors import StoreError


def per_label(table: IndexTable) -> dict[int, int]:
    return pl.DataFrame({"label": [f.label for f in table.files()]})["label"].value_counts().sort("label").rows()


def settled_labels(table: IndexTable) -> set[int]:
    """The labels whose files are as a compaction leaves them: one per part of ``seed`` that
    the label's rows hold, each file of one part."""
    from feature_store.engine.lake import files as lake_files

    by: dict[int, list] = {}
    for f in table.files():
        by.setdefault(f.label, []).append(f)
    rows = table.scan().collect()
    return {k for k, fs in by.items() if lake_files.settled(fs, column="seed")
            and len(fs) == rows.filter(pl.col("label") == k)["seed"].n_unique()}


def test_a_partition_of_more_than_n_small_files_becomes_one(tmp_path: Path) -> None:
    table = IndexTable(tmp_path / "t")
    n = upkeep.COMPACT_FILES
    for s in range(n):
        table.commit_shard(shard_rows(s), shard=s, task_id=f"task-{s}", lineage=LINEAGE)
    assert table.compact_small() is None  # n files per label: not more than n
    assert per_label(table) == [(k, n) for k in range(LABELS)]
    table.commit_shard(shard_rows(n), shard=n, task_id=f"task-{n}", lineage=LINEAGE)
    before, digest = table.latest_version(), table.version_digest()
    version = table.compact_small(labels=[1])
    assert version == before + 1 and table.history()[-1].operation == "COMPACT"
    counts = dict(per_label(table))
    assert {k: counts[k] for k in (0, 2, 3)} == {0: n + 1, 2: n + 1, 3: n + 1}  # only the label asked for
    assert settled_labels(table) == {1} and 1 < counts[1] < n + 1  # a file per split part of label 1
    assert table.version_digest() == digest and table.scan().collect()["clip_id"].n_unique() == (n + 1) * 12
    assert table.compact_small(labels=[1]) is None
    # a large file is left as it is: only the small ones count and are rewritten
    assert table.compact_small(small_bytes=1) is None


def test_shard_publishes_compact_a_partition_with_the_same_rows(corpus, storage, monkeypatch):  # noqa: F811
    """With N = 1, a publish that leaves a label partition more than one small file, or one
    file of several split parts, compacts it: at the end every partition holds one file per
    split part, each compaction kept the rows of its commit."""
    store, index = today(corpus)
    monkeypatch.setattr(upkeep, "COMPACT_FILES", 1)
    done = [publish_shard(store, storage=storage, shard=k, shards=SHARDS, clip_seconds=CLIP,
                          audio_root=corpus / "audio", task_id=f"run-1.shard-{k}", lineage=LINEAGE, workers=1)
            for k in range(SHARDS)]
    assert any(d.compacted for d in done) and all(d.note == "" for d in done)
    table = index_table(storage, ToyView(), clip_seconds=CLIP)
    assert settled_labels(table) == {k for k, _ in per_label(table)}
    for d in done:
        if d.compacted is not None:
            assert d.compacted == d.version + 1 and table.history()[d.compacted].operation == "COMPACT"
            assert table.version_digest(d.compacted) == table.version_digest(d.version)
    assert table.scan().collect()["clip_id"].sort().to_list() == index["clip_id"].sort().to_list()


def _append_and_compact(uri: str, shards: list[int]) -> int:
    table = IndexTable(uri)
    compactions = 0
    for s in shards:
        table.commit_shard(shard_rows(s), shard=s, task_id=f"task-{s}", lineage=LINEAGE)
        try:
            compactions += table.compact_small(more_than=1) is not None
        except StoreError as exc:  # lost to the other compactions too often: left for the next
            assert "run it again" in str(exc)
    return compactions


def test_appends_racing_compactions_lose_no_row_and_add_none_twice(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    IndexTable(uri).commit_shard(shard_rows(99).head(0), shard=99, task_id="init", lineage=LINEAGE)
    jobs = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        compactions = sum(f.result(timeout=300) for f in [pool.submit(_append_and_compact, uri, j) for j in jobs])
    assert compactions >= 1
    table = IndexTable(uri)
    got = table.scan().collect()
    assert got.height == 12 * 12 and got.select("shard", "clip_id").n_unique() == got.height
    reference = IndexTable(tmp_path / "ref")
    for s in range(12):
        reference.commit_shard(shard_rows(s), shard=s, task_id=f"task-{s}", lineage=LINEAGE)
    assert table.version_digest() == reference.version_digest()


def test_a_compacted_label_is_one_file_per_split_part_and_a_query_reads_only_its_own(tmp_path: Path) -> None:
    table = IndexTable(tmp_path / "t")
    for s in range(3):
        table.commit_shard(shard_rows(s), shard=s, task_id=f"task-{s}", lineage=LINEAGE)
    every = table.scan().collect()
    version = table.compact()
    assert settled_labels(table) == set(range(LABELS))
    for label in range(LABELS):
        for part in every.filter(pl.col("label") == label)["seed"].unique().to_list():
            (only,) = table.files(labels=[label], scheme="seed", parts=[part])  # its part's file alone
            assert only.stats["seed"] == (part, part)
            want = every.filter((pl.col("label") == label) & (pl.col("seed") == part)).sort("clip_id")
            got = table.scan(labels=[label], scheme="seed", parts=[part]).collect().sort("clip_id")
            assert got.equals(want)
    assert table.version_digest(version) == table.version_digest(version - 1)
    assert table.compact() == version and table.compact_small(more_than=1) is None  # as compacted as it gets
