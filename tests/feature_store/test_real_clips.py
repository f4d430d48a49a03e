"""Real GTZAN clips from ../shared/data (skipped when absent; never written to)."""

import csv
import hashlib
import shutil

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from feature_store import FeatureStore, ingest
from feature_store.datasets import gtzan

pytestmark = pytest.mark.shared_data


def test_gtzan_mini_catalog_matches_its_manifest(shared_data):
    root = shared_data / "gtzan-mini" / "genres_original"
    df = gtzan.scan(root)
    assert df.height == 100 and set(df["status"]) == {"ok"}
    assert df.group_by("genre").len()["len"].to_list() == [10] * 10
    with open(shared_data / "gtzan-mini" / "MANIFEST.csv") as fh:
        manifest = {r["file"]: r for r in csv.DictReader(fh)}
    for row in df.iter_rows(named=True):
        m = manifest[row["path"].split("/")[1]]
        assert row["sha256"] == m["sha256"]
        assert row["frames"] == int(m["frames"]) and row["sample_rate"] == 22050
    assert df["format"].unique().to_list() == ["flac"]


def test_flac_decodes_to_the_kaggle_wav_samples(shared_data, tmp_path):
    """Written back as 16-bit WAV (the Kaggle file), the clip hashes to the manifest's WAV hash."""
    src = shared_data / "gtzan-mini" / "genres_original" / "blues" / "blues.00000.flac"
    data, sr = sf.read(src, dtype="int16")
    wav = tmp_path / "blues.00000.wav"
    sf.write(wav, data, sr, subtype="PCM_16", format="WAV")
    with open(shared_data / "gtzan-mini" / "MANIFEST.csv") as fh:
        expected = next(r for r in csv.DictReader(fh) if r["file"] == "blues.00000.flac")["original_wav_sha256"]
    assert hashlib.sha256(wav.read_bytes()).hexdigest() == expected


def test_every_real_flac_decodes_to_libsndfiles_samples(shared_data):
    """The miniaudio fast path gives soundfile's samples on all 100 real clips (and the
    holdout), so the features do not depend on which decoder ran."""
    from feature_store import audio, decoders

    files = sorted((shared_data / "gtzan-mini" / "genres_original").glob("*/*.flac"))
    files += sorted((shared_data / "gtzan-holdout").rglob("*.flac"))
    assert len(files) >= 100
    for path in files:
        with decoders.open_source(path) as src:
            assert src.decoder == "dr_flac", path
        ref, sr = sf.read(str(path), dtype="float32", always_2d=False)
        ref = ref.mean(axis=1, dtype=np.float32) if ref.ndim == 2 else ref
        got = audio.decode(path, sr=sr, nominal_seconds=None)
        np.testing.assert_array_equal(got.y, ref, err_msg=str(path))
        # what the build decodes: all of a GTZAN clip (they last up to 30.6 s), from its bytes
        start = audio.decode(path, sr=sr, data=path.read_bytes())
        assert start.complete and start.frames == ref.shape[0]
        np.testing.assert_array_equal(start.y, audio.fit_length(ref, 30 * sr))


def test_original_au_layout(shared_data):
    df = gtzan.scan(shared_data / "gtzan-au")
    assert df["song_id"].to_list() == ["blues.00000", "blues.00001", "jazz.00000", "jazz.00001"]
    assert set(df["format"]) == {"au"} and set(df["status"]) == {"ok"}


def test_real_clips_build_features(shared_data, tmp_path):
    audio = tmp_path / "audio" / "genres_original"
    for g in ("classical", "metal"):
        (audio / g).mkdir(parents=True)
        for f in sorted((shared_data / "gtzan-mini" / "genres_original" / g).iterdir())[:2]:
            shutil.copy(f, audio / g / f.name)
    ingest(audio, tmp_path / "store")
    store = FeatureStore(tmp_path / "store")
    report = store.build(audio_root=audio, clip_seconds=[5, 30], workers=1)
    assert report.failed.height == 0
    x, y, index = store.tensors(clip_seconds=30)
    assert x.shape == (4, 128, 1292) and np.isfinite(x).all()
    assert sorted(set(y.tolist())) == [1, 6]
    # metal is louder than classical in the high bands
    hi = x[:, 100:].mean(axis=(1, 2))
    assert hi[index["genre"].to_numpy() == "metal"].min() > hi[index["genre"].to_numpy() == "classical"].max()
    assert store.clips(clip_seconds=5).collect().filter(pl.col("seed") == "test").height == 2
