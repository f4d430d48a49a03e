"""musicnn_embeddings and probe_models partitions, the embeddings_sane check, the report over probes."""

import importlib.util
import shutil
from pathlib import Path

import dagster as dg
import h5py
import numpy as np
import pytest
from asset_helpers import SONGS_PER_GENRE, make_resources, materialize_ingest

from assets import (
    ModelStoreResource,
    embeddings_sane,
    evaluation_report,
    musicnn_embeddings,
    probe_above_chance,
    probe_models,
)
from assets.checks import inspect_embeddings
from feature_store.embeddings import musicnn as mn
from feature_store.datasets.gtzan import GENRES

N_CLIPS = SONGS_PER_GENRE * len(GENRES)  # mode "first": one 5 s clip per 6 s song


@pytest.fixture(scope="module")
def weights() -> str:
    try:
        return mn.weights_sha256("MSD_musicnn")
    except mn.MusicnnWeightsError:
        pytest.skip(f"musicnn weights not installed; `{mn.INSTALL_COMMAND}` installs them")


@pytest.fixture(scope="module")
def embedded(corpus_master, tmp_path_factory, weights):
    """Ingest, then embeddings + probe of the 5 s partition in one run (as embeddings_job does)."""
    res = make_resources(corpus_master, tmp_path_factory.mktemp("emb"))
    assert materialize_ingest(res).success
    result = dg.materialize(
        [musicnn_embeddings, embeddings_sane, probe_models, probe_above_chance],
        resources=res,
        partition_key="5",
        run_config={"ops": {"probe_models": {"config": {"seeds": [0, 1], "classifiers": ["logreg"]}}}},
    )
    assert result.success
    return res, result


def _md(result, node):
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def test_embeddings_partition_metadata_and_files(embedded, weights):
    res, result = embedded
    md = _md(result, "musicnn_embeddings")
    assert md["clips"] == N_CLIPS and md["songs"] == N_CLIPS and md["patches_per_clip"] == 1
    assert md["arrays"] == {"max_pool": [N_CLIPS, 753], "mean_pool": [N_CLIPS, 753], "penultimate": [N_CLIPS, 200],
                            "tags": [N_CLIPS, 50]}
    assert md["weights_sha256"] == weights and md["view_params"]["model"] == "MSD_musicnn"
    assert md["songs_computed"] == N_CLIPS and md["feature_failures"] == 0
    assert md["params_hash"] == res["features"].params().hash() and md["embed_ms_per_clip"] > 0
    path = Path(md["hdf5_path"])
    assert path.name == "embeddings.h5" and path.is_relative_to(Path(res["features"].root).resolve())
    with h5py.File(path, "r") as h5:
        assert h5["tags"].shape == (N_CLIPS, 50) and np.isfinite(h5["max_pool"][:]).all()
        tags = h5["tags"][:]
    assert ((tags >= 0) & (tags <= 1)).all()  # sigmoid outputs
    assert md["hdf5_bytes"] == path.stat().st_size and md["bytes"] >= md["hdf5_bytes"]
    # the same clips as the mel view would have
    x = res["features"].embedding_store().tensors(clip_seconds=5, layers="tags")
    np.testing.assert_array_equal(x.x, tags[x.index["hdf5_row"].to_numpy()])


def test_check_passes_and_records_the_weights(embedded, weights):
    _res, result = embedded
    evs = {e.check_name: e for e in result.get_asset_check_evaluations()}
    ev = evs["embeddings_sane"]
    assert ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR
    assert ev.metadata["clip_seconds"].value == [5]  # the run's partition, only
    assert ev.metadata["weights_sha256"].value == weights
    [row] = ev.metadata["clip_lengths"].value.records
    assert row.data["clips"] == N_CLIPS and row.data["non_finite"] == 0 and row.data["problems"] is None


