import dataclasses

import pytest

from feature_store.errors import ParameterError
from feature_store.datasets.gtzan import validate_genre
from feature_store.params import CLIP_SECONDS, FeatureParams, validate_clip_seconds, validate_mode


def test_defaults_are_the_studys_librosa_defaults():
    p = FeatureParams()
    assert (p.sr, p.n_fft, p.hop_length, p.n_mels, p.power, p.top_db) == (22050, 2048, 512, 128, 2.0, 80.0)
    assert p.mode == "first" and p.dtype == "float32"


@pytest.mark.parametrize(("clip", "frames"), [(1, 44), (5, 216), (15, 646), (30, 1292)])
def test_clip_frames_match_librosa_for_n_seconds(clip, frames):
    assert FeatureParams().clip_frames(clip) == frames


def test_song_frames_is_the_30_s_clip():
    p = FeatureParams()
    assert p.song_frames == p.clip_frames(30) == 1292


@pytest.mark.parametrize(("clip", "n"), [(1, 30), (5, 6), (15, 2), (30, 1)])
def test_segments_tile_the_song_without_overrun(clip, n):
    p = FeatureParams(mode="segments")
    starts = p.segment_starts(clip)
    assert len(starts) == n
    assert starts[0] == 0
    assert all(b > a for a, b in zip(starts, starts[1:], strict=False))
    assert starts[-1] + p.clip_frames(clip) <= p.song_frames
    # non-overlapping: each segment starts at or after the previous one's nominal end
    assert all(b - a >= clip * p.sr // p.hop_length for a, b in zip(starts, starts[1:], strict=False))


def test_first_mode_gives_one_clip():
    assert FeatureParams().segment_starts(5) == [0]


def test_hash_is_stable_and_sensitive_to_every_field():
    base = FeatureParams()
    assert base.hash() == FeatureParams().hash()
    changes = {"sr": 16000, "n_fft": 1024, "hop_length": 256, "n_mels": 96, "fmin": 20.0, "fmax": 8000.0,
               "power": 1.0, "top_db": None, "dtype": "float16", "mode": "segments"}
    assert set(changes) == {f.name for f in dataclasses.fields(FeatureParams)}
    hashes = {base.replace(**{k: v}).hash() for k, v in changes.items()}
    assert base.hash() not in hashes and len(hashes) == len(changes)


def test_spectral_hash_ignores_storage_and_sampling():
    base = FeatureParams()
    assert base.replace(dtype="float16", mode="segments").spectral_hash() == base.spectral_hash()
    assert base.replace(n_mels=64).spectral_hash() != base.spectral_hash()


def test_round_trip_through_dict():
    p = FeatureParams(mode="segments", dtype="float16", fmax=8000.0)
    assert FeatureParams.from_dict(p.to_dict()) == p
    with pytest.raises(ParameterError, match="unknown feature parameters"):
        FeatureParams.from_dict({**p.to_dict(), "n_mfcc": 20})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_mels": 0}, "n_mels must be a positive integer"),
        ({"sr": -1}, "sr must be a positive integer"),
        ({"hop_length": 4096}, "must not exceed n_fft"),
        ({"fmax": 20000.0}, "fmax must be in"),
        ({"fmin": -5.0}, "fmin must be in"),
        ({"power": 0.0}, "power must be positive"),
        ({"top_db": -1.0}, "top_db must be positive"),
        ({"dtype": "float64"}, "dtype must be 'float32' or 'float16'"),
        ({"mode": "random"}, r"valid modes are \['first', 'segments'\]"),
    ],
)
def test_bad_params_raise_a_clear_error(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        FeatureParams(**kwargs)


@pytest.mark.parametrize("good", [1, 5, "15", 30.0])
def test_validate_clip_seconds_accepts_partition_keys(good):
    assert validate_clip_seconds(good) in CLIP_SECONDS


@pytest.mark.parametrize("bad", [0, -5, 7, "5s", 5.5, True, None])
def test_validate_clip_seconds_names_the_valid_values(bad):
    with pytest.raises(ParameterError, match=r"\[1, 5, 15, 30\]"):
        validate_clip_seconds(bad)


def test_validate_genre_and_mode():
    assert validate_genre("jazz") == "jazz"
    with pytest.raises(ParameterError, match="valid genres are"):
        validate_genre("polka")
    with pytest.raises(ParameterError, match="valid modes"):
        validate_mode("all")
