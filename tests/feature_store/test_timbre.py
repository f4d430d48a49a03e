"""The timbre view: Tzanetakis & Cook's timbral summary, against known answers."""

from __future__ import annotations

import librosa
import numpy as np
import polars as pl
import pytest

from feature_store import ingest
from feature_store.audio import decode
from feature_store.engine.store import ViewStore
from feature_store.errors import ParameterError
from feature_store.views import get_view
from feature_store.views.timbre import COLUMNS, FRAME_FEATURES, TimbreParams, frame_features, spectral_flux

SR = 22050


def sine(freq: float, seconds: float = 3.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_a_sine_has_its_known_centroid_rolloff_zcr_rms_and_no_flux():
    f = frame_features(sine(1000.0), params=TimbreParams())
    assert f.shape == (25, 1 + 3 * SR // 512)
    inner = dict(zip(FRAME_FEATURES, f[:, 4:-4], strict=True))  # away from the zero padding at both ends
    np.testing.assert_allclose(inner["spectral_centroid"], 1000.0, atol=2.0)
    assert np.all((inner["spectral_rolloff"] >= 1000.0) & (inner["spectral_rolloff"] <= 1000.0 + 2 * SR / 2048))
    np.testing.assert_allclose(inner["zero_crossing_rate"], 2 * 1000.0 / SR, atol=2e-3)
    np.testing.assert_allclose(inner["rms"], 0.5 / np.sqrt(2), atol=2e-3)
    assert inner["spectral_flux"].max() < 1e-4


def test_the_mfccs_are_librosas():
    y = decode_demo()
    f = frame_features(y, params=TimbreParams())
    np.testing.assert_allclose(f[:20], librosa.feature.mfcc(y=y, sr=SR, n_mfcc=20), rtol=1e-4, atol=1e-3)


def decode_demo() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (0.1 * rng.standard_normal(SR * 2) + sine(440.0, 2.0)).astype(np.float32)


def test_flux_is_the_distance_between_unit_sum_spectra():
    # unit-sum spectra of (1,1), (0,4), (2,2) and silence
    unit = np.array([[0.5, 0.0, 0.5, 0.0], [0.5, 1.0, 0.5, 0.0]])
    np.testing.assert_allclose(spectral_flux(unit), [0.0, np.sqrt(0.5), np.sqrt(0.5), np.sqrt(0.5)])
    # a stretch of a longer stream carries on from the frame before it
    np.testing.assert_allclose(spectral_flux(unit[:, 2:], previous=unit[:, 1]), [np.sqrt(0.5), np.sqrt(0.5)])


def test_frames_of_a_stream_piece_by_piece_equal_the_whole_song():
    from feature_store.engine.frames import framed
    from feature_store.views.timbre import TimbreView

    view = TimbreView()
    y = decode_demo()
    parts, state, peak = [], None, -np.inf
    for segment, k in framed([y[i: i + 1000] for i in range(0, y.size, 1000)], view.frame_spec, chunk_frames=7):
        raw, state = view.frame_chunk(segment, state)
        assert raw.shape[1] == k
        parts.append(raw)
        peak = max(peak, view.frame_peak(raw))
    np.testing.assert_array_equal(np.concatenate([view.finish_frames(r, peak) for r in parts], axis=1),
                                  view.prepare(y))


def test_silence_is_finite_and_zero_where_it_should_be():
    f = frame_features(np.zeros(SR, np.float32), params=TimbreParams())
    assert np.isfinite(f).all()
    named = dict(zip(FRAME_FEATURES, f, strict=True))
    assert named["rms"].max() == 0 and named["zero_crossing_rate"].max() == 0 and named["spectral_flux"].max() == 0


def test_bad_input_and_parameters_name_the_value():
    with pytest.raises(ParameterError, match="NaN or infinite"):
        frame_features(np.array([0.0, np.nan], np.float32), params=TimbreParams())
    with pytest.raises(ParameterError, match="n_mfcc must be 20"):
        TimbreParams(n_mfcc=13)
    with pytest.raises(ParameterError, match="rolloff must be in"):
        TimbreParams(rolloff=1.5)


def test_the_store_holds_each_clips_summary_of_its_frames(tiny_corpus, tmp_path):
    ingest(tiny_corpus, tmp_path)
    store = ViewStore(tmp_path, get_view("timbre"))
    report = store.build(audio_root=tiny_corpus, clip_seconds=[1, 5], workers=2)
    assert report.failed.height == 0 and report.clip_lengths[5]["clips"] == 30
    t = store.tensors(clip_seconds=5, genre="blues")
    assert t.x.shape == (3, 50) and t.arrays == ("timbre",)
    for row, (sid,) in enumerate(t.index.select("song_id").iter_rows()):
        y = decode(tiny_corpus / "genres_original" / "blues" / f"{sid}.wav", sr=SR).y
        frames = frame_features(y, params=TimbreParams())[:, : 1 + 5 * SR // 512].astype(np.float64)
        np.testing.assert_allclose(t.x[row, :25], frames.mean(axis=1), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(t.x[row, 25:], frames.std(axis=1), rtol=1e-4, atol=1e-4)
    table = store.table("timbre", clip_seconds=5, genre="blues").collect()
    assert table.columns[-50:] == list(COLUMNS)
    np.testing.assert_array_equal(table.select(COLUMNS).to_numpy(), t.x)
    gen = store.generation(5)
    assert sorted(p.name for p in gen.iterdir()) == ["index.parquet", "manifest.json", "timbre.h5", "timbre.parquet"]
    assert pl.read_parquet(gen / "timbre.parquet").height == 30
    reg = store.describe()
    assert reg["view"] == "timbre" and reg["columns"] == list(COLUMNS)
    assert reg["clip_lengths"]["1"]["clips"] == 30 * 6 // 6
