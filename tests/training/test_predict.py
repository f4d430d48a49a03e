"""Prediction library: whole-file windows, any format and rate, run choice, per-file failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from feature_store import atomic
from feature_store.errors import AudioError, ParameterError, StoreError
from feature_store.features import mel_spectrogram
from feature_store.params import FeatureParams
from feature_store.datasets.gtzan import GENRES
from training.predict import FileFailure, FilePrediction, Predictor, choose_run, predict, window_starts

SR = 22050


# ---------------------------------------------------------------------------------------
# pure functions
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 511, 512, 2047, 22050, 22050 * 7 + 333])
@pytest.mark.parametrize("block_frames", [1, 7, 4096])
def test_whole_file_mel_in_blocks_equals_the_store_mel(n: int, block_frames: int) -> None:
    """Prediction computes a whole file's mel in bounded blocks: the store's numbers."""
    rng = np.random.default_rng(n)
    y = (0.1 * rng.standard_normal(n)).astype(np.float32)
    p = FeatureParams()
    expected = mel_spectrogram(y, params=p)
    got = mel_spectrogram(y, params=p, block_frames=block_frames)
    assert got.shape == expected.shape == (128, 1 + n // 512)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_whole_file_mel_rejects_bad_input() -> None:
    with pytest.raises(ParameterError, match="mono"):
        mel_spectrogram(np.zeros((2, 100), np.float32), params=FeatureParams())
    with pytest.raises(ParameterError, match="block_frames"):
        mel_spectrogram(np.zeros(100, np.float32), params=FeatureParams(), block_frames=0)


def test_window_starts_known_answers() -> None:
    # 5 s windows (216 frames) at 22050/512 frames per second
    hop = 5 * SR / 512
    # exactly one window
    assert window_starts(total_frames=216, frames=216, hop_frames=hop) == [0]
    # 12.3 s: two whole windows, then a tail of 2.3 s (> 5 % of a window) aligned to the end
    total = 1 + int(12.3 * SR) // 512
    assert window_starts(total_frames=total, frames=216, hop_frames=hop) == [0, 215, total - 216]
    # 30.0 s: six windows at floor(k * 215.33), no tail
    total = 1 + 30 * SR // 512
    assert window_starts(total_frames=total, frames=216, hop_frames=hop) == [0, 215, 430, 645, 861, 1076]
    # a tail of less than 5 % of a window gets no extra window
    assert window_starts(total_frames=216 + 5, frames=216, hop_frames=216) == [0]
    assert window_starts(total_frames=216 + 20, frames=216, hop_frames=216) == [0, 20]
    # overlapping windows with a half hop
    assert window_starts(total_frames=432, frames=216, hop_frames=108) == [0, 108, 216]


def test_window_starts_rejects_bad_input() -> None:
    with pytest.raises(ParameterError):
        window_starts(total_frames=10, frames=216, hop_frames=216)
    with pytest.raises(ParameterError):
        window_starts(total_frames=300, frames=216, hop_frames=0)


# ---------------------------------------------------------------------------------------
# choosing a run, on a model store of metrics only
# ---------------------------------------------------------------------------------------
def _fake_run(root: Path, *, model: str, clip: int, seed: int, acc: float, params: FeatureParams | None = None) -> Path:
    params = params or FeatureParams()
    from training.record import Costs, RunRecord

    run = root / f"mel-{params.hash()}" / model / f"clip-{clip:02d}s" / f"seed-{seed}"
    costs = Costs(parameters=1, model_mb=0.1, train_seconds=1.0, seconds_per_epoch=1.0, steady_seconds_per_epoch=1.0,
                  epochs_run=1, best_epoch=1, peak_rss_mb=1.0, rss_at_start_mb=1.0, inference_ms_per_clip=1.0)
    record = RunRecord(
        model=model, family="mel", view="mel", variant="", trainer="keras", clip_seconds=clip, seed=seed, config={},
        feature_params=params.to_dict(), params_hash=params.hash(), layout="mels_frames_1", frames=1,
        labels=list(GENRES), store_root="/s", test_store_root=None, held_out="seed:test", train_clips=1,
        train_songs=1, valid_clips=0, valid_songs=0, test_clips=1, test_songs=1, streamed=False, songs={},
        metrics={"song_accuracy": acc, "clip_accuracy": acc}, history={}, costs=costs)
    with atomic.new_generation(run) as tmp:
        record.save(tmp)
    return atomic.resolve_current(run)


def test_choose_run_picks_the_reports_best_then_its_best_seed(tmp_path: Path) -> None:
    _fake_run(tmp_path, model="seed_cnn", clip=5, seed=0, acc=0.50)
    _fake_run(tmp_path, model="seed_cnn", clip=5, seed=1, acc=0.70)  # pair mean 0.60
    _fake_run(tmp_path, model="seed_cnn", clip=30, seed=0, acc=0.55)
    best = _fake_run(tmp_path, model="seed_rnn", clip=15, seed=2, acc=0.65)
    _fake_run(tmp_path, model="seed_rnn", clip=15, seed=0, acc=0.62)  # pair mean 0.635: the best pair
    c = choose_run(model_root=tmp_path)
    assert (c.model, c.clip_seconds, c.seed) == ("seed_rnn", 15, 2)
    assert c.run_dir.resolve() == best.resolve()
    assert c.song_accuracy == pytest.approx(0.65)
    assert "best model of the report" in c.reason
    # narrowing: a model, a clip length, a seed
    assert choose_run(model_root=tmp_path, model="seed_cnn").clip_seconds == 5
    c = choose_run(model_root=tmp_path, model="seed_cnn", clip_seconds="30")
    assert (c.model, c.clip_seconds, c.seed) == ("seed_cnn", 30, 0)
    assert choose_run(model_root=tmp_path, model="seed_cnn", clip_seconds=5, seed=0).seed == 0


def test_choose_run_errors_name_what_exists(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no trained model under .*gtzan train"):
        choose_run(model_root=tmp_path)
    _fake_run(tmp_path, model="seed_cnn", clip=5, seed=0, acc=0.5)
    with pytest.raises(StoreError, match=r"model 'seed_rnn' at 30 s has not been trained yet \(trained: seed_cnn 5 s seed 0\)"):
        choose_run(model_root=tmp_path, model="seed_rnn", clip_seconds=30)
    with pytest.raises(ParameterError, match="clip_seconds must be one of"):
        choose_run(model_root=tmp_path, clip_seconds=7)
    with pytest.raises(ParameterError, match="unknown model"):
        choose_run(model_root=tmp_path, model="nope")
    with pytest.raises(StoreError, match="mode segments.*trained with: --mode first"):
        choose_run(model_root=tmp_path, params=FeatureParams(mode="segments"))
    assert choose_run(model_root=tmp_path, params=FeatureParams()).model == "seed_cnn"


# ---------------------------------------------------------------------------------------
# a real trained run (1 s clips, 1 epoch) on the tiny demo corpus
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from feature_store.demo import write_demo_corpus
    from feature_store.ingestion import ingest
    from feature_store.store import FeatureStore
    from training.train import TrainConfig, train_model

    root = tmp_path_factory.mktemp("predict")
    audio = write_demo_corpus(root / "demo", songs_per_genre=3, duration=6.0)
    ingest(audio, root / "store")
    store = FeatureStore(root / "store")
    store.build(audio_root=audio, clip_seconds=[1], workers=1)
    result = train_model(store_root=root / "store", model_root=root / "models", model="seed_cnn", clip_seconds=1,
                         config=TrainConfig(epochs=1, seed=0))
    return {"root": root, "audio": audio, "store": store, "run_dir": Path(result.run_dir),
            "predictor": Predictor(result.run_dir)}


def test_predictor_reads_the_run(trained: dict) -> None:
    p: Predictor = trained["predictor"]
    assert (p.model_name, p.clip_seconds, p.frames, p.layout) == ("seed_cnn", 1, 44, "mels_frames_1")
    assert p.labels == GENRES
    d = p.describe()
    assert d["model"] == "seed_cnn" and d["clip_seconds"] == 1 and d["seed"] == 0
    assert Path(d["run_dir"]) == trained["run_dir"]


def test_features_match_the_training_store(trained: dict) -> None:
    """A corpus song's first window is exactly the clip the model was trained on."""
    from feature_store.audio import decode

    p: Predictor = trained["predictor"]
    wav = trained["audio"] / "jazz" / "jazz.00001.wav"
    x, starts, padded = p.windows(decode(wav, sr=SR, nominal_seconds=None).y)
    stored = trained["store"].tensors(clip_seconds=1, song_ids=["jazz.00001"]).x
    assert padded == 0.0
    assert x.shape == (6, 128, 44) and starts.tolist() == pytest.approx([0, 1, 2, 3, 4, 5], abs=0.02)
    np.testing.assert_allclose(x[0], stored[0], atol=1e-4)
    probs = p.predict_windows(x)
    assert probs.shape == (6, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    from keras import ops

    direct = ops.convert_to_numpy(p.net(p.normalizer.transform(stored)[..., None], training=False))
    np.testing.assert_allclose(probs[0], direct[0], atol=1e-5)


def _song(trained: dict, name: str = "blues/blues.00000.wav") -> np.ndarray:
    y, sr = sf.read(trained["audio"] / name, dtype="float32")
    assert sr == SR
    return y


def test_stereo_44k_wav_is_mixed_down_and_resampled(trained: dict, tmp_path: Path) -> None:
    import soxr

    p: Predictor = trained["predictor"]
    y = _song(trained)
    y44 = soxr.resample(y, SR, 44100).astype(np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([y44, y44], axis=1), 44100, subtype="FLOAT")
    res = p.predict_file(path)
    assert (res.source_sr, res.source_channels) == (44100, 2)
    assert res.duration == pytest.approx(6.0, abs=1e-3)
    assert res.window_probabilities.shape == (6, 10) and not res.padded
    np.testing.assert_allclose(res.probabilities, res.window_probabilities.mean(axis=0))
    np.testing.assert_allclose(res.probabilities.sum(), 1.0, atol=1e-5)
    # the same music at its native rate, mono: resampling twice moves the probabilities little
    mono = p.predict_file(trained["audio"] / "blues" / "blues.00000.wav")
    assert (mono.source_sr, mono.source_channels) == (SR, 1)
    np.testing.assert_allclose(res.probabilities, mono.probabilities, atol=0.05)


def test_identical_stereo_channels_predict_like_mono(trained: dict, tmp_path: Path) -> None:
    p: Predictor = trained["predictor"]
    y = _song(trained, "disco/disco.00002.wav")
    sf.write(tmp_path / "mono.wav", y, SR, subtype="FLOAT")
    sf.write(tmp_path / "stereo.wav", np.stack([y, y], axis=1), SR, subtype="FLOAT")
    a, b = p.predict_file(tmp_path / "mono.wav"), p.predict_file(tmp_path / "stereo.wav")
    np.testing.assert_allclose(a.window_probabilities, b.window_probabilities, atol=1e-6)
    assert [g for g, _ in a.top(3)] == [g for g, _ in b.top(3)]


@pytest.mark.parametrize(("fmt", "subtype", "suffix"), [("OGG", "VORBIS", ".ogg"), ("MP3", "MPEG_LAYER_III", ".mp3"),
                                                         ("FLAC", "PCM_16", ".flac"), ("AU", "PCM_16", ".au")])
def test_compressed_and_other_formats(trained: dict, tmp_path: Path, fmt: str, subtype: str, suffix: str) -> None:
    import soxr

    p: Predictor = trained["predictor"]
    y = soxr.resample(_song(trained, "metal/metal.00001.wav"), SR, 44100).astype(np.float32)
    y = np.concatenate([y, y[: 44100 * 3 // 2]])  # 7.5 s
    path = tmp_path / f"song{suffix}"
    sf.write(path, np.stack([y, 0.5 * y], axis=1), 44100, format=fmt, subtype=subtype)
    res = p.predict_file(path)
    assert res.source_channels == 2 and res.source_sr == 44100
    assert res.duration == pytest.approx(7.5, abs=0.1)  # mp3 adds encoder padding
    # 7 whole 1 s windows, and a tail of ~0.5 s aligned to the end of the file
    assert res.window_starts.size == 8 and not res.padded
    assert res.window_starts[-1] == pytest.approx(res.duration - 1.0, abs=0.05)
    assert [g for g, _ in res.top(3)] == [res.labels[i] for i in np.argsort(-res.probabilities)[:3]]


def test_short_file_is_padded_and_says_so(trained: dict, tmp_path: Path) -> None:
    p: Predictor = trained["predictor"]
    path = tmp_path / "short.wav"
    sf.write(path, _song(trained)[: SR * 4 // 10], SR)  # 0.4 s
    res = p.predict_file(path)
    assert res.padded and res.padded_seconds == pytest.approx(0.6, abs=1e-3)
    assert res.window_probabilities.shape == (1, 10)
    d = res.to_dict()
    assert d["padded"] is True and d["padded_seconds"] == pytest.approx(0.6, abs=1e-3)
    assert d["n_windows"] == 1 and len(d["windows"]) == 1
    assert "windows" not in res.to_dict(windows=False)


def test_json_dict_has_top3_and_per_window_probabilities(trained: dict) -> None:
    res = trained["predictor"].predict_file(trained["audio"] / "rock" / "rock.00000.wav")
    d = json.loads(json.dumps(res.to_dict()))
    assert d["ok"] is True and d["genre"] == d["top"][0]["genre"]
    assert len(d["top"]) == 3
    probs = [t["probability"] for t in d["top"]]
    assert probs == sorted(probs, reverse=True)
    assert set(d["probabilities"]) == set(GENRES)
    assert len(d["windows"]) == 6
    assert [w["start"] for w in d["windows"]] == pytest.approx([0, 1, 2, 3, 4, 5], abs=0.02)
    for w in d["windows"]:
        assert sum(w["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert w["end"] == pytest.approx(w["start"] + 1)


def test_unreadable_files_are_reported_and_skipped(trained: dict, tmp_path: Path) -> None:
    p: Predictor = trained["predictor"]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    good = trained["audio"] / "pop" / "pop.00000.wav"
    seen: list = []
    out = p.predict_files([bad, good, tmp_path / "missing.flac", tmp_path], on_result=seen.append)
    assert seen == out
    assert [type(r) for r in out] == [FileFailure, FilePrediction, FileFailure, FileFailure]
    assert "cannot decode bad.wav" in out[0].error
    assert "no such file" in out[2].error
    assert "not a file" in out[3].error
    assert out[0].to_dict() == {"path": str(bad), "ok": False, "error": out[0].error}
    with pytest.raises(AudioError):
        p.predict_file(bad)


def test_predict_chooses_the_best_run_and_predicts(trained: dict) -> None:
    choice, results = predict([trained["audio"] / "jazz" / "jazz.00000.wav"], model_root=trained["root"] / "models")
    assert choice.model == "seed_cnn" and choice.clip_seconds == 1
    assert choice.run_dir.resolve() == trained["run_dir"].resolve()
    assert isinstance(results[0], FilePrediction)


def test_incomplete_or_corrupt_runs_are_store_errors(trained: dict, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no trained run"):
        Predictor(tmp_path / "nowhere")
    run = tmp_path / "run"
    shutil.copytree(trained["run_dir"], run)
    (run / "normalizer.json").unlink()
    with pytest.raises(StoreError, match="missing normalizer.json"):
        Predictor(run)
    shutil.copy(trained["run_dir"] / "normalizer.json", run / "normalizer.json")
    (run / "model.keras").write_bytes(b"not a zip file")
    # caught by the size and sha256 that the run's record lists, before Keras reads it
    with pytest.raises(StoreError, match=r"model\.keras is 14 bytes, not the \d+ listed in metrics\.json: the file "
                                         r"was changed or damaged; train it again"):
        Predictor(run)


# ---------------------------------------------------------------------------------------
# windows through the network in batches of bounded memory
# ---------------------------------------------------------------------------------------
def test_activation_bytes_of_a_small_network_known_answer() -> None:
    """Every layer's output for one input, summed: 4x10x8 + 8 + 10 float32 values."""
    import keras

    from training.keras_fit import PREDICT_BATCH, activation_bytes, predict_batch

    inp = keras.Input((4, None, 1))  # any number of frames, as some of the models take
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, (3, 3), padding="same")(inp))
    net = keras.Model(inp, keras.layers.Dense(10)(x))
    assert activation_bytes(net, (4, 10, 1)) == (320 + 8 + 10) * 4
    assert activation_bytes(net, (4, 20, 1)) == (640 + 8 + 10) * 4
    assert predict_batch(net, (4, 10, 1), budget=3 * 1352 + 1351) == 3
    assert predict_batch(net, (4, 10, 1), budget=1351) == 1  # at least one window
    assert predict_batch(net, (4, 10, 1), budget=1 << 40) == PREDICT_BATCH


@pytest.mark.parametrize(("model", "clip", "batch"), [("seed_cnn", 30, 1), ("crnn", 30, 1), ("cnn", 30, 6),
                                                      ("cnn", 5, 39), ("seed_cnn", 1, 19),
                                                      ("rnn", 30, 64)])
def test_wide_networks_on_long_windows_score_few_windows_per_call(model: str, clip: int, batch: int) -> None:
    """seed_cnn holds 208 MiB of layer outputs per 30 s window in an eager call: 64 windows at
    once took 15 GB on a 60-minute file. Calls are sized to PREDICT_ACTIVATION_BYTES."""
    from training.keras_fit import PREDICT_ACTIVATION_BYTES, PREDICT_BATCH, activation_bytes, predict_batch
    from training.models import build_model, get_spec, to_layout

    p = FeatureParams()
    frames = p.clip_frames(clip)
    net = build_model(model, n_mels=p.n_mels, frames=frames, n_classes=10)
    shape = to_layout(np.zeros((1, p.n_mels, frames), np.float32), get_spec(model).layout).shape[1:]
    per_window = activation_bytes(net, shape)
    assert predict_batch(net, shape) == batch
    assert batch == 1 or batch * per_window <= PREDICT_ACTIVATION_BYTES
    assert batch == PREDICT_BATCH or (batch + 1) * per_window > PREDICT_ACTIVATION_BYTES


def test_batched_windows_give_the_unbatched_numbers(trained: dict, tmp_path: Path) -> None:
    """A file's windows scored a few at a time are those of one call on every window at once."""
    from keras import ops

    from training.models import to_layout

    p: Predictor = trained["predictor"]
    wav = trained["audio"] / "country" / "country.00002.wav"
    fw = file_windows_of(p, wav)
    assert fw.x.shape[0] == 6
    direct = ops.convert_to_numpy(p.net(to_layout(p.normalizer.transform(fw.x), p.layout), training=False))
    model = p.model
    assert model.predict_batch >= 6  # 1 s windows of seed_cnn: one call for this file
    np.testing.assert_array_equal(p.predict_file(wav).window_probabilities, direct.astype(np.float64))
    try:
        model.predict_batch = 3  # two calls of three windows
        res = p.predict_file(wav)
        np.testing.assert_array_equal(res.window_probabilities, direct.astype(np.float64))
        model.predict_batch = 1  # one window per call: oneDNN's kernels for one image round differently
        np.testing.assert_allclose(p.predict_file(wav).window_probabilities, direct, rtol=0, atol=1e-6)
    finally:
        del model.predict_batch  # the cached value is computed again


def file_windows_of(p: Predictor, path: Path):
    from training.views import file_windows

    return file_windows(p.view, path, clip_seconds=p.clip_seconds, arrays=p.model.arrays)


@pytest.mark.shared_data
def test_real_gtzan_clips_flac_and_au(trained: dict, shared_data: Path, tmp_path: Path) -> None:
    """Real clips: 30 s FLAC (Kaggle layout) and original .au, copied out of shared data first."""
    flac = shared_data / "gtzan-mini" / "genres_original" / "jazz" / "jazz.00000.flac"
    au = shared_data / "gtzan-au" / "genres" / "blues" / "blues.00000.au"
    files = []
    for src in (flac, au):
        if not src.exists():
            pytest.skip(f"{src} is absent")
        files.append(Path(shutil.copy(src, tmp_path / src.name)))
    # and the FLAC written back as the Kaggle 16-bit WAV
    y, sr = sf.read(files[0], dtype="int16")
    sf.write(tmp_path / "jazz.00000.wav", y, sr, subtype="PCM_16")
    files.append(tmp_path / "jazz.00000.wav")
    out = trained["predictor"].predict_files(files)
    assert all(isinstance(r, FilePrediction) for r in out), out
    for r in out:
        assert 29.9 <= r.duration <= 30.7 and r.source_sr == SR and r.source_channels == 1
        assert r.window_starts.size in (30, 31) and not r.padded
        np.testing.assert_allclose(r.window_probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out[0].window_probabilities, out[2].window_probabilities, atol=1e-6)


# ---------------------------------------------------------------------------------------
# probe runs (a classifier on musicnn embeddings) predict through the same interface
# ---------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:n_fft=.* is too large:UserWarning")
@pytest.mark.parametrize("n", [1, 4000, 16000 * 7 + 99])
@pytest.mark.parametrize("block_frames", [3, 4096])
def test_musicnn_log_mel_in_blocks_equals_musicnn_log_mel(n: int, block_frames: int) -> None:
    """Prediction computes a whole file's musicnn input in bounded blocks: musicnn's numbers."""
    from feature_store.embeddings import musicnn as mn

    y = (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
    expected = mn.log_mel(y)
    got = mn.log_mel(y, block_frames=block_frames)
    assert got.shape == expected.shape == (1 + n // 256, 96)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    with pytest.raises(ParameterError, match="block_frames"):
        mn.log_mel(y, block_frames=0)


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from feature_store.embeddings import EmbeddingStore
    from feature_store.embeddings import musicnn as mn
    from feature_store.demo import write_demo_corpus
    from feature_store.ingestion import ingest
    from training.runner import train_model

    try:
        mn.weights_folder("MSD_musicnn")
    except mn.MusicnnWeightsError:
        pytest.skip("musicnn weights are not installed")
    base = tmp_path_factory.mktemp("probe_predict")
    audio = write_demo_corpus(base / "audio", songs_per_genre=2, duration=6.0)
    ingest(audio, base / "store")
    EmbeddingStore(base / "store").build(audio_root=audio, clip_seconds=[5], workers=1)
    res = train_model(store_root=base / "store", model_root=base / "models", model="probe_logreg_msd", clip_seconds=5)
    return {"base": base, "audio": audio, "run_dir": Path(res.run_dir)}


def test_probe_run_windows_match_the_stores_rows(probe_run: dict) -> None:
    from feature_store.embeddings import EmbeddingStore
    from training.families.vector import Probe

    p = Predictor(probe_run["run_dir"])
    assert p.family == "vector" and p.clip_seconds == 5 and p.sample_rate == 16000
    wav = probe_run["audio"] / "metal" / "metal.00001.wav"
    ours = p.predict_file(wav)
    # 6 s: the window at 0 s, and one aligned with the end (1 s uncovered is > 5 % of 5 s)
    assert ours.window_starts.tolist() == pytest.approx([0.0, 1.0], abs=0.02)
    # the first window is the store's clip of that song: the same probabilities
    t = EmbeddingStore(probe_run["base"] / "store").tensors(clip_seconds=5, song_ids=["metal.00001"])
    theirs = Probe.load(probe_run["run_dir"]).predict_proba(t.x)[0]
    np.testing.assert_allclose(ours.window_probabilities[0], theirs, rtol=1e-4, atol=1e-5)
    assert p.describe()["family"] == "vector"


def test_probe_run_on_stereo_mp3_and_short_ogg(probe_run: dict, tmp_path: Path) -> None:
    import soxr

    y, sr = sf.read(probe_run["audio"] / "jazz" / "jazz.00000.wav", dtype="float32")
    y44 = soxr.resample(np.concatenate([y, y]), sr, 44100).astype(np.float32)  # 12 s
    sf.write(tmp_path / "a.mp3", np.stack([y44, y44], axis=1), 44100, format="MP3", subtype="MPEG_LAYER_III")
    sf.write(tmp_path / "b.ogg", np.stack([y44, y44], axis=1)[: 2 * 44100], 44100, format="OGG", subtype="VORBIS")
    choice, (a, b) = predict([tmp_path / "a.mp3", tmp_path / "b.ogg"], model_root=probe_run["base"] / "models")
    assert choice.model == "probe_logreg_msd"
    assert isinstance(a, FilePrediction) and isinstance(b, FilePrediction)
    assert a.source_channels == 2 and a.source_sr == 44100 and a.window_starts.size == 3 and not a.padded
    assert b.padded and b.padded_seconds == pytest.approx(3.0, abs=0.01) and b.window_starts.size == 1
    for r in (a, b):
        np.testing.assert_allclose(r.window_probabilities.sum(axis=1), 1.0, atol=1e-6)
