import hashlib
import shutil

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from feature_store import catalog
from feature_store.datasets import gtzan
from feature_store.errors import ParameterError
from feature_store.datasets.gtzan import GENRES


def test_scan_demo_corpus(tiny_corpus):
    df = gtzan.scan(tiny_corpus)
    assert df.height == 30
    assert list(df.columns) == list(catalog.CATALOG_SCHEMA)
    assert df["status"].unique().to_list() == ["ok"]
    assert sorted(df["genre"].unique().to_list()) == sorted(GENRES)
    row = df.filter(pl.col("song_id") == "jazz.00002").row(0, named=True)
    assert row["path"] == "jazz/jazz.00002.wav"
    assert row["number"] == 2
    assert row["format"] == "wav" and row["sample_rate"] == 22050 and row["channels"] == 1
    assert row["frames"] == 6 * 22050 and row["duration"] == pytest.approx(6.0)
    data = (tiny_corpus / "genres_original" / row["path"]).read_bytes()
    assert row["sha256"] == hashlib.sha256(data).hexdigest()
    assert row["bytes"] == len(data)


def _copy_genres(src, dst, genres=("blues", "jazz")):
    for g in genres:
        shutil.copytree(src / "genres_original" / g, dst / "genres_original" / g)
    return dst


def test_bad_files_are_quarantined_with_reasons_and_the_rest_is_kept(tiny_corpus, tmp_path):
    root = _copy_genres(tiny_corpus, tmp_path)
    jazz = root / "genres_original" / "jazz"
    (jazz / "jazz.00054.wav").write_bytes(b"RIFF\x00\x00" + bytes(range(256)) * 4)  # unreadable
    (jazz / "jazz.00055.wav").write_bytes(b"")
    (jazz / "jazz.00056.au").write_text("this is a text file, not audio\n")
    df = gtzan.scan(root)
    q = df.filter(pl.col("status") == "quarantined").sort("song_id")
    assert q["song_id"].to_list() == ["jazz.00054", "jazz.00055", "jazz.00056"]
    reasons = dict(zip(q["song_id"], q["reason"], strict=True))
    assert "empty file" in reasons["jazz.00055"]
    assert all(r for r in reasons.values())
    assert df.filter(pl.col("status") == "ok").height == 6


def test_identical_files_are_flagged(tiny_corpus, tmp_path):
    root = _copy_genres(tiny_corpus, tmp_path)
    blues = root / "genres_original" / "blues"
    shutil.copy(blues / "blues.00000.wav", blues / "blues.00007.wav")
    df = gtzan.scan(root)
    dup = df.filter(pl.col("duplicate_of").is_not_null())
    assert dup["song_id"].to_list() == ["blues.00007"]
    assert dup["duplicate_of"].to_list() == ["blues.00000"]


def test_unknown_genre_folder_is_quarantined(tiny_corpus, tmp_path):
    root = _copy_genres(tiny_corpus, tmp_path, genres=("rock",))
    other = root / "genres_original" / "polka"
    other.mkdir()
    shutil.copy(root / "genres_original" / "rock" / "rock.00000.wav", other / "polka.00000.wav")
    df = gtzan.scan(root)
    row = df.filter(pl.col("genre") == "polka").row(0, named=True)
    assert row["status"] == "quarantined" and "not a GTZAN genre" in row["reason"]


def test_original_layout_with_au_files(tmp_path):
    gdir = tmp_path / "genres" / "blues"
    gdir.mkdir(parents=True)
    y = (0.1 * np.sin(np.arange(22050 * 2) / 10)).astype(np.float32)
    sf.write(gdir / "blues.00000.au", y, 22050, format="AU", subtype="PCM_16")
    genre_root, layout = gtzan.find_genre_root(tmp_path)
    assert layout == "original" and genre_root.name == "genres"
    df = gtzan.scan(tmp_path)
    assert df.row(0, named=True)["format"] == "au"
    assert df.row(0, named=True)["status"] == "ok"


def test_genres_folder_itself_is_accepted(tiny_corpus):
    root, layout = gtzan.find_genre_root(tiny_corpus / "genres_original")
    assert layout == "kaggle" and root == (tiny_corpus / "genres_original").resolve()


def test_missing_and_empty_folders_say_so(tmp_path):
    with pytest.raises(ParameterError, match="does not exist"):
        gtzan.scan(tmp_path / "nope")
    with pytest.raises(ParameterError, match="holds no genre folders"):
        gtzan.scan(tmp_path)
    (tmp_path / "genres_original" / "blues").mkdir(parents=True)
    with pytest.raises(ParameterError, match="holds no audio files"):
        gtzan.scan(tmp_path)


def test_non_ascii_and_spaces_in_names(tiny_corpus, tmp_path):
    gdir = tmp_path / "genres_original" / "jazz"
    gdir.mkdir(parents=True)
    shutil.copy(tiny_corpus / "genres_original" / "jazz" / "jazz.00000.wav", gdir / "Café del Mar ü.wav")
    df = gtzan.scan(tmp_path)
    row = df.row(0, named=True)
    assert row["status"] == "ok"
    assert row["song_id"] == "jazz/Café del Mar ü.wav"
    assert row["number"] is None


@pytest.mark.parametrize("rel", ["../outside.wav", "/etc/passwd", "jazz/../../x"])
def test_paths_cannot_escape_the_root(tmp_path, rel):
    with pytest.raises(ParameterError, match="escapes its root"):
        catalog.resolve_in_root(tmp_path, rel)


def test_too_short_audio_is_quarantined(tmp_path):
    gdir = tmp_path / "genres_original" / "pop"
    gdir.mkdir(parents=True)
    sf.write(gdir / "pop.00000.wav", np.zeros(100, np.float32), 22050)
    row = gtzan.scan(tmp_path).row(0, named=True)
    assert row["status"] == "quarantined" and "too short" in row["reason"]
