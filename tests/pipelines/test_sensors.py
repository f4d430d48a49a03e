"""The audio-folder sensor, evaluated through build_sensor_context.

Its cursor is a digest of the folder's listing (paths, mtimes, sizes) with the file count, the
folder and the catalog's mtime; which files changed is said by comparing the folder with the
catalog in the store, written here by the real catalog scan (what the ingest run writes).
"""

import json
import os
import time

import dagster as dg

from feature_store import catalog as fs_catalog
from feature_store.datasets import gtzan
from pipelines.sensors import CURSOR_VERSION, Catalog, audio_folder_sensor, diff_catalog, list_audio


def tick(resources: dict, cursor: str | None = None, instance=None) -> dg.SensorResult:
    ctx = dg.build_sensor_context(cursor=cursor, resources=resources, instance=instance)
    return audio_folder_sensor(ctx)


def ingest(resources: dict, corpus) -> None:
    """Write the store's catalog of the folder as it is now, as an ingest run does."""
    store = resources["features"].store()
    store.root.mkdir(parents=True, exist_ok=True)
    fs_catalog.write_catalog(gtzan.scan(corpus / "genres_original", workers=1), store.catalog_path)


def modified_now(path) -> None:
    """Give a file the mtime of a write a second from now (same size): after any catalog written so far."""
    os.utime(path, ns=(path.stat().st_atime_ns, time.time_ns() + 1_000_000_000))


