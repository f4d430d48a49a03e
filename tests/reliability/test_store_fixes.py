"""Unit tests of the feature-store fixes that the reliability work needed.

* ``audio.declared_frames``: libsndfile silently shortens a WAV or AU file whose header
  promises more data than it holds; the catalog now notes the truncation.
* ``splits.keep_copies_together``: byte-identical files share their part in every scheme,
  so a repeated song never leaks (before, the blocking leakage check stopped all features).
* ``atomic.remove_stale_temps(dead_only=True)``: leftovers of killed writers are swept
  without a lock, and those of running writers are kept.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from feature_store import atomic
from feature_store.audio import declared_frames
from feature_store.catalog import inspect_file
from feature_store.datasets.gtzan import make_splits
from feature_store.splits import EXCLUDED, keep_copies_together, leakage

SR = 22050


@pytest.mark.parametrize(
    ("fmt", "subtype", "channels", "sr"),
    [("WAV", "PCM_16", 1, 22050), ("WAV", "PCM_24", 2, 44100), ("WAV", "FLOAT", 1, 8000), ("WAVEX", "PCM_16", 2, 22050),
     ("AU", "PCM_16", 1, 22050), ("AU", "FLOAT", 2, 44100)],
)
def test_declared_frames_reads_wav_and_au_headers(tmp_path, fmt, subtype, channels, sr):
    n = 3 * sr
    y = np.zeros((n, channels), np.float32)
    path = tmp_path / f"a.{'au' if fmt == 'AU' else 'wav'}"
    sf.write(path, y, sr, format=fmt, subtype=subtype)
    assert declared_frames(path) == n == sf.info(path).frames
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header still promises n frames
    assert declared_frames(path) == n > sf.info(path).frames


@pytest.mark.parametrize("content", [b"", b"RIFF", b"not audio" * 50, b".snd" + b"\xff" * 20])
def test_declared_frames_gives_none_when_it_cannot_say(tmp_path, content):
    path = tmp_path / "x.wav"
    path.write_bytes(content)
    assert declared_frames(path) is None
    assert declared_frames(tmp_path / "missing.wav") is None


def test_compressed_and_other_formats_say_nothing(tmp_path):
    y = np.zeros(SR, np.float32)
    sf.write(tmp_path / "a.wav", y, SR, subtype="MS_ADPCM")
    sf.write(tmp_path / "a.flac", y, SR)
    assert declared_frames(tmp_path / "a.wav") is None and declared_frames(tmp_path / "a.flac") is None


def test_a_truncated_au_file_is_noted(tmp_path):
    gdir = tmp_path / "blues"
    gdir.mkdir()
    path = gdir / "blues.00001.au"
    sf.write(path, 0.1 * np.sin(np.arange(4 * SR, dtype=np.float32) / 7), SR, format="AU", subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 2 * SR])  # one second missing
    row = inspect_file(path, genre_root=tmp_path, genre="blues")
    assert row["status"] == "ok" and row["frames"] == 3 * SR
    assert row["notes"] == f"truncated: header promises {4 * SR} frames, {3 * SR} decoded"


def _catalog(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"song_id": [r[0] for r in rows], "genre": [r[0].split(".")[0] for r in rows],
         "number": [int(r[0].split(".")[1]) for r in rows], "sha256": [r[1] for r in rows],
         "status": [r[2] for r in rows]}
    )


def test_copies_take_the_part_of_their_first_used_copy():
    cat = _catalog([("pop.00000", "a", "ok"), ("pop.00001", "b", "ok"), ("pop.00002", "a", "ok"),
                    ("pop.00003", "c", "quarantined"), ("pop.00004", "c", "ok")])
    parts = pl.Series("seed", ["train", "train", "test", EXCLUDED, "test"])
    assert keep_copies_together(cat, parts).to_list() == ["train", "train", "train", EXCLUDED, "test"]
    # an excluded copy stays excluded; the first *used* copy decides for the others
    ff = pl.Series("fault_filtered", [EXCLUDED, "valid", "test", EXCLUDED, EXCLUDED])
    assert keep_copies_together(cat, ff).to_list() == [EXCLUDED, "valid", "test", EXCLUDED, EXCLUDED]


def test_make_splits_never_leaks_copies():
    rows = [(f"rock.{i:05d}", f"{i:064x}", "ok") for i in range(20)]
    rows += [("rock.00020", f"{0:064x}", "ok"), ("rock.00021", f"{3:064x}", "ok")]  # two repetitions, numbered last
    spl = make_splits(_catalog(rows))
    assert leakage(spl).height == 0
    by_id = {r["song_id"]: r for r in spl.to_dicts()}
    for copy, first in (("rock.00020", "rock.00000"), ("rock.00021", "rock.00003")):
        assert all(by_id[copy][s] == by_id[first][s] for s in ("seed", "stratified", "fault_filtered"))
    # without the fix the copies would be held out while their originals train
    naive = spl.with_columns(pl.when(pl.col("song_id").is_in(["rock.00020", "rock.00021"])).then(pl.lit("test"))
                             .otherwise(pl.col("seed")).alias("seed"))
    assert leakage(naive).filter(pl.col("scheme") == "seed").height == 2


def test_dead_writers_temporaries_are_swept_and_live_ones_kept(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        names = {
            "mine": f".tmp-report.md.{os.getpid()}.aaaa1111",
            "live": f".tmp-report.md.{sleeper.pid}.bbbb2222",
            "dead": f".tmp-report.md.{dead.pid}.cccc3333",
            "odd": ".tmp-report.md.not-a-pid",
            "other": f".tmp-other.md.{dead.pid}.dddd4444",
        }
        for n in names.values():
            (tmp_path / n).write_text("half")
        atomic.write_bytes_atomic(tmp_path / "report.md", b"whole\n")
        left = {p.name for p in tmp_path.iterdir()}
        assert left == {"report.md", names["mine"], names["live"], names["odd"], names["other"]}
        gen_dir = tmp_path / "runs"
        gen_dir.mkdir()
        (gen_dir / f".tmp-gen-x.{dead.pid}.eeee5555").mkdir()
        (gen_dir / f".tmp-gen-y.{sleeper.pid}.ffff6666").mkdir()
        with atomic.new_generation(gen_dir) as tmp:
            (tmp / "f").write_text("1")
        kept = {p.name for p in gen_dir.iterdir() if p.name.startswith(".tmp-")}
        assert kept == {f".tmp-gen-y.{sleeper.pid}.ffff6666"}
        assert (gen_dir / "current" / "f").read_text() == "1"
    finally:
        os.killpg(sleeper.pid, 9)
        sleeper.wait()
