"""The sharded store through the command line (pipelines/cli/features_lake.py): ``gtzan features
publish`` then ``history``, ``lake-query`` by version and by time, a retried publish, and
``vacuum`` of an object no version references; on the demo corpus, the timbre view at 5 s."""

from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import polars as pl
import pytest
from cli_helpers import env_for, fails, ok

from feature_store.engine.sharded import read_clips
from feature_store.engine.shards import build_shard
from feature_store.engine.storage import LocalStorage
from feature_store.engine.store import ViewStore
from feature_store.views import get_view

SHARDS = 3
PUBLISHED = re.compile(r"^timbre  5 s shard (\d): (\d+) rows?, object (\S+), version (\d+)$", re.M)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """20 demo songs ingested, the timbre view published at 5 s in 3 shards (task id ``t1``)."""
    data = tmp_path_factory.mktemp("cli-lake") / "data"
    env = env_for(data, GTZAN_SHARDS=str(SHARDS), GTZAN_STORE_URL=None)  # type: ignore[arg-type]
    ok(["demo", "--songs-per-genre", "2", "--seconds", "6"], env)
    ok(["ingest"], env)
    out = ok(["features", "publish", "--view", "timbre", "--clip-seconds", "5", "--task-id", "t1"], env).stdout
    shards = {int(k): {"rows": int(n), "key": key, "version": int(v)} for k, n, key, v in PUBLISHED.findall(out)}
    return {"data": data, "env": env, "out": out, "shards": shards, "objects": data / "store" / "objects"}


def lake_query(env: dict, *args: str) -> pl.DataFrame:
    out = ok(["features", "lake-query", "--view", "timbre", "--clip-seconds", "5", "--format", "csv", *args],
             env).stdout
    return pl.read_csv(io.StringIO(out))


