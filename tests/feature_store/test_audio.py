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
