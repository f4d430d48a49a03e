"""Hostile audio folders and stores (issue 17, items 6, 7 and 9), through ingest and the real CLI.

* 6: ``verify --repair`` finds the audio where ingest recorded it (each file checked against
  the catalog's sha256) and asks for a folder, in one line, only when a file moved or changed;
* 7: files of one stem (``foo.wav``, ``foo.au``, ``foo.wav.wav``) and two files of one GTZAN
  number get distinct song ids and never leak; a leaking split table stops the CLI's build and
  ``gtzan run`` with the function of the blocking ``split_leakage`` asset check;
* 9: FIFOs, sockets, links to devices, directory loops, broken links and links out of the
  folder are listed as quarantined with a reason, and never opened.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (the mel store's compression filter)
import numpy as np
import polars as pl
import pytest
import soundfile as sf
from click.testing import CliRunner, Result

from feature_store import catalog, ingest
from feature_store.datasets import gtzan as gtzan_dataset
from feature_store.demo import write_demo_corpus
from feature_store.errors import StoreError
from feature_store.splits import leakage, require_no_leakage, write_splits
from pipelines import cli

SR = 22050


def _tone(seconds: float, freq: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def gtzan(args: list, env: dict) -> Result:
    return CliRunner().invoke(cli.main, [str(a) for a in args], env=env, prog_name="gtzan")


def one_line_error(r: Result, code: int) -> str:
    """The single ``gtzan: error:`` line of a failed command (exit ``code``, no traceback)."""
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr, r.exception)
    assert isinstance(r.exception, SystemExit) and "Traceback" not in r.stdout + r.stderr
    [line] = [ln for ln in r.stderr.splitlines() if ln.startswith("gtzan: error: ")]
    return line


def cli_env(data: Path) -> dict:
    """No GTZAN_DIR: the commands know only what the store records."""
    env: dict = dict.fromkeys(("GTZAN_DIR", "GTZAN_STORE_DIR", "GTZAN_MODEL_DIR", "GTZAN_REPORT_DIR", "GTZAN_MODE",
                               "GTZAN_LAYOUT", "GTZAN_DEBUG"))
    env.update(GTZAN_DATA_DIR=str(data), GTZAN_WORKERS="1")
    return env


# ---------------------------------------------------------------------------------------
# 7: song ids unique by construction, and no leak
# ---------------------------------------------------------------------------------------
@pytest.fixture
def same_stems(tmp_path: Path) -> Path:
    root = tmp_path / "audio"
    write_demo_corpus(root, songs_per_genre=2, duration=2.0, genres=("rock", "jazz"))
    rock = root / "genres_original" / "rock"
    sf.write(rock / "foo.wav", _tone(2.0, 220), SR)
    sf.write(rock / "foo.au", _tone(2.0, 330), SR, format="AU")
    sf.write(rock / "foo.wav.wav", _tone(2.0, 440), SR)
    sf.write(rock / "rock.00001.au", _tone(2.0, 550), SR, format="AU")  # a second file of rock.00001
    return root


def test_files_of_one_stem_get_distinct_ids_and_never_leak(same_stems, tmp_path):
    res = ingest(same_stems, tmp_path / "store")
    cat, spl = res.catalog, res.splits
    assert cat["song_id"].is_unique().all() and spl["song_id"].is_unique().all()
    rock = dict(zip(cat["path"], cat["song_id"], strict=True))
    assert rock["rock/foo.wav"] == "rock/foo.wav" and rock["rock/foo.au"] == "rock/foo.au"
    assert rock["rock/foo.wav.wav"] == "rock/foo.wav.wav"
    assert rock["rock/rock.00000.wav"] == "rock.00000"  # GTZAN names keep the split lists' ids
    # one GTZAN number, two files: the first by path keeps the id, the other is quarantined
    assert rock["rock/rock.00001.au"] == "rock.00001"
    dup = cat.filter(pl.col("path") == "rock/rock.00001.wav").row(0, named=True)
    assert dup["song_id"] == "rock/rock.00001.wav" and dup["status"] == "quarantined"
    assert dup["reason"] == "duplicate song id of rock.00001 (rock/rock.00001.au)"
    assert leakage(spl).height == 0
    ok = cat.filter(pl.col("status") == "ok")["song_id"]
    for scheme in ("seed", "stratified"):
        parts = spl.filter(pl.col("song_id").is_in(ok.to_list()))[scheme]
        assert (parts != "excluded").all()  # each usable file is in exactly one part (one row, one id)


def _leaking(splits: pl.DataFrame) -> pl.DataFrame:
    """The split table with its first song also in the other part of the seed scheme."""
    first = splits.filter(pl.col("seed") != "excluded").head(1)
    other = "train" if first["seed"][0] == "test" else "test"
    return pl.concat([splits, first.with_columns(pl.lit(other).alias("seed"))])


def test_cli_build_refuses_a_leaking_split_table(tmp_path):
    data = tmp_path / "data"
    audio = write_demo_corpus(tmp_path / "audio", songs_per_genre=1, duration=2.0)
    env = cli_env(data)
    assert gtzan(["ingest", audio], env).exit_code == 0
    splits_path = data / "store" / "splits.parquet"
    bad = _leaking(pl.read_parquet(splits_path))
    write_splits(bad, splits_path)
    line = one_line_error(gtzan(["features", "build", audio, "--clip-seconds", "1"], env), 1)
    assert "splits.parquet leaks: song id" in line and "in parts test,train of the 'seed' scheme" in line
    assert "gtzan ingest" in line
    assert not (data / "store" / "features").exists()  # nothing was built
    with pytest.raises(StoreError, match="leaks: song id"):  # the function the CLI and `gtzan run` call
        require_no_leakage(bad)
    assert leakage(bad)["kind"].to_list() == ["song_id", "sha256"]  # ... is the blocking asset check's


def test_gtzan_run_stops_after_ingest_on_a_leaking_split_table(tmp_path):
    from pipelines.run import RunFailedError, refuse_leaking_splits
    from pipelines.settings import Settings

    store = tmp_path / "store"
    res = ingest(write_demo_corpus(tmp_path / "audio", songs_per_genre=1, duration=2.0), store)
    settings = Settings(store_dir=store)
    refuse_leaking_splits(settings)  # a sound table passes
    write_splits(_leaking(res.splits), store / "splits.parquet")
    with pytest.raises(RunFailedError, match=r"splits\.parquet leaks: song id '.+' is in parts test,train"):
        refuse_leaking_splits(settings)


# ---------------------------------------------------------------------------------------
# 9: what is not a regular file is listed, never opened
# ---------------------------------------------------------------------------------------
@pytest.mark.timeout(60)  # a FIFO that were opened would block the scan forever
def test_non_regular_files_are_quarantined_with_a_reason_and_never_opened(tmp_path):
    root = tmp_path / "audio"
    write_demo_corpus(root, songs_per_genre=1, duration=2.0, genres=("rock",))
    genres = root / "genres_original"
    rock = genres / "rock"
    os.mkfifo(rock / "pipe.wav")
    os.symlink("/dev/zero", rock / "zero.wav")
    os.symlink(".", rock / "loop")  # a directory loop
    os.symlink("b.wav", rock / "a.wav")
    os.symlink("a.wav", rock / "b.wav")  # a link loop
    os.symlink("gone.wav", rock / "broken.wav")
    outside = tmp_path / "outside.wav"
    shutil.copyfile(rock / "rock.00000.wav", outside)
    os.symlink(outside, rock / "escape.wav")
    os.symlink("rock.00000.wav", rock / "inside.wav")  # a link to a file in the folder is read
    (rock / "sub").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(rock / "sock.wav"))
        os.symlink(".", genres / "again")  # a genre-level loop: its entries are folders
        df = gtzan_dataset.scan(root)
    finally:
        sock.close()
    reasons = dict(zip(df["path"], df["reason"], strict=True))
    assert reasons["rock/pipe.wav"] == "a named pipe (FIFO), not a regular file"
    assert reasons["rock/sock.wav"] == "a socket, not a regular file"
    assert reasons["rock/zero.wav"] == "symbolic link to a character device outside the audio folder"
    assert reasons["rock/loop"] == "symbolic link to a folder, not a regular file"
    assert reasons["rock/a.wav"] == reasons["rock/b.wav"] == "symbolic link loop"
    assert reasons["rock/broken.wav"] == "broken symbolic link"
    assert reasons["rock/escape.wav"] == "symbolic link to a regular file outside the audio folder"
    assert reasons["rock/sub"] == "a folder, not a regular file"
    assert reasons["again/rock"] == "a folder, not a regular file"
    odd = df.filter(pl.col("path") != "rock/rock.00000.wav").filter(pl.col("path") != "rock/inside.wav")
    assert (odd["status"] == "quarantined").all() and odd["sha256"].is_null().all()  # never read
    assert df.filter(pl.col("path") == "rock/inside.wav")["status"].to_list() == ["ok"]
    assert df["song_id"].is_unique().all()


@pytest.mark.timeout(30)
def test_a_fifo_swapped_in_after_the_listing_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "song.wav"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="named pipe"):
        catalog._sha256(fifo)  # opened with O_NONBLOCK, refused on its descriptor
    assert catalog.file_sha256(fifo) is None


# ---------------------------------------------------------------------------------------
# 6: verify --repair finds the audio without being told
# ---------------------------------------------------------------------------------------
def _damage_a_row(store: Path) -> str:
    """Change one stored value of the 1 s mel store; the song of that row."""
    from feature_store.engine.store import ViewStore
    from feature_store.views import get_view

    mel = ViewStore(store, get_view("mel"))
    h5 = mel.generation(1) / "mel.h5"
    data = h5.read_bytes()
    h5.unlink()  # a private copy: the cache and older generations share nothing with it
    h5.write_bytes(data)
    with h5py.File(h5, "r+") as f:
        block = f["mel"][0]
        block[0, 0] += 1.0
        f["mel"][0] = block
    return mel.clips(clip_seconds=1).collect()["song_id"][0]


def test_repair_finds_the_audio_through_the_catalog_and_asks_only_when_it_moved(tmp_path):
    data = tmp_path / "data"
    audio = write_demo_corpus(tmp_path / "audio", songs_per_genre=1, duration=2.0)
    env = cli_env(data)  # GTZAN_DIR unset, no demo corpus: the store is all repair knows
    assert gtzan(["ingest", audio], env).exit_code == 0
    assert gtzan(["features", "build", audio, "--clip-seconds", "1"], env).exit_code == 0
    song = _damage_a_row(data / "store")
    r = gtzan(["features", "verify", "--view", "mel", "--repair"], env)
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert f"songs computed again: {song}; now sound" in r.stdout
    # the file of the damaged song changes: it is not used, and the folder is asked for
    _damage_a_row(data / "store")
    rel = pl.read_parquet(data / "store" / "catalog.parquet").filter(pl.col("song_id") == song)["path"][0]
    sf.write(audio / rel, _tone(2.0, 600), SR)
    line = one_line_error(gtzan(["features", "verify", "--view", "mel", "--repair"], env), 1)
    assert f"1 of 1 audio files the repair reads moved or changed since ingest (first: {rel} under" in line
    assert "gtzan features verify --repair AUDIO_DIR" in line
    # moved away: the same line
    shutil.move(audio.parent, tmp_path / "elsewhere")
    line = one_line_error(gtzan(["features", "verify", "--view", "mel", "--repair"], env), 1)
    assert "moved or changed since ingest" in line


def test_gtzan_run_leaves_a_store_on_another_host_to_its_checks(tmp_path):
    from pipelines.run import refuse_leaking_splits
    from pipelines.settings import Settings

    refuse_leaking_splits(Settings(store_dir=tmp_path / "not-here"))  # no local table: nothing to read


def test_a_worker_never_reads_a_fifo_or_a_grown_file_swapped_in_after_ingest(tmp_path):
    """A worker reads at most the cataloged size, from a regular file: a FIFO put in a song's
    place after ingest would hang a plain read, a file grown to gigabytes would be read whole."""
    import hashlib

    from feature_store.engine import worker
    from feature_store.params import FeatureParams
    from feature_store.views.mel import MelView

    song = tmp_path / "blues.00000.wav"
    sf.write(song, np.zeros(22050, dtype=np.int16), 22050, subtype="PCM_16")
    data = song.read_bytes()
    spec = MelView(FeatureParams()).to_spec()

    def job() -> worker.Job:
        return worker.Job(["blues.00000"], [str(song)], hashlib.sha256(data).hexdigest(), len(data), str(tmp_path))

    assert worker.run_job(job(), spec).ok
    song.write_bytes(data + b"\0" * (1 << 20))
    assert worker.run_job(job(), spec) == worker.JobResult(ok=False, changed=["blues.00000"], reason=worker.CHANGED)
    song.unlink()
    os.mkfifo(song)
    assert worker.run_job(job(), spec) == worker.JobResult(ok=False, changed=["blues.00000"], reason=worker.CHANGED)
