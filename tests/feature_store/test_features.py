import numpy as np
import pytest

from feature_store.errors import ParameterError
from feature_store.features import MIN_CLIP_COVERAGE, band_summary, clip_starts, mel_spectrogram, slice_clips
from feature_store.params import FeatureParams

P = FeatureParams()


def _sine(freq: float, seconds: float = 2.0, sr: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _band_centres(params: FeatureParams) -> np.ndarray:
    import librosa

    return librosa.mel_frequencies(n_mels=params.n_mels + 2, fmin=params.fmin, fmax=params.sr / 2)[1:-1]


@pytest.mark.parametrize("freq", [110.0, 440.0, 1000.0, 3000.0, 8000.0])
def test_sine_energy_lands_in_its_mel_band(freq):
    mel = mel_spectrogram(_sine(freq), params=P)
    assert mel.shape == (128, 1 + 2 * 22050 // 512)
    assert mel.dtype == np.float32
    loudest = int(np.argmax(mel[:, 5:-5].mean(axis=1)))
    nearest = int(np.argmin(np.abs(_band_centres(P) - freq)))
    assert abs(loudest - nearest) <= 1
    # the band is far louder than the opposite end of the spectrum
    far = 0 if nearest > 64 else 127
    assert mel[loudest, 5:-5].mean() - mel[far, 5:-5].mean() > 40


def test_two_sines_give_two_peaks():
    y = _sine(300.0) + _sine(5000.0)
    profile = mel_spectrogram(y, params=P)[:, 5:-5].mean(axis=1)
    centres = _band_centres(P)
    for f in (300.0, 5000.0):
        b = int(np.argmin(np.abs(centres - f)))
        assert profile[b - 1 : b + 2].max() > np.median(profile) + 30


def test_silence_stays_finite_at_the_floor():
    mel = mel_spectrogram(np.zeros(22050, np.float32), params=P)
    assert np.isfinite(mel).all()
    np.testing.assert_allclose(mel, -100.0)  # 10 * log10(amin = 1e-10)


def test_top_db_floors_quiet_bands():
    mel = mel_spectrogram(_sine(1000.0), params=P)
    assert mel.max() - mel.min() <= 80.0 + 1e-3
    loose = mel_spectrogram(_sine(1000.0), params=P.replace(top_db=None))
    assert loose.max() - loose.min() > 80.0


@pytest.mark.parametrize("bad", [np.zeros((2, 100), np.float32), np.zeros(0, np.float32), np.array([0.0, np.nan] * 600)])
def test_bad_audio_raises(bad):
    with pytest.raises(ParameterError):
        mel_spectrogram(bad, params=P)


@pytest.mark.parametrize("clip", [1, 5, 15])
def test_slices_equal_a_separate_stft_except_the_last_frames(clip):
    """The one-STFT slices match a per-clip STFT on every frame not touched by the cut."""
    rng = np.random.default_rng(clip)
    y = rng.standard_normal(30 * 22050).astype(np.float32) * 0.1
    params = P.replace(top_db=None, mode="segments")
    full = mel_spectrogram(y, params=params)
    frames = params.clip_frames(clip)
    k = 1  # the second segment: both its edges are cuts
    start = params.segment_starts(clip)[k]
    sliced = slice_clips(full, [start], frames)[0]
    seg = y[start * 512 : start * 512 + clip * 22050]
    own = mel_spectrogram(seg, params=params)
    edge = params.n_fft // (2 * params.hop_length)  # 2 frames see across the cut
    np.testing.assert_allclose(sliced[:, edge:-edge], own[:, edge : frames - edge], atol=1e-3)


def test_slice_clips_stacks_exact_frames():
    mel = np.arange(4 * 20, dtype=np.float32).reshape(4, 20)
    out = slice_clips(mel, [0, 7, 15], 5)
    assert out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out[1], mel[:, 7:12])
    with pytest.raises(ParameterError, match="exceeds"):
        slice_clips(mel, [16], 5)


@pytest.mark.parametrize(
    ("mode", "duration", "clip", "expected"),
    [
        ("first", 30.0, 5, 1),
        ("first", 4.0, 1, 1),
        ("first", 4.0, 5, 0),  # a 4 s song has no 5 s clip
        ("first", 29.9, 30, 1),  # GTZAN's short clips still give a 30 s clip
        ("segments", 30.0, 1, 30),
        ("segments", 4.0, 1, 4),
        ("segments", 4.0, 5, 0),
        ("segments", 12.0, 5, 2),
        ("segments", 30.0, 15, 2),
    ],
)
def test_clip_starts_respect_real_audio(mode, duration, clip, expected):
    starts = clip_starts(params=P.replace(mode=mode), clip_seconds=clip, duration=duration)
    assert len(starts) == expected
    for seg, start in starts:
        t0 = start * 512 / 22050
        assert min(duration, t0 + clip) - t0 >= MIN_CLIP_COVERAGE * clip


def test_band_summary_known_values():
    clips = np.zeros((2, 3, 4), np.float32)
    clips[0, 1] = [1, 3, 1, 3]
    clips[1] = 7
    s = band_summary(clips)
    assert s.shape == (2, 6)
    np.testing.assert_allclose(s[0], [0, 2, 0, 0, 1, 0])
    np.testing.assert_allclose(s[1], [7, 7, 7, 0, 0, 0])