def restored_older(path) -> None:
    """Give a file an mtime an hour older than its own (same size), as `rsync -t` of an older copy does."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 3600 * 1_000_000_000))


def test_new_file_requests_ingest_and_unchanged_folder_skips(tiny_resources, tiny_corpus):
    first = tick(tiny_resources)  # no cursor, no catalog yet: everything is new
    [req] = first.run_requests
    assert req.tags["gtzan/added"] == "30" and req.tags["gtzan/trigger"] == "audio_folder_sensor"
    assert req.tags["gtzan/files"] == "30"
    assert audio_folder_sensor.job_name == "ingest_job"
    ingest(tiny_resources, tiny_corpus)

    again = tick(tiny_resources, first.cursor)
    assert not again.run_requests
    assert "no new or changed files among 30" in again.skip_reason.skip_message

    new = tiny_corpus / "genres_original" / "jazz" / "jazz.00003.wav"
    new.write_bytes((tiny_corpus / "genres_original" / "jazz" / "jazz.00000.wav").read_bytes())
    third = tick(tiny_resources, again.cursor)
    [req] = third.run_requests
    assert req.tags["gtzan/added"] == "1" and req.tags["gtzan/added_examples"] == "jazz/jazz.00003.wav"
    assert req.tags["gtzan/changed"] == "0" and req.tags["gtzan/removed"] == "0"
    assert req.run_key != first.run_requests[0].run_key
    assert json.loads(third.cursor)["files"] == 31


def test_cursor_is_a_digest_not_a_list_of_files(tiny_resources, tiny_corpus):
    res = tick(tiny_resources)
    cursor = json.loads(res.cursor)
    assert set(cursor) == {"v", "root", "digest", "files", "catalog_ns"}
    assert cursor["v"] == CURSOR_VERSION and cursor["files"] == 30 and len(cursor["digest"]) == 32
    assert cursor["root"] == str(tiny_corpus / "genres_original") and cursor["catalog_ns"] == 0
    assert "jazz" not in res.cursor and len(res.cursor) < 150 + len(cursor["root"])
    # its size does not depend on the number of files
    for i in range(3, 40):
        (tiny_corpus / "genres_original" / "jazz" / f"jazz.{i:05d}.wav").write_bytes(b"RIFF")
    bigger = tick(tiny_resources, res.cursor)
    assert json.loads(bigger.cursor)["files"] == 67 and len(bigger.cursor) == len(res.cursor)
    assert json.loads(bigger.cursor)["digest"] != cursor["digest"]


def test_changed_and_removed_files(tiny_resources, tiny_corpus):
    ingest(tiny_resources, tiny_corpus)
    base = tick(tiny_resources)
    assert not base.run_requests and "first look" in base.skip_reason.skip_message
    genres = tiny_corpus / "genres_original"
    modified_now(genres / "rock" / "rock.00001.wav")  # same size, modified after the catalog was written
    (genres / "pop" / "pop.00002.wav").unlink()
    (genres / ".hidden.wav").write_bytes(b"x")  # hidden files are not audio: ignored
    res = tick(tiny_resources, base.cursor)
    [req] = res.run_requests
    assert req.tags["gtzan/changed"] == "1" and req.tags["gtzan/changed_examples"] == "rock/rock.00001.wav"
    assert req.tags["gtzan/removed"] == "1" and req.tags["gtzan/removed_examples"] == "pop/pop.00002.wav"
    assert req.tags["gtzan/added"] == "0" and req.tags["gtzan/files"] == "29"
    # a file of another size is changed whatever its mtime
    resized = genres / "blues" / "blues.00000.wav"
    st = resized.stat()
    with open(resized, "ab") as f:
        f.write(b"\0\0")
    os.utime(resized, ns=(st.st_atime_ns, st.st_mtime_ns))
    [req] = tick(tiny_resources, res.cursor).run_requests
    assert req.tags["gtzan/changed"] == "2" and "blues/blues.00000.wav" in req.tags["gtzan/changed_examples"]


def test_first_tick_matches_existing_catalog(tiny_resources, tiny_corpus):
    """Turned on after `make run`, the sensor does not re-ingest a folder the catalog already holds."""
    ingest(tiny_resources, tiny_corpus)
    res = tick(tiny_resources)
    assert not res.run_requests and "the 30 files match the catalog" in res.skip_reason.skip_message
    assert json.loads(res.cursor)["catalog_ns"] == tiny_resources["features"].store().catalog_path.stat().st_mtime_ns


def test_a_damaged_catalog_is_never_believed_every_file_asks_for_an_ingest(tiny_resources, tiny_corpus):
    ingest(tiny_resources, tiny_corpus)
    path = tiny_resources["features"].store().catalog_path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    [req] = tick(tiny_resources).run_requests  # the ingest it asks for writes the catalog again
    assert req.tags["gtzan/added"] == "30"


def test_cursor_of_the_old_format_or_another_folder_is_treated_as_absent(tiny_resources, tiny_corpus):
    root = tiny_corpus / "genres_original"
    old = json.dumps({"v": 1, "root": str(root), "files": list_audio(root)}, sort_keys=True)
    res = tick(tiny_resources, old)  # no catalog: everything is new, as on a first tick
    [req] = res.run_requests
    assert req.tags["gtzan/added"] == "30" and json.loads(res.cursor)["v"] == CURSOR_VERSION
    ingest(tiny_resources, tiny_corpus)
    for cursor in (old, "not json", json.dumps({**json.loads(res.cursor), "root": "/elsewhere"})):
        out = tick(tiny_resources, cursor)
        assert not out.run_requests and "first look" in out.skip_reason.skip_message, cursor


def test_change_ingested_outside_the_sensor_is_not_ingested_again(tiny_resources, tiny_corpus):
    """`gtzan ingest` (or `make run`) between two ticks: the catalog holds the change already."""
    ingest(tiny_resources, tiny_corpus)
    base = tick(tiny_resources).cursor
    genres = tiny_corpus / "genres_original"
    (genres / "jazz" / "jazz.00003.wav").write_bytes((genres / "jazz" / "jazz.00000.wav").read_bytes())
    time.sleep(0.01)
    ingest(tiny_resources, tiny_corpus)
    res = tick(tiny_resources, base)
    assert not res.run_requests and "ingested since the last look" in res.skip_reason.skip_message


def test_an_older_file_restored_with_the_same_size_still_re_ingests(tiny_resources, tiny_corpus):
    """The catalog cannot say which file changed (same names and sizes, mtimes older than it), but
    the listing did change while the catalog did not: ingest runs, for unknown files."""
    ingest(tiny_resources, tiny_corpus)
    base = tick(tiny_resources).cursor
    restored = tiny_corpus / "genres_original" / "rock" / "rock.00001.wav"
    restored_older(restored)
    res = tick(tiny_resources, base)
    [req] = res.run_requests
    assert req.tags["gtzan/changed"] == "unknown" and req.tags["gtzan/added"] == "0"
    again = tick(tiny_resources, res.cursor)
    assert not again.run_requests


def test_run_key_is_new_when_the_folder_returns_to_an_earlier_state_after_an_ingest(tiny_resources, tiny_corpus):
    first = tick(tiny_resources)
    ingest(tiny_resources, tiny_corpus)
    extra = tiny_corpus / "genres_original" / "jazz" / "jazz.00003.wav"
    extra.write_bytes((tiny_corpus / "genres_original" / "jazz" / "jazz.00000.wav").read_bytes())
    added = tick(tiny_resources, first.cursor)
    time.sleep(0.01)
    ingest(tiny_resources, tiny_corpus)
    extra.unlink()  # back to the listing of the first tick
    removed = tick(tiny_resources, added.cursor)
    [req] = removed.run_requests
    assert req.tags["gtzan/removed"] == "1"
    assert json.loads(removed.cursor)["digest"] == json.loads(first.cursor)["digest"]
    keys = [first.run_requests[0].run_key, added.run_requests[0].run_key, req.run_key]
    assert len(set(keys)) == 3  # Dagster would drop a request whose run key it has seen


def test_missing_folder_skips(tiny_resources, tmp_path):
    from assets import AudioSource

    res = {**tiny_resources, "audio": AudioSource(path=str(tmp_path / "nowhere"))}
    out = tick(res)
    assert not out.run_requests and "audio folder unavailable" in out.skip_reason.skip_message


def test_diff_catalog():
    listing = {"a": [100, 10], "b": [100, 10], "c": [300, 10], "d": [100, 5]}
    catalog = Catalog({"a": 10, "b": 11, "c": 10, "e": 7}, written_ns=200)
    assert diff_catalog(listing, catalog) == {"added": ["d"], "changed": ["b", "c"], "removed": ["e"]}
    assert diff_catalog(listing, None) == {"added": ["a", "b", "c", "d"], "changed": [], "removed": []}


def test_audio_sensor_keeps_the_ui_automation_flag_equal_to_the_automation_sensor(tiny_resources):
    """The UI's "Auto-materialize on/off" tag reads a flag that is "off" on a fresh instance; each tick
    of the audio sensor sets it to the state of the `automation` sensor (on by default)."""
    from dagster._core.scheduler.instigation import InstigatorState, InstigatorStatus, InstigatorType
    from dagster._daemon.asset_daemon import get_auto_materialize_paused

    from pipelines.sensors import automation_running, sync_automation_flag

    with dg.DagsterInstance.local_temp() as instance:
        assert get_auto_materialize_paused(instance)  # what the UI showed: "Auto-materialize off"
        tick(tiny_resources, instance=instance)
        assert automation_running(instance) and not get_auto_materialize_paused(instance)
        # the user stops the automation sensor: the tag follows at the next sync
        state = InstigatorState(_sensor_origin(), InstigatorType.SENSOR, InstigatorStatus.STOPPED)
        instance.add_instigator_state(state)
        assert sync_automation_flag(instance) is False and get_auto_materialize_paused(instance)


def _sensor_origin():
    """The origin of the `automation` sensor of the project's code location (module pipelines.definitions)."""
    from dagster._core.remote_origin import (
        InProcessCodeLocationOrigin,
        RemoteInstigatorOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="pipelines.definitions", attribute="defs"))
    return RemoteInstigatorOrigin(RemoteRepositoryOrigin(location, "__repository__"), "automation")
