"""Probes on musicnn embeddings, through the one route of vector models (training.families.vector):
fit, save/load without pickle, train/evaluate/publish, predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from feature_store import FeatureParams, ingest
from feature_store.embeddings import EmbeddingStore
from feature_store.embeddings import musicnn as mn
from feature_store.errors import ParameterError, StoreError
from feature_store.datasets.gtzan import GENRES
from training.evaluate import evaluate
from training.families.vector import Probe, ProbeConfig, fit_vector
from training.predict import Predictor
from training.runner import train_model


def fit_probe(x: np.ndarray, y: np.ndarray, *, config: ProbeConfig | None = None):
    """The vector family's fit with a probe's config, on GTZAN's ten classes."""
    config = config or ProbeConfig()
    return fit_vector(x, y, classifier=config.classifier, config=config, n_classes=len(GENRES))


def train_probe(*, config: ProbeConfig | None = None, **kwargs):
    """The runner on the declaration a probe config names."""
    config = config or ProbeConfig()
    return train_model(model=config.declaration(), config=config, **kwargs)


def _blobs(n_per: int, classes: list[int], dims: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, size=(len(GENRES), dims))
    y = np.repeat(np.asarray(classes), n_per)
    return centres[y] + rng.normal(0, 0.5, size=(y.size, dims)), y


