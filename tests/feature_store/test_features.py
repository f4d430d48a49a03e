import numpy as np
import pytest

from feature_store.errors import ParameterError
from feature_store.features import (
    MIN_CLIP_COVERAGE,
    band_summary,
    clip_starts,
    hann_window,
    mel_filterbank,
    mel_spectrogram,
    power_mel,
    power_to_db,
    slice_clips,
)
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


def _librosa_mel(y: np.ndarray, params: FeatureParams) -> np.ndarray:
    import librosa

    S = librosa.feature.melspectrogram(
        y=y, sr=params.sr, n_fft=params.n_fft, hop_length=params.hop_length, n_mels=params.n_mels,
        fmin=params.fmin, fmax=params.fmax, power=params.power,
    )
    return librosa.power_to_db(S, ref=1.0, top_db=params.top_db)


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    sr = 22050
    t = np.arange(3 * sr) / sr
    return {
        "noise": (0.1 * rng.standard_normal(3 * sr)).astype(np.float32),
        "chirp": (0.5 * np.sin(2 * np.pi * (100 + 1500 * t) * t)).astype(np.float32),
        "sine": _sine(440.0, seconds=3.0),
        "clicks": np.where(np.arange(3 * sr) % 5000 == 0, 1.0, 0.0).astype(np.float32),
        "silence": np.zeros(3 * sr, np.float32),
    }


@pytest.mark.parametrize("name", ["noise", "chirp", "sine", "clicks", "silence"])
@pytest.mark.parametrize(
    "params",
    [P, P.replace(fmin=30.0, fmax=8000.0, n_mels=64), P.replace(n_fft=1024, hop_length=256), P.replace(n_fft=1023, hop_length=300)],
    ids=["defaults", "band-limited", "n_fft-1024", "odd-n_fft"],
)
def test_mel_equals_librosa(name, params):
    """Our blocked STFT + sparse filterbank gives librosa's numbers (float32 sums aside)."""
    y = _signals()[name]
    ours = mel_spectrogram(y, params=params)
    ref = _librosa_mel(y, params)
    assert ours.shape == ref.shape == (params.n_mels, 1 + y.size // params.hop_length)
    _assert_close_db(ours, ref)


def _assert_close_db(ours: np.ndarray, ref: np.ndarray, *, range_db: float = 60.0) -> None:
    """Equal within 2e-3 dB over the top ``range_db`` of the range; below that, float32
    roundoff of either FFT (1e-7 of the frame's peak) is a visible share of the value."""
    loud = ref >= ref.max() - range_db
    np.testing.assert_allclose(ours[loud], ref[loud], atol=2e-3)
    np.testing.assert_allclose(ours, ref, atol=0.05)


@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels", "fmin", "fmax"),
    [(22050, 2048, 128, 0.0, None), (16000, 512, 96, 0.0, None), (22050, 1023, 64, 30.0, 8000.0), (44100, 4096, 40, 300.0, 8000.0)],
)
def test_filterbank_and_window_equal_librosa(sr, n_fft, n_mels, fmin, fmax):
    import librosa

    ours = mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-9)
    win = librosa.filters.get_window("hann", n_fft, fftbins=True)
    np.testing.assert_allclose(hann_window(n_fft), win, rtol=0, atol=1e-7)


def test_filterbank_known_values():
    """Slaney scale: 1 kHz is mel 15; each filter has unit area (in Hz) before sampling."""
    from feature_store.features import _hz_to_mel, _mel_to_hz

    assert _hz_to_mel(1000.0) == pytest.approx(15.0)
    assert _hz_to_mel(500.0) == pytest.approx(7.5)
    np.testing.assert_allclose(_mel_to_hz(np.array([7.5, 15.0, 42.0])), [500.0, 1000.0, 6400.0])
    w = mel_filterbank(sr=22050, n_fft=2048, n_mels=128)
    assert (w >= 0).all() and (w.max(axis=1) > 0).all()
    # a filter peaks at its centre frequency, the bin nearest the (i + 1)-th mel point
    centres = _mel_to_hz(np.linspace(0.0, _hz_to_mel(11025.0), 130))[1:-1]
    nearest = np.rint(centres / (22050 / 2048))
    assert np.abs(w.argmax(axis=1) - nearest).max() <= 1
    np.testing.assert_array_equal(hann_window(4), np.float32([0.0, 0.5, 1.0, 0.5]))


@pytest.mark.filterwarnings("ignore:n_fft=.*is too large")
@pytest.mark.parametrize("n", [1, 100, 1023, 1024, 2048, 2049, 5000])
def test_mel_of_short_audio_equals_librosa(n):
    y = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    _assert_close_db(mel_spectrogram(y, params=P), _librosa_mel(y, P))


def test_mel_with_magnitude_power_equals_librosa():
    y = _signals()["noise"] + _signals()["chirp"]
    params = P.replace(power=1.0)
    # magnitudes span 80 dB = 1e-8 of the peak, below float32 resolution: compare the top 40 dB
    ours, ref = mel_spectrogram(y, params=params), _librosa_mel(y, params)
    loud = ref >= ref.max() - 40.0
    assert loud.mean() > 0.3
    np.testing.assert_allclose(ours[loud], ref[loud], atol=1e-2)


@pytest.mark.parametrize("block_frames", [1, 7, 128, 10_000])
def test_power_mel_does_not_depend_on_the_block_size(block_frames):
    y = _signals()["noise"]
    np.testing.assert_array_equal(power_mel(y, params=P, block_frames=block_frames), power_mel(y, params=P, block_frames=64))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_power_mel_rejects_a_bad_block_size(bad):
    with pytest.raises(ParameterError, match="block_frames"):
        power_mel(np.zeros(4096, np.float32), params=P, block_frames=bad)


def test_power_to_db_known_values():
    S = np.array([[1.0, 0.1, 1e-3, 0.0, 1e-12]], dtype=np.float32)
    np.testing.assert_allclose(power_to_db(S.copy(), top_db=None), [[0.0, -10.0, -30.0, -100.0, -100.0]], atol=1e-5)
    np.testing.assert_allclose(power_to_db(S.copy(), top_db=20.0), [[0.0, -10.0, -20.0, -20.0, -20.0]], atol=1e-5)
    with pytest.raises(ParameterError, match="top_db"):
        power_to_db(S.copy(), top_db=-1.0)


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


@pytest.mark.parametrize(
    "windows",
    [[(0, 44), (0, 216), (0, 646), (0, 1292)], [(k * 44, 44) for k in range(29)] + [(5, 7), (600, 692)], [(3, 1)]],
    ids=["first", "segments", "one-frame"],
)
def test_window_summaries_equal_band_summary(windows):
    from feature_store.features import window_summaries

    mel = np.random.default_rng(3).normal(-40.0, 15.0, (128, 1292)).astype(np.float32)
    got = window_summaries(mel, windows=windows)
    assert sorted(got) == sorted(windows)
    for s, n in windows:
        assert got[(s, n)].dtype == np.float32 and got[(s, n)].shape == (256,)
        np.testing.assert_allclose(got[(s, n)], band_summary(mel[None, :, s : s + n])[0], rtol=1e-5, atol=1e-4)
    with pytest.raises(ParameterError, match="do not fit"):
        window_summaries(mel, windows=[(1290, 44)])
