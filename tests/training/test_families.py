"""One model-family interface: the registry, the run record, the model store and any run predicted alike."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from feature_store.errors import ParameterError, StoreError
from feature_store.integrity import with_checksum
from feature_store.params import FeatureParams
from feature_store.datasets.gtzan import GENRES
from training.config import TrainConfig, VectorConfig
from training.families import family_for, get_family, model_names
from training.families.keras_mel import KerasMel
from training.families.mel_baseline import MelBaseline
from training.families.vector import VectorClassifier
from training.model_store import ModelStore
from training.models import MODELS
from training.predict import Predictor
from training.record import Costs, Metrics, RunRecord
from training.runner import train_model
from training.views import training_view

PROBES = ["probe_logreg_msd", "probe_logreg_mtt", "probe_mlp_msd", "probe_mlp_mtt"]


def test_every_model_is_declared_once_in_its_family():
    # the built-in declarations, and any family added beside them (the registry is the list)
    assert set(model_names()) >= {*MODELS, *PROBES, "timbre_logreg"} and model_names() == sorted(model_names())
    for name, spec in MODELS.items():
        decl = get_family(name)
        assert type(decl) is (MelBaseline if spec.trainer == "summary_logreg" else KerasMel)
        assert (decl.family, decl.view, decl.layout, decl.config_type) == ("mel", "mel", spec.layout, TrainConfig)
    for name in PROBES:
        decl = get_family(name)
        assert isinstance(decl, VectorClassifier) and decl.family == "vector" and decl.view == "embeddings"
        assert decl.config_type is VectorConfig and decl.layout == "embedding"
        assert decl.options["embedding_model"] == ("MSD_musicnn" if name.endswith("msd") else "MTT_musicnn")
        assert decl.classifier == name.split("_")[1]
    assert get_family("baseline").trainer == "summary_logreg" and get_family("cnn").trainer == "keras"
    timbre = get_family("timbre_logreg")
    assert isinstance(timbre, VectorClassifier) and (timbre.view, timbre.arrays) == ("timbre", ("timbre",))


def test_unknown_models_views_and_classifiers_name_the_valid_ones():
    from feature_store.views import VIEWS

    assert list(VIEWS)[:3] == ["mel", "embeddings", "timbre"] and {"baseline", "cnn"} <= set(model_names())
    with pytest.raises(ParameterError, match=f"valid models are {re.escape(str(model_names()))}"):
        get_family("resnet")
    with pytest.raises(ParameterError, match=f"valid views are {re.escape(str(list(VIEWS)))}"):
        training_view("pictures")
    with pytest.raises(ParameterError, match="logreg"):
        VectorClassifier("x", view="embeddings", arrays=("tags",), classifier="svm")


def _record(**change) -> RunRecord:
    costs = Costs(parameters=10, model_mb=0.5, train_seconds=2.0, seconds_per_epoch=1.0, steady_seconds_per_epoch=0.9,
                  epochs_run=2, best_epoch=1, peak_rss_mb=300.0, rss_at_start_mb=250.0, inference_ms_per_clip=1.5)
    fields = dict(
        model="cnn", family="mel", view="mel", variant="", trainer="keras", clip_seconds=5, seed=0,
        config={"epochs": 2}, feature_params=FeatureParams().to_dict(), params_hash=FeatureParams().hash(),
        layout="mels_frames_1", frames=216, labels=["alpha", "beta", "gamma"], store_root="/s", test_store_root=None,
        held_out="seed:test", train_clips=20, train_songs=20, valid_clips=0, valid_songs=0, test_clips=10,
        test_songs=10, streamed=False, songs={"train": [], "valid": [], "test": []}, metrics={"song_accuracy": 0.5},
        history={"loss": [1.0, 0.5]}, costs=costs,
    )
    return RunRecord(**{**fields, **change})


def test_run_record_round_trips_and_reads_older_records(tmp_path):
    rec = _record()
    path = rec.save(tmp_path)
    assert path == tmp_path / "metrics.json"
    saved = json.loads(path.read_text())
    assert saved["family"] == "mel" and saved["view"] == "mel" and saved["costs"]["peak_rss_mb"] == 300.0
    assert "embedding" not in saved and "embedding_ms_per_clip" not in saved["costs"] and "run_dir" not in saved
    back = RunRecord.load(tmp_path)
    assert back.run_dir == tmp_path.resolve()
    assert dataclasses.replace(back, run_dir=None) == rec
    assert saved["labels"] == ["alpha", "beta", "gamma"] and "genres" not in saved
    assert isinstance(back.metrics, Metrics) and back.metrics.song_accuracy == 0.5
    # a probe record written before family, view, labels and the sampled start RSS existed
    old = {**saved, "model": "probe_logreg_msd", "trainer": "probe", "embedding": {"model": "MTT_musicnn"},
           "note": "kept"}
    for key in ("family", "view", "view_options", "checksum", "labels"):
        del old[key]
    del old["costs"]["rss_at_start_mb"], old["costs"]["steady_seconds_per_epoch"]
    rec = RunRecord.from_dict(old)
    assert (rec.family, rec.view, rec.view_options) == ("vector", "embeddings", {"embedding_model": "MTT_musicnn"})
    assert rec.labels == list(GENRES)  # older records: GTZAN's genres, in the reader of old records only
    assert RunRecord.from_dict({**old, "family": "probe", "genres": ["x", "y"]}).family == "vector"
    assert RunRecord.from_dict({**old, "genres": ["x", "y"]}).labels == ["x", "y"]
    assert rec.costs.steady_seconds_per_epoch == 1.0 and rec.costs.rss_at_start_mb is None
    assert rec.to_dict()["note"] == "kept" and "rss_at_start_mb" not in rec.to_dict()["costs"]
    del old["metrics"]
    (tmp_path / "metrics.json").write_text(json.dumps(old))  # no checksum: refused, never read as older
    with pytest.raises(StoreError, match=r"metrics\.json has no checksum .*train it again"):
        RunRecord.load(tmp_path / "metrics.json")
    (tmp_path / "metrics.json").write_text(json.dumps(with_checksum(old)))
    with pytest.raises(StoreError, match="missing metrics"):
        RunRecord.load(tmp_path / "metrics.json")
    with pytest.raises(StoreError, match="no run record"):
        RunRecord.load(tmp_path / "nowhere.json")


def test_a_run_is_loaded_by_the_family_that_wrote_it():
    assert family_for(_record()) is get_family("cnn")
    with pytest.raises(StoreError, match="written by the 'vector' family"):
        family_for(_record(family="vector"))
    with pytest.raises(StoreError, match="cannot load the run of 'resnet'"):
        family_for(_record(model="resnet"))


def test_a_config_of_another_family_is_refused_before_any_work(tmp_path):
    with pytest.raises(ParameterError, match="'cnn' takes a TrainConfig, got VectorConfig"):
        train_model(store_root=tmp_path / "store", model_root=tmp_path / "models", model="cnn", clip_seconds=5,
                    config=VectorConfig())
    with pytest.raises(ParameterError, match="valid models"):
        train_model(store_root=tmp_path / "store", model_root=tmp_path / "models", model="resnet", clip_seconds=5)
    assert not (tmp_path / "models").exists()


@pytest.fixture(scope="module")
def baseline_run(tiny_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    res = train_model(store_root=tiny_store, model_root=root, model="baseline", clip_seconds=1)
    return root, res


def test_one_runner_records_family_view_and_memory(baseline_run):
    root, res = baseline_run
    assert isinstance(res, RunRecord)
    assert (res.model, res.family, res.view, res.trainer) == ("baseline", "mel", "mel", "summary_logreg")
    assert res.view_options == {} and res.embedding is None and "embedding" not in res.to_dict()
    assert res.labels == list(GENRES)  # the tiny store holds all ten genres
    c = res.costs
    assert c.peak_rss_mb >= c.rss_at_start_mb > 0 and c.model_mb > 0 and c.parameters == 2 * 128 * 10 + 10
    assert res.model_path == res.run_dir / "model.keras" and res.model_path.is_file()
    rec = RunRecord.load(res.run_dir)
    assert rec == res and rec.to_dict() == res.to_dict()
    store = ModelStore(root)
    assert [r.model for r in store.runs()] == ["baseline"]
    assert store.runs()[0].run_dir == res.run_dir
    assert [r.run_dir for r in store.find(model="baseline", clip_seconds=1, seed=0, variant="")] == [res.run_dir]
    assert store.find(model="baseline", seed=1) == [] and store.find(params_hash="other") == []


def test_predictor_reads_runs_written_before_the_family_interface(baseline_run, tmp_path):
    _, res = baseline_run
    run = tmp_path / "run"
    shutil.copytree(res.run_dir, run)
    old = json.loads((run / "metrics.json").read_text())
    for key in ("family", "view", "view_options", "checksum"):  # as written before them
        del old[key]
    (run / "metrics.json").write_text(json.dumps(old))  # without its checksum: refused
    with pytest.raises(StoreError, match=r"metrics\.json has no checksum"):
        Predictor(run)
    (run / "metrics.json").write_text(json.dumps(with_checksum(old)))
    p = Predictor(run)
    assert p.family == "mel" and p.describe()["family"] == "mel" and p.model_name == "baseline"
    x = np.random.default_rng(0).normal(-40, 10, size=(3, 128, 44)).astype(np.float32)
    np.testing.assert_allclose(p.predict_windows(x), Predictor(res.run_dir).predict_windows(x))
    old["family"] = "vector"
    (run / "metrics.json").write_text(json.dumps(with_checksum(old)))
    with pytest.raises(StoreError, match="written by the 'vector' family"):
        Predictor(run)
