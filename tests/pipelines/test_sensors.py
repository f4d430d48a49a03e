"""The audio-folder sensor, evaluated through build_sensor_context."""

import json
import os

import dagster as dg
import polars as pl

from pipelines.sensors import audio_folder_sensor, diff_listing, list_audio


def tick(resources: dict, cursor: str | None = None, instance=None) -> dg.SensorResult:
    ctx = dg.build_sensor_context(cursor=cursor, resources=resources, instance=instance)
    return audio_folder_sensor(ctx)


def test_new_file_requests_ingest_and_unchanged_folder_skips(tiny_resources, tiny_corpus):
    first = tick(tiny_resources)  # no cursor, no catalog yet: everything is new
    [req] = first.run_requests
    assert req.tags["gtzan/added"] == "30" and req.tags["gtzan/trigger"] == "audio_folder_sensor"
    assert audio_folder_sensor.job_name == "ingest_job"

    again = tick(tiny_resources, first.cursor)
    assert not again.run_requests
    assert "no new or changed files among 30" in again.skip_reason.skip_message
    assert again.cursor == first.cursor

    new = tiny_corpus / "genres_original" / "jazz" / "jazz.00003.wav"
    new.write_bytes((tiny_corpus / "genres_original" / "jazz" / "jazz.00000.wav").read_bytes())
    third = tick(tiny_resources, again.cursor)
    [req] = third.run_requests
    assert req.tags["gtzan/added"] == "1" and req.tags["gtzan/added_examples"] == "jazz/jazz.00003.wav"
    assert req.tags["gtzan/changed"] == "0" and req.tags["gtzan/removed"] == "0"
    assert req.run_key != first.run_requests[0].run_key
    assert "jazz/jazz.00003.wav" in json.loads(third.cursor)["files"]


def test_changed_and_removed_files(tiny_resources, tiny_corpus):
    base = tick(tiny_resources).cursor
    genres = tiny_corpus / "genres_original"
    touched = genres / "rock" / "rock.00001.wav"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same size, newer mtime
    (genres / "pop" / "pop.00002.wav").unlink()
    (genres / ".hidden.wav").write_bytes(b"x")  # hidden files are not audio: ignored
    res = tick(tiny_resources, base)
    [req] = res.run_requests
    assert req.tags["gtzan/changed"] == "1" and req.tags["gtzan/changed_examples"] == "rock/rock.00001.wav"
    assert req.tags["gtzan/removed"] == "1" and req.tags["gtzan/removed_examples"] == "pop/pop.00002.wav"
    assert req.tags["gtzan/added"] == "0"


def test_first_tick_matches_existing_catalog(tiny_resources, tiny_corpus):
    """Turned on after `make run`, the sensor does not re-ingest a folder the catalog already holds."""
    root = tiny_corpus / "genres_original"
    listing = list_audio(root)
    store = tiny_resources["features"].store()
    store.root.mkdir(parents=True)
    pl.DataFrame({"path": list(listing), "bytes": [v[1] for v in listing.values()]}).write_parquet(store.catalog_path)
    res = tick(tiny_resources)
    assert not res.run_requests and "match the catalog" in res.skip_reason.skip_message
    assert json.loads(res.cursor)["files"] == listing


def test_missing_folder_skips(tiny_resources, tmp_path):
    from assets import AudioSource

    res = {**tiny_resources, "audio": AudioSource(path=str(tmp_path / "nowhere"))}
    out = tick(res)
    assert not out.run_requests and "audio folder unavailable" in out.skip_reason.skip_message


def test_diff_listing():
    old = {"a": [1, 10], "b": [1, 10], "c": [1, 10]}
    new = {"a": [1, 10], "b": [2, 10], "d": [1, 5]}
    assert diff_listing(old, new) == {"added": ["d"], "changed": ["b"], "removed": ["c"]}
