import numpy as np
import pytest
import soundfile as sf

from feature_store.audio import decode, fit_length
from feature_store.errors import AudioError


def test_stereo_44k_is_mixed_and_resampled(tmp_path):
    sr = 44100
    t = np.arange(2 * sr) / sr
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, -left * 0 + 0.25], axis=1)
    path = tmp_path / "s.wav"
    sf.write(path, stereo, sr, subtype="FLOAT")
    a = decode(path, sr=22050, nominal_seconds=None)
    assert a.source_sr == 44100 and a.source_channels == 2
    assert a.y.shape == (2 * 22050,)
    assert a.duration == pytest.approx(2.0)
    # mean of the channels: a 440 Hz sine of amplitude 0.25 around an offset of 0.125
    assert a.y[1000:-1000].mean() == pytest.approx(0.125, abs=0.01)
    spec = np.abs(np.fft.rfft(a.y - a.y.mean()))
    assert np.argmax(spec) * 22050 / a.y.size == pytest.approx(440, abs=1)


def test_pads_and_crops_to_nominal_length(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, np.ones(22050 // 2, np.float32) * 0.1, 22050)
    a = decode(path, sr=22050, nominal_seconds=1.0)
    assert a.y.shape == (22050,)
    assert a.duration == pytest.approx(0.5)
    assert a.y[-10:].tolist() == [0.0] * 10
    np.testing.assert_array_equal(fit_length(np.arange(10.0), 4), [0, 1, 2, 3])


def test_non_finite_samples_are_zeroed_and_counted(tmp_path):
    y = np.full(1000, 0.2, np.float32)
    y[[3, 10, 500]] = [np.nan, np.inf, -np.inf]
    path = tmp_path / "nan.wav"
    sf.write(path, y, 22050, subtype="FLOAT")
    a = decode(path, sr=22050, nominal_seconds=None)
    assert a.non_finite == 3
    assert np.isfinite(a.y).all()
    assert a.y[3] == 0.0 and a.y[4] == pytest.approx(0.2)


@pytest.mark.parametrize("content", [b"", b"not audio at all " * 100])
def test_undecodable_files_raise_audio_error(tmp_path, content):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError):
        decode(path, sr=22050)


def _libsndfile(path):
    y, sr = sf.read(str(path), dtype="float32", always_2d=False)
    return (y.mean(axis=1, dtype=np.float32) if y.ndim == 2 else y), sr


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_S8"])
@pytest.mark.parametrize("channels", [1, 2])
def test_flac_fast_path_gives_libsndfiles_samples(tmp_path, subtype, channels):
    """16/24-bit FLAC is decoded by miniaudio, 8-bit falls back: the samples are the same."""
    from feature_store.audio import _read_flac

    rng = np.random.default_rng(channels)
    y = rng.uniform(-1, 1, (22050, channels)).squeeze()
    edges = np.array([-1.0, 1.0, 0.0, 0.5, -0.5, 1e-6, -1e-6, 0.999, -0.999, 0.25])
    y[:10] = edges if channels == 1 else edges[:, None]
    path = tmp_path / f"x-{subtype}.flac"
    sf.write(path, y, 22050, subtype=subtype)
    fast = _read_flac(path)
    assert (fast is None) == (subtype == "PCM_S8")
    ref, sr = _libsndfile(path)
    got = decode(path, sr=22050, nominal_seconds=None)
    np.testing.assert_array_equal(got.y, ref)
    assert got.source_channels == channels and got.source_sr == sr == 22050


@pytest.mark.parametrize("cut", [0.3, 0.9])
def test_a_truncated_flac_is_left_to_libsndfile(tmp_path, cut):
    """dr_flac decodes fewer frames than the header declares: soundfile decides instead."""
    path = tmp_path / "cut.flac"
    sf.write(path, np.random.default_rng(0).uniform(-1, 1, 44100), 22050, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    from feature_store.audio import _read_flac

    assert _read_flac(path) is None
    try:
        ref = _libsndfile(path)[0]
    except Exception:
        with pytest.raises(AudioError):
            decode(path, sr=22050, nominal_seconds=None)
    else:
        np.testing.assert_array_equal(decode(path, sr=22050, nominal_seconds=None).y, ref)


def test_not_really_flac_raises_audio_error(tmp_path):
    path = tmp_path / "fake.flac"
    path.write_bytes(b"fLaC" + b"\x00" * 200)
    with pytest.raises(AudioError):
        decode(path, sr=22050)


@pytest.mark.parametrize("suffix,subtype", [(".flac", "PCM_16"), (".wav", "PCM_16"), (".au", "PCM_16"), (".ogg", "VORBIS")])
def test_decoding_given_bytes_equals_decoding_the_file(tmp_path, suffix, subtype):
    path = tmp_path / f"x{suffix}"
    y = 0.3 * np.sin(np.linspace(0, 400, 30000))
    sf.write(path, np.stack([y, -y], axis=1), 22050, subtype=subtype)
    a = decode(path, sr=16000, nominal_seconds=2.0)
    b = decode(path, sr=16000, nominal_seconds=2.0, data=path.read_bytes())
    np.testing.assert_array_equal(a.y, b.y)
    assert (a.source_sr, a.source_channels, a.duration) == (b.source_sr, b.source_channels, b.duration)
    with pytest.raises(AudioError):
        decode(path, sr=16000, data=b"garbage" * 10)
