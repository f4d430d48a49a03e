"""Training from the store: leakage-free normalisation, determinism, streaming, seeds, holdouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from feature_store.errors import ParameterError, StoreError
from feature_store.params import FeatureParams
from feature_store.datasets.gtzan import GENRES
from feature_store.store import FeatureStore
from training.train import (
    BandNormalizer,
    ClipSource,
    ModelStore,
    RssSampler,
    TrainConfig,
    augment_batch,
    load_model,
    train_model,
    train_seeds,
)

FIRST = FeatureParams(mode="first")
SEGMENTS = FeatureParams(mode="segments")


def _train(store, tmp, name="m", **kw):
    params = kw.pop("params", FIRST)
    config = kw.pop("config", TrainConfig(epochs=1))
    return train_model(store_root=store, model_root=tmp / name, params=params, config=config, **kw)


@pytest.fixture(scope="module")
def cnn_run(tiny_store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cnn_run")
    cfg = TrainConfig(epochs=2, validation_share=0.3, batch_size=8)
    return _train(tiny_store, tmp, model="cnn", clip_seconds=1, config=cfg)


def test_run_folder_holds_model_normalizer_and_metrics(cnn_run):
    run = Path(cnn_run.run_dir)
    assert {p.name for p in run.iterdir()} == {"model.keras", "normalizer.json", "metrics.json"}
    saved = json.loads((run / "metrics.json").read_text())
    for key in ("model", "clip_seconds", "layout", "frames", "feature_params", "labels", "metrics", "costs"):
        assert key in saved
    assert saved["frames"] == 44 and saved["layout"] == "mels_frames_1" and saved["labels"] == list(GENRES) == cnn_run.labels
    c = saved["costs"]
    assert c["parameters"] > 0 and c["model_mb"] > 0 and c["inference_ms_per_clip"] > 0
    assert 1 <= c["epochs_run"] <= 2 and c["seconds_per_epoch"] > 0
    assert c["peak_rss_mb"] >= c["rss_at_start_mb"] > 0
    net = load_model(run / "model.keras")
    assert net.count_params() == c["parameters"]


def test_normalisation_uses_training_songs_only(cnn_run, tiny_store):
    songs = cnn_run.songs
    train, valid, test = set(songs["train"]), set(songs["valid"]), set(songs["test"])
    assert train and valid and test
    assert not (train & valid) and not (train & test) and not (valid & test)
    split = pl.read_parquet(Path(tiny_store) / "splits.parquet")
    assert test == set(split.filter(pl.col("seed") == "test")["song_id"].to_list())
    assert train | valid == set(split.filter(pl.col("seed") == "train")["song_id"].to_list())
    # validation songs are whole songs from the training part, some of every genre
    assert {s.split(".")[0] for s in valid} == set(GENRES)

    store = FeatureStore(tiny_store, params=FIRST)
    saved = BandNormalizer.from_json(json.loads((Path(cnn_run.run_dir) / "normalizer.json").read_text()))
    expected = BandNormalizer.fit(store.tensors(clip_seconds=1, song_ids=sorted(train)).x)
    np.testing.assert_allclose(saved.mean, expected.mean, rtol=1e-6)
    np.testing.assert_allclose(saved.std, expected.std, rtol=1e-5)
    everything = BandNormalizer.fit(store.tensors(clip_seconds=1).x)
    assert not np.allclose(saved.mean, everything.mean, rtol=1e-3)


def test_same_seed_same_metrics_also_when_streamed(tiny_store, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=16, seed=3, spec_masks=1, mixup=0.2, freq_shift=2, gain_db=3.0)
    a = _train(tiny_store, tmp_path, "a", model="cnn", clip_seconds=1, params=SEGMENTS, config=cfg)
    b = _train(tiny_store, tmp_path, "b", model="cnn", clip_seconds=1, params=SEGMENTS, config=cfg)
    s = _train(tiny_store, tmp_path, "s", model="cnn", clip_seconds=1, params=SEGMENTS,
               config=TrainConfig(**{**cfg.__dict__, "stream": "stream"}))
    assert not a.streamed and s.streamed
    assert a.metrics == b.metrics == s.metrics
    def learnt(r):  # the history without its wall times
        return {k: v for k, v in r.history.items() if k != "epoch_seconds"}

    assert learnt(a) == learnt(b) == learnt(s) and len(a.history["loss"]) == 2
    pa = load_model(a.model_path).get_weights()
    ps = load_model(s.model_path).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(pa, ps, strict=True))


def test_songs_are_scored_by_their_mean_segment_probability(tiny_store, tmp_path):
    r = _train(tiny_store, tmp_path, model="rnn", clip_seconds=1, params=SEGMENTS)
    m = r.metrics
    assert m.songs == 10 and m.clips == 60  # six 1 s segments of each 6 s song
    net = load_model(r.model_path)
    store = FeatureStore(tiny_store, params=SEGMENTS)
    t = store.tensors(clip_seconds=1, split="test")
    norm = BandNormalizer.from_json(json.loads((Path(r.run_dir) / "normalizer.json").read_text()))
    probs = np.asarray(net.predict(np.swapaxes(norm.transform(t.x), 1, 2), verbose=0))
    songs = t.index["song_id"].to_numpy()
    song_pred = {s: probs[songs == s].mean(axis=0).argmax() for s in set(songs)}
    song_true = {s: t.y[songs == s][0] for s in set(songs)}
    assert m.song_accuracy == pytest.approx(np.mean([song_pred[s] == song_true[s] for s in song_pred]))
    assert m.clip_accuracy == pytest.approx(np.mean(probs.argmax(axis=1) == t.y))


def test_baseline_is_sklearn_logistic_regression_frozen_into_keras(tiny_store, tmp_path):
    from sklearn.linear_model import LogisticRegression

    runs = train_seeds(seeds=[0, 1], store_root=tiny_store, model_root=tmp_path, model="baseline",
                       clip_seconds=5, params=FIRST)
    assert [r.seed for r in runs] == [0, 1]
    assert [Path(r.run_dir).parent.name for r in runs] == ["seed-0", "seed-1"]
    assert len(ModelStore(tmp_path).runs()) == 2
    store = FeatureStore(tiny_store, params=FIRST)
    tr = store.summary(clip_seconds=5, split="train").sort("hdf5_row").collect()
    te = store.summary(clip_seconds=5, split="test").sort("hdf5_row").collect()
    cols = [c for c in tr.columns if c.startswith(("mean_", "std_"))]
    f, g = tr.select(cols).to_numpy(), te.select(cols).to_numpy()
    mu, sd = f.mean(axis=0), f.std(axis=0)
    clf = LogisticRegression(C=1.0, max_iter=5000).fit((f - mu) / sd, tr["label"].to_numpy())
    expected = clf.predict_proba((g - mu) / sd)
    x = store.tensors(clip_seconds=5, split="test").x[..., None]  # raw dB: the normaliser is identity
    got = np.asarray(load_model(runs[0].model_path).predict(x, verbose=0))
    # lbfgs stops within its tolerance, so two fits on float32 features that differ in the last
    # bits (summary table vs in-graph band statistics) agree to ~1e-2, not to machine precision
    np.testing.assert_allclose(got, expected, atol=1e-2)
    np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))
    assert runs[0].metrics.clip_accuracy == pytest.approx(np.mean(expected.argmax(1) == te["label"].to_numpy()))


def test_test_store_holds_out_other_songs(tiny_store, other_store, tmp_path):
    r = _train(tiny_store, tmp_path, model="baseline", clip_seconds=1, params=SEGMENTS, test_store_root=other_store,
               variant="holdout")
    assert r.test_songs == 2 and r.train_songs == 30  # every song of the training store
    assert r.held_out.startswith("every song of") and r.variant == "holdout"
    assert r.labels == list(GENRES)  # the labels of the training and the held-out data
    assert Path(r.run_dir).parent.name == "seed-0--holdout"
    assert all(r.metrics.song_recall[GENRES.index(g)] is None for g in GENRES if g not in ("blues", "jazz"))


def test_cross_validation_fold_and_crops(tiny_store, tmp_path):
    cfg = TrainConfig(epochs=1, scheme="stratified", test_part="fold0", crop_seconds=1, batch_size=8)
    r = _train(tiny_store, tmp_path, model="crnn_small", clip_seconds=5, config=cfg)
    split = pl.read_parquet(Path(tiny_store) / "splits.parquet")
    assert set(r.songs["test"]) == set(split.filter(pl.col("stratified") == "fold0")["song_id"].to_list())
    assert r.held_out == "stratified:fold0"
    with pytest.raises(ParameterError, match="any clip length"):
        _train(tiny_store, tmp_path, model="seed_cnn", clip_seconds=5, config=cfg)
    with pytest.raises(ParameterError, match="not a part"):
        _train(tiny_store, tmp_path, model="cnn", clip_seconds=5, config=TrainConfig(test_part="fold9"))
    with pytest.raises(ParameterError, match="shorter"):
        _train(tiny_store, tmp_path, model="cnn", clip_seconds=1, config=TrainConfig(crop_seconds=1))


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError):
        _train(tmp_path / "nowhere", tmp_path, model="cnn", clip_seconds=5)


def test_config_is_validated():
    for bad in ({"epochs": 0}, {"seed": -1}, {"validation_share": 0.5}, {"stream": "disk"}, {"mixup": -1.0},
                {"scheme": "random"}, {"crop_seconds": 1.5}):
        with pytest.raises(ParameterError):
            TrainConfig(**bad)
    with pytest.raises(ParameterError, match="variant"):
        ModelStore("/tmp").run_dir(params=FIRST, model="cnn", clip_seconds=5, seed=0, variant="../x")


def test_augment_batch():
    rng = np.random.default_rng(0)
    x = rng.normal(-20, 10, size=(6, 16, 40)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    w = np.ones(6, np.float32)
    norm = BandNormalizer(mean=np.full(16, -20.0), std=np.full(16, 10.0))
    cfg = TrainConfig(spec_masks=2, mixup=0.4, freq_shift=2, gain_db=6.0)
    a = augment_batch(x, y, w, config=cfg, normalizer=norm, rng=np.random.default_rng(5), crop_frames=20)
    b = augment_batch(x, y, w, config=cfg, normalizer=norm, rng=np.random.default_rng(5), crop_frames=20)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))  # same rng, same batch
    xa, ya, wa = a
    assert xa.shape == (6, 16, 20) and xa.dtype == np.float32
    np.testing.assert_allclose(ya.sum(axis=1), 1.0, atol=1e-6)
    assert (ya.max(axis=1) >= 0.5 - 1e-6).all()  # the dominant clip keeps its label on top
    assert np.array_equal(ya.argmax(axis=1), y.argmax(axis=1)) or (ya.max(axis=1) == 0.5).any()
    # without augmentation it is plain normalisation
    plain = augment_batch(x, y, w, config=TrainConfig(), normalizer=norm, rng=np.random.default_rng(0))
    np.testing.assert_allclose(plain[0], (x + 20) / 10, rtol=1e-5)
    # masks set whole bands or frames to the band mean (0 after normalisation)
    masked, _, _ = augment_batch(x, y, w, config=TrainConfig(spec_masks=3), normalizer=norm,
                                 rng=np.random.default_rng(1))
    assert (masked == 0).any()


def test_clip_source_streams_what_memory_holds(tiny_store):
    store = FeatureStore(tiny_store, params=SEGMENTS)
    t = store.tensors(clip_seconds=1, split="train")
    mem = ClipSource(t.index, x=t.x)
    disk = ClipSource(t.index, reader=store.rows(clip_seconds=1))
    pos = np.array([17, 3, 3, 42, 0, 119])
    np.testing.assert_array_equal(mem.read(pos), disk.read(pos))
    disk.close()
    n1 = BandNormalizer.fit(t.x)
    n2 = BandNormalizer.fit_chunks(disk.chunks(np.arange(len(disk)), size=7))
    np.testing.assert_allclose(n1.mean, n2.mean, rtol=1e-9)
    np.testing.assert_allclose(n1.std, n2.std, rtol=1e-6)
    # a store whose rows are not the index's clips (here: another clip length) is refused
    with pytest.raises(StoreError, match="rebuilt"):
        ClipSource(t.index, reader=store.rows(clip_seconds=5))


def test_rss_sampler_sees_a_short_lived_allocation():
    with RssSampler(interval=0.01) as rss:
        block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
        block += 1
        import time

        time.sleep(0.1)
        del block
    assert rss.peak_mb - rss.start_mb > 150


def test_a_released_source_lets_go_of_its_clips(tiny_store):
    """tf.data keeps a trained feeder's generator alive; releasing the source frees the clips."""
    import gc
    import weakref

    store = FeatureStore(tiny_store, params=SEGMENTS)
    t = store.tensors(clip_seconds=1, split="train")
    held = t.x.copy()
    alive = weakref.ref(held)
    with ClipSource(t.index, x=held) as src:
        assert src.read(np.array([1])).shape == (1, *t.x.shape[1:])
    keeper = [src]  # what TensorFlow's registry does
    del held
    gc.collect()
    assert alive() is None and keeper
    with pytest.raises(StoreError, match="released"):
        src.read(np.array([0]))
