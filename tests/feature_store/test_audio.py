import numpy as np
import pytest
import soundfile as sf

from feature_store import audio, audio_stream, decoders
from feature_store.audio import count_frames, decode, fit_length
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
    rng = np.random.default_rng(channels)
    y = rng.uniform(-1, 1, (22050, channels)).squeeze()
    edges = np.array([-1.0, 1.0, 0.0, 0.5, -0.5, 1e-6, -1e-6, 0.999, -0.999, 0.25])
    y[:10] = edges if channels == 1 else edges[:, None]
    path = tmp_path / f"x-{subtype}.flac"
    sf.write(path, y, 22050, subtype=subtype)
    with decoders.open_source(path) as src:
        assert src.decoder == ("libsndfile" if subtype == "PCM_S8" else "dr_flac")
    ref, sr = _libsndfile(path)
    got = decode(path, sr=22050, nominal_seconds=None)
    np.testing.assert_array_equal(got.y, ref)
    assert got.source_channels == channels and got.source_sr == sr == 22050
    with open(path, "rb") as fh:  # from bytes too
        np.testing.assert_array_equal(decode(path, sr=22050, nominal_seconds=None, data=fh.read()).y, ref)


@pytest.mark.parametrize("cut", [0.3, 0.9])
def test_a_truncated_flac_gives_the_frames_present(tmp_path, cut):
    """dr_flac decodes fewer frames than the header declares: libsndfile decides when it can
    read the file, else the frames dr_flac decoded are used; either way they are the
    intact file's first samples."""
    path = tmp_path / "cut.flac"
    sf.write(path, np.random.default_rng(0).uniform(-1, 1, 44100), 22050, subtype="PCM_16")
    intact = _libsndfile(path)[0]
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with decoders.open_source(path) as src, pytest.raises(decoders.ShortRead):
        decoders.read_mono(src, None)
    got = decode(path, sr=22050, nominal_seconds=None)
    assert 0 < got.frames < intact.size and got.complete
    np.testing.assert_array_equal(got.y, intact[: got.frames])
    assert count_frames(path) == got.frames


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


# ---------------------------------------------------------------------------------------
# issue 13: what counts as audio, and memory that does not follow the file's claims
# ---------------------------------------------------------------------------------------
def _wav(path, *, sr, frames, channels=1, claim_frames=None, rng=0):
    """A 16-bit PCM WAV written byte by byte: any sample rate, and a data chunk that may
    claim more frames than follow it."""
    import struct

    pcm = np.random.default_rng(rng).normal(0, 3000, frames * channels).astype("<i2").tobytes()
    align = 2 * channels
    size = len(pcm) if claim_frames is None else claim_frames * align
    header = (b"RIFF" + struct.pack("<I", min(36 + size, 0xFFFFFFFF)) + b"WAVE"
              + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sr, (sr * align) & 0xFFFFFFFF, align, 16)
              + b"data" + struct.pack("<I", size))
    path.write_bytes(header + pcm)
    return path


def _flac_total(path, total):
    """Rewrite the total-samples field of a FLAC's STREAMINFO (36 bits; 0 = unknown)."""
    d = bytearray(path.read_bytes())
    assert d[:4] == b"fLaC" and d[4] & 0x7F == 0  # STREAMINFO comes first
    d[21] = (d[21] & 0xF0) | ((total >> 32) & 0x0F)
    d[22:26] = (total & 0xFFFFFFFF).to_bytes(4, "big")
    path.write_bytes(bytes(d))
    return path