# -- the classifier on its own (no network needed) ----------------------------------------
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("classifier", ["logreg", "mlp"])
def test_fit_probe_separates_blobs(classifier):
    x, y = _blobs(8, list(range(10)))
    probe, hist = fit_probe(x, y, config=ProbeConfig(classifier=classifier, hidden_units=16, max_iter=500))
    p = probe.predict_proba(x)
    assert p.shape == (80, 10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert np.mean(p.argmax(axis=1) == y) == 1.0
    assert hist["iterations"][0] >= 1
    assert probe.n_parameters == (12 * 10 + 10 if classifier == "logreg" else 12 * 16 + 16 + 16 * 10 + 10)


def test_probe_probabilities_equal_scikit_learns_even_for_two_genres():
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(6, [0, 5], dims=5)
    x = x + np.random.default_rng(1).normal(0, 4, size=x.shape)  # overlapping: probabilities not 0/1
    probe, _ = fit_probe(x, y, config=ProbeConfig(C=0.5, class_weighting=False))
    mu, sd = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
    ref = LogisticRegression(C=0.5, max_iter=2000).fit((x - mu) / sd, y).predict_proba((x - mu) / sd)
    p = probe.predict_proba(x)
    np.testing.assert_allclose(p[:, [0, 5]], ref, atol=1e-6)
    assert np.all(p[:, [1, 2, 3, 4, 6, 7, 8, 9]] < 1e-12)  # absent genres are never predicted


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_probe_round_trips_without_pickle(tmp_path):
    x, y = _blobs(4, list(range(10)))
    probe, _ = fit_probe(x, y, config=ProbeConfig(classifier="mlp", hidden_units=8, max_iter=200))
    probe.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probe.json", "probe.npz"]
    with np.load(tmp_path / "probe.npz", allow_pickle=False) as z:
        assert set(z.files) == {"mean", "std", "w0", "b0", "w1", "b1"}
    back = Probe.load(tmp_path)
    np.testing.assert_array_equal(back.predict_proba(x), probe.predict_proba(x))
    assert back.arrays == probe.arrays and back.classifier == "mlp"
    with pytest.raises(ParameterError, match=r"\(clips, 12\)"):
        back.predict_proba(x[:, :5])
    with pytest.raises(StoreError):
        Probe.load(tmp_path / "nowhere")


def test_config_errors_name_the_valid_values():
    with pytest.raises(ParameterError, match="logreg"):
        ProbeConfig(classifier="svm")
    with pytest.raises(ParameterError, match="MSD_musicnn"):
        ProbeConfig(embedding_model="vggish")
    with pytest.raises(ParameterError, match="penultimate"):
        ProbeConfig(layers=("conv9",))
    with pytest.raises(ParameterError):
        ProbeConfig(C=0)
    with pytest.raises(ParameterError, match="two labels"):
        fit_probe(np.zeros((3, 2)), np.zeros(3, np.int64))
    assert ProbeConfig().name == "probe_logreg_msd" and ProbeConfig(classifier="mlp", embedding_model="MTT_musicnn").name == "probe_mlp_mtt"


# -- trained, evaluated and published on a tiny corpus ------------------------------------
@pytest.fixture(scope="module")
def emb_store(tmp_path_factory):
    try:
        mn.weights_folder("MSD_musicnn")
    except mn.MusicnnWeightsError:
        pytest.skip(f"musicnn weights not installed; `{mn.INSTALL_COMMAND}` installs them")
    from feature_store.demo import write_demo_corpus

    base = tmp_path_factory.mktemp("probe")
    audio = write_demo_corpus(base / "audio", songs_per_genre=2, duration=6.0)
    root = base / "store"
    ingest(audio, root)
    EmbeddingStore(root).build(audio_root=audio, clip_seconds=[5], workers=1)
    other_audio = write_demo_corpus(base / "other", songs_per_genre=1, duration=6.0, seed=1, genres=("blues", "jazz"))
    other = base / "other_store"
    ingest(other_audio, other)
    EmbeddingStore(other).build(audio_root=other_audio, clip_seconds=[5], workers=1)
    return root, audio, other


def test_train_probe_publishes_a_run_like_train_model(emb_store, tmp_path):
    from training.train import ModelStore

    root, _, _ = emb_store
    res = train_probe(store_root=root, model_root=tmp_path, clip_seconds=5)
    run = tmp_path / f"embeddings-{FeatureParams().hash()}" / "probe_logreg_msd" / "clip-05s" / "seed-0" / "current"
    assert run.resolve() == res.run_dir
    assert sorted(p.name for p in run.iterdir()) == ["metrics.json", "probe.json", "probe.npz"]
    runs = ModelStore(tmp_path).runs()
    assert [r.model for r in runs] == ["probe_logreg_msd"]
    assert (runs[0].family, runs[0].view) == ("vector", "embeddings")
    m = runs[0]
    saved = json.loads((run / "metrics.json").read_text())
    for key in ("model", "clip_seconds", "seed", "config", "feature_params", "params_hash", "layout", "frames",
                "labels", "train_clips", "valid_clips", "test_clips", "metrics", "history", "costs", "created_at"):
        assert key in saved, key
    for key in ("parameters", "model_mb", "train_seconds", "seconds_per_epoch", "epochs_run", "peak_rss_mb",
                "inference_ms_per_clip"):
        assert np.isfinite(getattr(m.costs, key)), key
    assert m.train_clips == 10 and m.test_clips == 10 and m.metrics.songs == 10
    assert m.costs.parameters == 1003 * 10 + 10
    # embedding time counts in the inference cost
    assert m.costs.embedding_ms_per_clip > 0
    assert m.costs.inference_ms_per_clip == pytest.approx(
        m.costs.embedding_ms_per_clip + m.costs.probe_ms_per_clip)
    # the synthetic genres are easy: the probe is far above chance (0.1) on held-out songs
    assert m.metrics.song_accuracy >= 0.6
    # the stored metrics are what the stored probe gives on the held-out clips
    probe = Probe.load(run)
    test = EmbeddingStore(root).tensors(clip_seconds=5, split="test")
    again = evaluate(probe.predict_proba(test.x), test.y, test.index["song_id"].to_list(), n_classes=10)
    assert again["song_confusion"] == m.metrics.song_confusion


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_probe_held_out_on_another_store_and_mlp_seeds(emb_store, tmp_path):
    root, _, other = emb_store
    cfg = ProbeConfig(classifier="mlp", hidden_units=32, max_iter=300)
    a = train_probe(store_root=root, model_root=tmp_path, clip_seconds=5, config=cfg, test_store_root=other)
    b = train_probe(store_root=root, model_root=tmp_path, clip_seconds=5,
                    config=ProbeConfig(classifier="mlp", hidden_units=32, max_iter=300, seed=1),
                    test_store_root=other, variant="holdout")
    assert a.train_clips == 20 and a.test_songs == 2 and a.songs["test"] == ["blues.00000", "jazz.00000"]
    assert a.held_out.startswith("every song of")
    assert "/probe_mlp_msd/clip-05s/seed-1--holdout/" in str(b.run_dir)
    assert json.loads((Path(a.run_dir) / "metrics.json").read_text())["seed"] == 0
    with pytest.raises(ParameterError, match="valid parts"):
        train_probe(store_root=root, model_root=tmp_path, clip_seconds=5, config=ProbeConfig(test_part="fold9"))
    with pytest.raises(StoreError, match="built clip lengths"):
        train_probe(store_root=root, model_root=tmp_path, clip_seconds=30)


def test_predict_a_probe_run_on_audio_files(emb_store, tmp_path):
    root, audio, _ = emb_store
    res = train_probe(store_root=root, model_root=tmp_path, clip_seconds=5)
    files = [audio / "metal" / "metal.00001.wav", audio / "classical" / "classical.00001.wav"]
    predictor = Predictor(res.run_dir)
    out = predictor.predict_files(files)
    assert [o.window_starts.size for o in out] == [2, 2]  # 6 s: the window at 0 s and one aligned with the end
    for o in out:
        d = o.to_dict()
        assert set(d["probabilities"]) == set(GENRES) == set(res.labels)
        assert sum(d["probabilities"].values()) == pytest.approx(1.0)
        assert d["genre"] == max(d["probabilities"], key=d["probabilities"].get)
    assert predictor.model_name == "probe_logreg_msd" and predictor.family == "vector"
    # the file's first window gives what the store's row of that clip gives
    probe = Probe.load(res.run_dir)
    t = EmbeddingStore(root).tensors(clip_seconds=5, song_ids=["metal.00001"])
    np.testing.assert_allclose(out[0].window_probabilities[0], probe.predict_proba(t.x)[0], rtol=1e-4, atol=1e-5)


def test_probe_peak_memory_is_sampled_during_its_run(emb_store, tmp_path):
    """Peak RSS is that of the run (sampled, as for the Keras models), not the process's lifetime peak."""
    import resource

    root, _, _ = emb_store
    spike = np.ones(600 * 2**20 // 8)  # 600 MiB, touched, then freed before the run
    spike += 1
    del spike
    res = train_probe(store_root=root, model_root=tmp_path, clip_seconds=5)
    c = res.costs
    process_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert c.peak_rss_mb >= c.rss_at_start_mb > 0
    assert c.peak_rss_mb < process_peak_mb - 300


def test_a_probe_trains_like_any_model_by_its_name(emb_store, tmp_path):
    """The runner trains a probe by name with the vector family's config, as with a probe config."""
    from training.config import VectorConfig
    from training.runner import train_model

    root, _, _ = emb_store
    a = train_model(store_root=root, model_root=tmp_path / "a", model="probe_logreg_msd",
                    clip_seconds=5, config=VectorConfig())
    b = train_probe(store_root=root, model_root=tmp_path / "b", clip_seconds=5)
    assert (a.family, a.view, a.view_options) == ("vector", "embeddings", {"embedding_model": "MSD_musicnn"})
    assert a.layout == "embedding" and a.embedding["layers"] == ["max_pool", "penultimate", "tags"]
    assert a.metrics == b.metrics and a.costs.parameters == b.costs.parameters
    assert set(b.config) - set(a.config) == {"classifier", "embedding_model", "layers"}
    # a probe on other layers is its own declaration of the same family, in the same run folder name
    c = train_probe(store_root=root, model_root=tmp_path / "c", clip_seconds=5, config=ProbeConfig(layers=("tags",)))
    assert c.model == "probe_logreg_msd" and c.embedding["features"] == 50 and c.costs.parameters == 510
    assert Probe.load(c.run_dir).arrays == ("tags",)