def h5_objects(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.h5"))


def test_publish_then_history_lists_each_shards_version(lake: dict) -> None:
    shards, env = lake["shards"], lake["env"]
    assert sorted(shards) == [0, 1, 2], lake["out"]
    assert [shards[k]["version"] for k in range(SHARDS)] == [1, 2, 3]
    assert sum(s["rows"] for s in shards.values()) == 20  # one 5 s clip per 6 s song
    assert h5_objects(lake["objects"]) == sorted(s["key"] for s in shards.values())
    versions = json.loads(ok(["features", "history", "--view", "timbre", "--clip-seconds", "5", "--json"],
                             env).stdout)
    assert [v["version"] for v in versions] == [0, 1, 2, 3]
    assert [v["task_id"] for v in versions[1:]] == [f"t1.shard-{k}" for k in range(SHARDS)]
    assert [v["rows_added"] for v in versions[1:]] == [shards[k]["rows"] for k in range(SHARDS)]
    assert versions[-1]["total_rows"] == 20 and versions[0]["total_rows"] == 0
    run_ids = {v["run_id"] for v in versions[1:]}
    assert len(run_ids) == 1 and run_ids.pop().startswith("cli-")
    view = get_view("timbre")
    assert {v["params_hash"] for v in versions[1:]} == {view.hash()}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", v["time"]) for v in versions)
    text = ok(["features", "history", "--view", "timbre"], env).stdout  # every published clip length
    assert re.search(r"^\s+3\s+\S+Z\s+WRITE\s+\d+\s+20\s+cli-\w+\s+t1\.shard-2$", text, re.M), text


def test_query_pins_a_version_by_number_or_time(lake: dict) -> None:
    env, shards = lake["env"], lake["shards"]
    first = lake_query(env, "--version", "1")
    assert first.height == shards[0]["rows"] and set(first["shard"]) == {0}
    assert set(first["object_key"]) == {shards[0]["key"]}
    newest = lake_query(env)
    assert newest.height == 20 and newest["song_id"].n_unique() == 20
    jazz = lake_query(env, "--genre", "jazz", "--split", "train,valid,test")
    assert jazz.height == 2 and set(jazz["genre"]) == {"jazz"}
    assert set(jazz["clip_id"]) == set(newest.filter(pl.col("genre") == "jazz")["clip_id"])
    test_part = lake_query(env, "--split", "test")
    assert 0 < test_part.height < 20 and set(test_part["seed"]) == {"test"}
    now = lake_query(env, "--as-of", "2100-01-01T00:00:00Z")
    assert now["clip_id"].to_list() == newest["clip_id"].to_list()
    counted = ok(["features", "lake-query", "--view", "timbre", "--clip-seconds", "5", "--version", "2", "--count"],
                 env).stdout
    assert f"version 2: {shards[0]['rows'] + shards[1]['rows']} clips" in counted


def test_bad_versions_and_times_are_one_line_errors(lake: dict) -> None:
    env = lake["env"]
    base = ["features", "lake-query", "--view", "timbre", "--clip-seconds", "5"]
    fails([*base, "--as-of", "2000-01-01T00:00:00Z"], env, 1, r"before the index table .* existed")
    fails([*base, "--as-of", "yesterday"], env, 2, r"'yesterday' is not an ISO 8601 time")
    fails([*base, "--version", "99"], env, 1, r"has versions 0 to 3, not 99")
    fails([*base, "--version", "1", "--as-of", "2100-01-01"], env, 2, r"--version or --as-of, not both")
    fails([*base, "--genre", "polka"], env, 2, r"unknown genre 'polka'")
    huge = "99999999999999999999"  # past int64: refused by the bounds, never an overflow
    fails([*base, "--version", huge], env, 2, r"'--version': 9+ is not in the range 0<=x<=9223372036854775807")
    fails([*base, "--limit", huge], env, 2, r"'--limit': 9+ is not in the range 0<=x<=")
    vacuum = ["features", "vacuum", "--view", "timbre", "--dry-run"]
    fails([*vacuum, "--retention-hours", huge], env, 2, r"'--retention-hours': 9+ is not in the range 0<=x<=")
    fails([*vacuum, "--retain-versions", "0"], env, 2, r"'--retain-versions': 0 is not in the range 1<=x<=")
    fails(["features", "publish", "--view", "timbre", "--shard", "3"], env, 2, r"--shard 3 is not in the range 0\.\.2")
    fails(["features", "publish", "--view", "timbre", "--task-id", "a/b"], env, 2, r"--task-id must be 1 to 180")
    fails(["features", "history", "--view", "timbre", "--clip-seconds", "1"], env, 1,
          r"no published timbre index at 1 s .*`gtzan features publish --view timbre --clip-seconds 1`")


def test_a_publish_run_again_adds_nothing(lake: dict) -> None:
    env = lake["env"]
    before = h5_objects(lake["objects"])
    args = ["features", "publish", "--view", "timbre", "--clip-seconds", "5"]
    out = ok([*args, "--task-id", "t1", "--shard", "1"], env).stdout
    n = lake["shards"][1]["rows"]
    assert out == f"timbre  5 s shard 1: published before ({n} of its {n} songs in the table); nothing added\n"
    # under another task id, or another shard count, the songs already in the table are not added twice
    again = ok([*args, "--task-id", "t2"], {**env, "GTZAN_SHARDS": "2"}).stdout
    assert again.count("published before") == 2 and "version" not in again, again
    assert h5_objects(lake["objects"]) == before
    versions = json.loads(ok(["features", "history", "--view", "timbre", "--clip-seconds", "5", "--json"],
                             env).stdout)
    assert len(versions) == 4 and versions[-1]["total_rows"] == 20
    assert lake_query(env)["clip_id"].n_unique() == 20


def test_replace_leaves_a_shard_whose_songs_are_unchanged(lake: dict) -> None:
    env = lake["env"]
    before = h5_objects(lake["objects"])
    out = ok(["features", "publish", "--view", "timbre", "--clip-seconds", "5", "--task-id", "t3", "--shard", "0",
              "--replace"], env).stdout
    assert out == "timbre  5 s shard 0: published before, in version 3 or earlier (task t1.shard-0); nothing added\n"
    assert h5_objects(lake["objects"]) == before
    versions = json.loads(ok(["features", "history", "--view", "timbre", "--clip-seconds", "5", "--json"],
                             env).stdout)
    assert len(versions) == 4


def test_a_task_that_committed_while_this_one_built_adds_nothing(lake: dict,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The race that the check before building cannot see (two runs of one --task-id building
    at once): the table's own idempotence keeps the second try's rows out, and its object goes."""
    from pipelines.cli import features_lake

    from feature_store.engine import sharded

    env = lake["env"]
    before = h5_objects(lake["objects"])
    # the table as the second try saw it, before the first try's commit
    monkeypatch.setattr(features_lake, "_songs_held", lambda *a, **k: ({1: (1, 0)}, set()))
    monkeypatch.setattr(sharded, "_published", lambda *a, **k: None)
    out = ok(["features", "publish", "--view", "timbre", "--clip-seconds", "5", "--task-id", "t1", "--shard", "1"],
             env).stdout
    assert out == "timbre  5 s shard 1: task t1.shard-1 committed before, in version 2; nothing added\n"
    assert h5_objects(lake["objects"]) == before
    assert lake_query(env).height == 20


def test_vacuum_deletes_an_unreferenced_object_and_keeps_referenced_ones(lake: dict) -> None:
    env, data, objects = lake["env"], lake["data"], lake["objects"]
    store, storage = ViewStore(data / "store", get_view("timbre")), LocalStorage(objects)
    # a task killed between its put and its commit: an object that no version references
    orphan = build_shard(store, shard=0, shards=SHARDS, clip_seconds=5, storage=storage,
                         audio_root=data / "demo", task_id="killed.shard-0", workers=1).object_key
    referenced = sorted(s["key"] for s in lake["shards"].values())
    assert h5_objects(objects) == sorted([*referenced, orphan])
    base = ["features", "vacuum", "--view", "timbre", "--clip-seconds", "5"]
    # a new object is kept, whatever the retention: a publish may be about to commit it
    assert "would delete 0 table files and 0 objects" in ok([*base, "--dry-run"], env).stdout
    fresh = ok([*base, "--retain-versions", "1", "--retention-hours", "0"], env).stdout
    assert "deleted 0 table files and 0 objects" in fresh
    assert h5_objects(objects) == sorted([*referenced, orphan])
    hours_ago = time.time() - 3 * 3600
    for key in [*referenced, orphan]:
        os.utime(objects / key, (hours_ago, hours_ago))
    dry = ok([*base, "--dry-run", "--retention-hours", "2"], env).stdout
    assert re.search(rf"^  would delete object {re.escape(orphan)}$", dry, re.M), dry
    assert "would delete 0 table files and 1 object" in dry and not any(k in dry for k in referenced)
    assert "would delete 0 table files and 0 objects" in ok([*base, "--dry-run", "--retention-hours", "4"],
                                                          env).stdout
    assert h5_objects(objects) == sorted([*referenced, orphan])
    done = ok([*base, "--retain-versions", "1", "--retention-hours", "0"], env).stdout
    assert re.search(rf"^  deleted object {re.escape(orphan)}$", done, re.M)
    assert "deleted 0 table files and 1 object" in done
    assert h5_objects(objects) == referenced
    # every version still reads its arrays from the objects that were kept
    for version in (1, 3):
        rows, arrays = read_clips(storage, store.view, clip_seconds=5, version=version)
        assert rows.height == arrays.arrays["timbre"].shape[0] > 0
    again = ok([*base], env).stdout
    assert "deleted 0 table files and 0 objects" in again


def test_compact_leaves_one_file_per_label_and_part_with_the_same_rows(lake: dict, tmp_path: Path) -> None:
    import shutil

    from feature_store.engine.sharded import index_table

    shutil.copytree(lake["data"], tmp_path / "data")  # the module's table stays as the other tests expect
    env = env_for(tmp_path / "data", GTZAN_SHARDS=str(SHARDS), GTZAN_STORE_URL=None)  # type: ignore[arg-type]
    table = index_table(LocalStorage(tmp_path / "data" / "store" / "objects"), get_view("timbre"), clip_seconds=5)
    before_rows, before_files = lake_query(env).sort("clip_id"), table.files()
    parts = before_rows.select("label", "seed").n_unique()  # a file per label and split part, once compacted
    assert len(before_files) > before_rows["label"].n_unique()  # a file per label per shard commit
    out = ok(["features", "compact", "--view", "timbre", "--clip-seconds", "5"], env).stdout
    version = table.latest_version()
    assert out == f"timbre 5 s: compacted {len(before_files)} table files into {parts} files, version {version}\n"
    assert len(table.files()) == parts
    assert lake_query(env).sort("clip_id").equals(before_rows)
    history = json.loads(ok(["features", "history", "--view", "timbre", "--clip-seconds", "5", "--json"],
                            env).stdout)
    assert history[-1]["version"] == version and history[-1]["total_rows"] == 20
    assert table.version_digest(version) == table.version_digest(version - 1)
    again = ok(["features", "compact", "--view", "timbre", "--clip-seconds", "5"], env).stdout
    assert again == f"timbre 5 s: nothing to compact ({parts} table files, one per label and split part)\n"
    assert table.latest_version() == version


def test_the_objects_live_under_the_store_root_unless_a_store_url_is_set(tmp_path: Path) -> None:
    from feature_store.engine.sharded import code_version
    from pipelines.cli.features_lake import store_storage
    from pipelines.settings import Settings

    local = Settings.from_env({"GTZAN_DATA_DIR": str(tmp_path)})
    assert local.objects_location == str(tmp_path / "store" / "objects")
    storage = store_storage(local)
    assert isinstance(storage, LocalStorage) and Path(storage.url) == tmp_path / "store" / "objects"
    assert Settings.from_env({"GTZAN_STORE_URL": "s3://gtzan/store"}).objects_location == "s3://gtzan/store"
    assert re.fullmatch(r"\S+\+timbre=\S+", code_version(get_view("timbre"))), code_version(get_view("timbre"))


@pytest.mark.parametrize("name", ["publish", "history", "lake-query", "vacuum", "compact"])
def test_each_command_is_in_the_features_group_with_an_example(name: str, tmp_path: Path) -> None:
    listed = ok(["features", "--help"], env_for(tmp_path)).stdout
    assert re.search(rf"^\s+{name}\s+\S", listed, re.M), listed
    r = ok(["features", name, "--help"], env_for(tmp_path))
    assert re.search(rf"^\s+gtzan features {name} ", r.stdout, re.M), r.stdout


def test_predict_names_the_table_version_a_model_trained_on(lake: dict, tmp_path: Path) -> None:
    """A model trained on a published version: ``gtzan predict`` says which version, in one line."""
    from training.table_train import train_from_table

    run = train_from_table(storage=LocalStorage(lake["objects"]), model_root=tmp_path / "models",
                           model="timbre_logreg", clip_seconds=5, version=2)
    song = next((lake["data"] / "demo").rglob("*.wav"))
    out = ok(["predict", "--run", str(run.run_dir), "--no-progress", str(song)], lake["env"]).stdout
    assert [x for x in out.splitlines() if x.startswith("features: ")] == [f"features: {run.table_line()}"]
    assert "version 2 (sha256:" in run.table_line()


def test_train_pins_a_table_version_by_number_or_time(lake: dict) -> None:
    """``gtzan train --version N`` (or ``--as-of``) trains on that version of the published table."""
    env = lake["env"]
    out = ok(["train", "--model", "timbre_logreg", "--clip-seconds", "5", "--version", "2", "--no-progress"], env)
    [line] = [x for x in out.stdout.splitlines() if x.strip().startswith("features: ")]
    assert "version 2 (sha256:" in line and str(lake["objects"]) in line
    metrics = sorted((lake["data"] / "models").rglob("metrics.json"))
    assert [json.loads(p.read_text())["table_version"] for p in metrics if "table-v2" in str(p)] == [2]
    fails(["train", "--model", "timbre_logreg", "--clip-seconds", "5", "--version", "9"], env, 1,
          r"has versions 0 to 3, not 9")
    fails(["train", "--model", "timbre_logreg", "--clip-seconds", "5", "--version", "1", "--as-of", "2026-01-01"],
          env, 2, "give --version or --as-of, not both")
    fails(["train", "--model", "timbre_logreg", "--clip-seconds", "5", "--as-of", "2001-01-01T00:00:00Z"], env, 1,
          r"is before the index table")