def test_probe_runs_are_published_beside_the_models(embedded):
    res, result = embedded
    md = _md(result, "probe_models")
    assert md["models"] == ["probe_logreg_msd"] and md["seeds"] == [0, 1]
    assert 0.0 <= md["song_accuracy"] <= 1.0 and md["chance_accuracy"] == pytest.approx(0.1)
    assert md["song_accuracy_std"] == 0.0  # the logistic regression is deterministic
    assert md["features"] == 753 + 200 + 50 and md["parameters"] == 1003 * 10 + 10
    assert md["inference_ms_per_clip"] >= md["embedding_ms_per_clip"] > 0
    assert [r.data["seed"] for r in md["per_run"].records] == [0, 1]
    path = Path(md["model_path"])
    # <models root>/embeddings-<hash>/probe_logreg_msd/clip-05s/seed-0/<generation>/probe.npz
    assert path.name == "probe.npz" and path.parts[-5:-2] == ("probe_logreg_msd", "clip-05s", "seed-0")
    assert path.parts[-6].startswith("embeddings-")  # the folder is named by the view the model reads
    runs = res["models"].runs(params_hash=res["features"].params().hash())
    assert sorted((r.model, r.seed) for r in runs) == [("probe_logreg_msd", 0), ("probe_logreg_msd", 1)]
    evs = {e.check_name: e for e in result.get_asset_check_evaluations()}
    ev = evs["probe_above_chance"]
    assert ev.passed == (md["song_accuracy"] > 0.1)
    [cell] = ev.metadata["cells"].value.records
    assert cell.data["model"] == "probe_logreg_msd" and cell.data["clip_seconds"] == 5 and cell.data["seeds"] == 2


def test_report_covers_the_probes(embedded):
    res, _ = embedded
    result = dg.materialize([evaluation_report], resources=res)
    md = _md(result, "evaluation_report")
    assert md["runs"] == 2 and md["models"] == ["probe_logreg_msd"]
    assert md["best"]["model"] == "probe_logreg_msd" and md["best"]["clip_seconds"] == 5
    assert "| probe_logreg_msd |" in md["report"]


def test_unknown_classifier_fails_without_retry(embedded, tmp_path):
    res, _ = embedded
    res = {**res, "models": ModelStoreResource(root=str(tmp_path / "m"), report_dir=str(tmp_path / "r"))}
    result = dg.materialize(
        [probe_models], resources=res, partition_key="5", raise_on_error=False,
        run_config={"ops": {"probe_models": {"config": {"classifiers": ["svm"]}}}},
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "['logreg', 'mlp']" in failure.step_failure_data.user_failure_data.description
    assert "STEP_UP_FOR_RETRY" not in [e.event_type_value for e in result.all_events]


def _copy_store(res, tmp_path):
    out = make_resources(res["audio"].path, tmp_path / "data")
    shutil.copytree(res["features"].root, out["features"].root, symlinks=True)
    return out


def test_check_blocks_on_nan_and_on_other_weights(embedded, tmp_path, monkeypatch):
    res = _copy_store(embedded[0], tmp_path)
    gen = res["features"].embedding_store().generation(5)
    assert embedded[0]["features"].root not in str(gen)  # a private copy (the links are relative)
    with h5py.File(gen / "embeddings.h5", "r+") as h5:
        h5["penultimate"][2, 7] = np.nan
        h5["tags"][4, 1] = np.inf
    report = inspect_embeddings(res["features"], 5)
    assert report["non_finite"] == 2 and any("2 NaN or inf" in p for p in report["problems"])
    # run alone (no partition): checks every built clip length and fails with ERROR
    result = dg.materialize(
        [musicnn_embeddings, embeddings_sane], resources=res, selection=dg.AssetSelection.checks(embeddings_sane),
        raise_on_error=False,
    )
    [ev] = result.get_asset_check_evaluations()
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR
    assert ev.metadata["clip_seconds"].value == [5]
    assert "5 s: 2 NaN or inf values" in ev.description
    # weights other than those that made the store
    monkeypatch.setattr(mn, "weights_sha256", lambda model="MSD_musicnn": "e" * 64)
    problems = inspect_embeddings(res["features"], 5)["problems"]
    assert any("registry weights sha256" in p and "rebuild the embeddings" in p for p in problems)


def test_check_on_a_clip_length_never_built(embedded):
    problems = inspect_embeddings(embedded[0]["features"], 30)["problems"]
    assert len(problems) == 1 and "no 30 s MSD_musicnn embedding" in problems[0]
    assert "built clip lengths: [5]" in problems[0]


def test_missing_weights_package_fails_with_the_install_command(corpus, tmp_path, monkeypatch):
    res = make_resources(corpus, tmp_path / "data")
    assert materialize_ingest(res, checks=False).success
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "musicnn" else real(name, *a))
    result = dg.materialize(
        [musicnn_embeddings, embeddings_sane], resources=res, partition_key="5", raise_on_error=False
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "pip install --no-deps musicnn==0.1.0" in failure.step_failure_data.user_failure_data.description
    assert "STEP_UP_FOR_RETRY" not in [e.event_type_value for e in result.all_events]  # a retry cannot fix it
    assert not Path(res["features"].embedding_store().store_dir, "clip-05s").exists()