@pytest.fixture(scope="module")
def hour_of_silence(tmp_path_factory):
    """An hour of 22050 Hz mono digital silence: about 250 KB of FLAC."""
    path = tmp_path_factory.mktemp("hour") / "hour.flac"
    with sf.SoundFile(path, "w", samplerate=22050, channels=1, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros(22050 * 600, np.int16)
        for _ in range(6):
            f.write(block)
    assert path.stat().st_size < 400_000
    return path


@pytest.mark.parametrize(("sr", "accepted"), [(1, False), (2000, False), (3999, False), (4000, True),
                                              (384000, True), (384001, False), (1_000_000, False)])
def test_sample_rates_outside_the_sane_range_are_refused_everywhere(tmp_path, sr, accepted):
    """probe, decode and stream share one definition, and say the same thing."""
    path = _wav(tmp_path / "x.wav", sr=sr, frames=20000)
    if accepted:
        info = audio.probe(path)
        assert (info.format, info.sample_rate, info.channels, info.frames) == ("wav", sr, 1, 20000)
        assert info.duration == pytest.approx(20000 / sr)
        assert decode(path, sr=22050, nominal_seconds=None).source_sr == sr
        return
    reason = f"sample rate {sr} Hz is outside 4000..384000 Hz"
    with pytest.raises(AudioError) as exc:
        audio.probe(path)
    assert str(exc.value) == reason  # what ingest records
    for call in (lambda: decode(path, sr=22050), lambda: decode(path, sr=22050, nominal_seconds=None),
                 lambda: audio_stream.stream(path, sr=22050), lambda: count_frames(path)):
        with pytest.raises(AudioError) as exc:
            call()
        assert str(exc.value) == f"cannot decode x.wav: {reason}"  # what predict reports


def test_a_text_file_named_au_is_not_audio(tmp_path):
    """libsndfile guesses header-less raw data for it: ingest and predict both refuse it."""
    path = tmp_path / "notes.au"
    path.write_text("These are my liner notes, not audio.\n" * 40)
    reason = "no audio header: libsndfile could only guess header-less raw data"
    with pytest.raises(AudioError, match=f"^{reason}$"):
        audio.probe(path)
    for call in (lambda: decode(path, sr=22050, nominal_seconds=None), lambda: audio_stream.stream(path, sr=22050)):
        with pytest.raises(AudioError, match=f"^cannot decode notes.au: {reason}$"):
            call()


@pytest.mark.parametrize(("content", "reason"), [
    (b"", r"^empty file \(0 bytes\)$"),
    (b"not audio at all " * 100, r"^unreadable header: .*not recognised"),
])
def test_probe_refuses_what_is_not_audio(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=reason):
        audio.probe(path)
    with pytest.raises(AudioError, match="^cannot read file"):
        audio.probe(tmp_path / "missing.wav")


def test_a_header_with_no_frames_holds_no_audio(tmp_path):
    path = _wav(tmp_path / "empty-data.wav", sr=22050, frames=0)
    with pytest.raises(AudioError, match="^holds no audio samples$"):
        audio.probe(path)
    with pytest.raises(AudioError, match="^cannot decode empty-data.wav: holds no audio samples$"):
        decode(path, sr=22050)


def test_decode_reads_only_the_nominal_length_and_a_margin(tmp_path):
    """A 100 s file: 31 s are decoded, and the first 30 s are those of the whole file."""
    sr = 22050
    y = (0.3 * np.sin(np.arange(100 * sr) / 9.0)).astype(np.float32)
    path = tmp_path / "long.flac"
    sf.write(path, y, sr, subtype="PCM_24")
    a = decode(path, sr=16000)
    assert a.frames == 31 * sr and not a.complete and a.duration == pytest.approx(31.0)
    assert a.y.shape == (30 * 16000,)
    whole = decode(path, sr=16000, nominal_seconds=None)
    assert whole.frames == 100 * sr and whole.complete
    # soxr's output before the cut does not depend on what follows the margin
    np.testing.assert_allclose(a.y, whole.y[: 30 * 16000], rtol=0, atol=1e-6)
    short = decode(path, sr=sr, nominal_seconds=2.0)
    assert short.frames == 3 * sr and short.y.shape == (2 * sr,)
    np.testing.assert_array_equal(short.y, _libsndfile(path)[0][: 2 * sr])


def test_decode_memory_does_not_follow_the_files_length(hour_of_silence):
    """An hour of FLAC silence: decode allocates its 31 s, count_frames nothing of size."""
    import tracemalloc

    tracemalloc.start()
    try:
        a = decode(hour_of_silence, sr=22050)
        n = count_frames(hour_of_silence)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 3600 * 22050 and audio.probe(hour_of_silence).frames == n
    assert a.frames == 31 * 22050 and not a.complete and not a.y.any()
    assert peak < 16e6  # the hour would be 317 MB of float32; 31 s is 2.7 MB (two copies)


def test_count_frames_finds_what_a_lying_flac_holds(tmp_path):
    """STREAMINFO claims an hour, or says nothing: the frames present are counted."""
    sr = 22050
    intact = tmp_path / "intact.flac"
    sf.write(intact, np.random.default_rng(3).uniform(-0.5, 0.5, 3 * sr), sr, subtype="PCM_16")
    ref = _libsndfile(intact)[0]
    for total in (3600 * sr, 0):
        path = tmp_path / f"lie-{total}.flac"
        path.write_bytes(intact.read_bytes())
        _flac_total(path, total)
        assert audio.probe(path).frames == (total or None)
        assert count_frames(path) == 3 * sr
        a = decode(path, sr=sr, nominal_seconds=None)
        assert a.frames == 3 * sr and a.complete
        np.testing.assert_array_equal(a.y, ref)


def test_a_wav_promising_more_than_it_holds(tmp_path):
    """libsndfile shortens it to the data present; declared_frames tells what it promised."""
    path = _wav(tmp_path / "lie.wav", sr=22050, frames=22050, claim_frames=(0xFFFFFFF0 // 2))
    assert audio.probe(path).frames == 22050 == count_frames(path)
    assert audio.declared_frames(path) == 0xFFFFFFF0 // 2
    assert decode(path, sr=22050, nominal_seconds=None).frames == 22050


def test_max_seconds_refuses_long_files(tmp_path):
    path = tmp_path / "ten.wav"
    sf.write(path, np.full(10 * 8000, 0.1, np.float32), 8000)
    with pytest.raises(audio.AudioTooLongError, match=r"^ten\.wav lasts 10\.0 s, more than the maximum of 5 s$"):
        decode(path, sr=8000, nominal_seconds=None, max_seconds=5)
    assert decode(path, sr=8000, nominal_seconds=None, max_seconds=10).frames == 10 * 8000
    with pytest.raises(audio.AudioTooLongError, match=r"^ten\.wav lasts 10\.0 s, more than the maximum of 5 s$"):
        audio_stream.stream(path, sr=8000, max_seconds=5)
    s = audio_stream.stream(path, sr=8000, max_seconds=5, over="crop", block_seconds=2)
    blocks = list(s)
    assert [b.size for b in blocks] == [16000, 16000, 8000] and s.capped and s.frames == 5 * 8000
    s = audio_stream.stream(path, sr=8000, max_seconds=10)
    assert sum(b.size for b in s) == 10 * 8000 and not s.capped


def test_a_flac_holding_more_than_max_seconds_behind_an_unknown_length(tmp_path):
    """No declared length: the cap is found while reading."""
    path = tmp_path / "unknown.flac"
    sf.write(path, np.full(6 * 8000, 0.1), 8000, subtype="PCM_16")
    _flac_total(path, 0)
    too_long = r"^unknown\.flac holds more audio, more than the maximum of 5 s$"
    with pytest.raises(audio.AudioTooLongError, match=too_long):
        decode(path, sr=8000, nominal_seconds=None, max_seconds=5)
    with pytest.raises(audio.AudioTooLongError, match=too_long):
        list(audio_stream.stream(path, sr=8000, max_seconds=5))
    s = audio_stream.stream(path, sr=8000, max_seconds=5, over="crop")
    assert sum(b.size for b in s) == 5 * 8000 and s.capped


@pytest.mark.parametrize(("source_sr", "channels", "suffix", "subtype"), [
    (22050, 1, ".flac", "PCM_16"),  # dr_flac, no resampling
    (44100, 2, ".flac", "PCM_24"),  # dr_flac, stereo, resampled
    (8000, 1, ".wav", "PCM_16"),  # libsndfile, upsampled
    (48000, 6, ".wav", "FLOAT"),  # libsndfile, six channels mixed in blocks
])
def test_stream_equals_the_whole_file_decode(tmp_path, source_sr, channels, suffix, subtype):
    """Blocks at the target rate whose concatenation is decode(..., nominal_seconds=None).y
    (soxr's streaming resampler: measured identical; asserted within 1e-6)."""
    rng = np.random.default_rng(source_sr)
    t = np.arange(int(7.3 * source_sr)) / source_sr
    y = 0.4 * np.sin(2 * np.pi * 440 * t)[:, None] * rng.uniform(0.2, 1, channels)
    y += rng.normal(0, 0.01, (t.size, channels))
    y[100] = 1.0  # one clipped sample per channel
    path = tmp_path / f"x{suffix}"
    sf.write(path, y.squeeze(), source_sr, subtype=subtype)
    whole = decode(path, sr=22050, nominal_seconds=None)
    s = audio_stream.stream(path, sr=22050, block_seconds=2.0)
    assert s.info == audio.probe(path)  # dr_flac reads the header as libsndfile does
    blocks = list(s)
    got = np.concatenate(blocks)
    assert got.dtype == np.float32 and got.shape == whole.y.shape
    np.testing.assert_allclose(got, whole.y, rtol=0, atol=1e-6)
    assert max(b.size for b in blocks) <= 2.0 * 22050 + 2048  # a block, plus the resampler's delay
    assert (s.frames, s.non_finite, s.capped, s.truncated) == (whole.frames, 0, False, False)
    assert s.duration == pytest.approx(whole.duration) and s.clipped_fraction == pytest.approx(whole.clipped_fraction)


def test_stream_of_an_hour_keeps_one_block_in_memory(hour_of_silence):
    import tracemalloc

    tracemalloc.start()
    try:
        s = audio_stream.stream(hour_of_silence, sr=16000, block_seconds=30.0)
        n = peak_block = 0
        for block in s:
            n += block.size
            peak_block = max(peak_block, block.size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 3600 * 16000 and s.frames == 3600 * 22050 and s.duration == 3600.0
    assert peak < 16e6  # a 30 s block is 2.6 MB at 22050 Hz; the hour would be 230 MB at 16 kHz


def test_stream_of_a_truncated_flac_uses_the_frames_present(tmp_path):
    path = tmp_path / "cut.flac"
    sf.write(path, np.random.default_rng(1).uniform(-1, 1, 5 * 22050), 22050, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[: 2 * path.stat().st_size // 3])
    s = audio_stream.stream(path, sr=22050, block_seconds=1.0)
    got = np.concatenate(list(s))
    assert s.truncated and 0 < s.frames < 5 * 22050
    np.testing.assert_array_equal(got, decode(path, sr=22050, nominal_seconds=None).y[: got.size])


def test_stream_refuses_bad_arguments(tmp_path):
    from feature_store.errors import ParameterError

    path = tmp_path / "x.wav"
    sf.write(path, np.zeros(8000, np.float32), 8000)
    for kwargs in ({"block_seconds": 0}, {"max_seconds": -1}, {"over": "truncate"}, {"sr": 0}):
        with pytest.raises(ParameterError):
            audio_stream.stream(path, **({"sr": 8000} | kwargs))
    s = audio_stream.stream(path, sr=8000)
    list(s)
    with pytest.raises(ParameterError, match="once"):
        iter(s)


def test_memory_errors_and_decoder_failures_fail_the_file(tmp_path, monkeypatch):
    """A MemoryError or any decoder exception while decoding one file is an AudioError."""
    import soxr

    path = tmp_path / "x.wav"
    sf.write(path, np.full(8000, 0.1, np.float32), 8000)

    def oom(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(soxr, "resample", oom)
    with pytest.raises(AudioError, match=r"^cannot decode x\.wav: out of memory$"):
        decode(path, sr=22050)
    monkeypatch.setattr(soxr, "ResampleStream", oom)
    with pytest.raises(AudioError, match=r"^cannot decode x\.wav: out of memory$"):
        list(audio_stream.stream(path, sr=22050))

    def broken(self, out):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(decoders.SndSource, "read_into", broken)
    with pytest.raises(AudioError, match=r"^cannot decode x\.wav: decoder exploded$"):
        decode(path, sr=8000)
    with pytest.raises(AudioError, match=r"^cannot decode x\.wav: decoder exploded$"):
        list(audio_stream.stream(path, sr=8000))
