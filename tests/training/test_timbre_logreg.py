"""timbre_logreg: the classic baseline on the timbre view, trained, stored, reported and predicting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from feature_store.engine.store import ViewStore
from feature_store.views import get_view
from training.families import get_family, model_names
from training.predict import Predictor, choose_run
from training.report import write_report
from training.runner import train_model


@pytest.fixture(scope="module")
def timbre_run(tiny_store, tmp_path_factory):
    audio = tiny_store.parent / "audio"
    ViewStore(tiny_store, get_view("timbre")).build(audio_root=audio, clip_seconds=[5], workers=1)
    models = tmp_path_factory.mktemp("timbre_models")
    return train_model(store_root=tiny_store, model_root=models, model="timbre_logreg", clip_seconds=5), models


def test_it_is_one_declaration_of_the_vector_family():
    assert "timbre_logreg" in model_names()
    family = get_family("timbre_logreg")
    assert (family.view, family.arrays, family.classifier) == ("timbre", ("timbre",), "logreg")


def test_a_run_is_plain_arrays_with_one_record(timbre_run):
    record, models = timbre_run
    assert record.model == "timbre_logreg" and record.view == "timbre"
    assert (record.family, record.trainer) == ("vector", "sklearn")  # its real family, not "probe"
    assert record.train_songs == 20 and record.test_songs == 10  # the seed split of 3 songs per genre
    assert record.costs.parameters == 50 * 10 + 10 and record.costs.peak_rss_mb > 0
    assert 0.0 <= record.metrics.song_accuracy <= 1.0
    with np.load(f"{record.run_dir}/probe.npz", allow_pickle=False) as z:
        assert z["mean"].shape == (50,) and z["w0"].shape == (50, 10)
    assert json.loads(open(f"{record.run_dir}/probe.json").read())["view"] == "timbre"


def test_it_predicts_any_file_from_the_views_windows(timbre_run, tiny_store):
    record, models = timbre_run
    path = tiny_store.parent / "audio" / "genres_original" / "jazz" / "jazz.00002.wav"
    predictor = Predictor(record.run_dir)
    pred = predictor.predict_file(path)
    windows = get_view("timbre").file_windows(path, clip_seconds=5)
    expected = predictor.model.predict_proba(windows.x).mean(axis=0)
    np.testing.assert_allclose(pred.probabilities, expected, rtol=1e-12)
    # a 6 s file: the window at 0 s, and one ending with the file (1 s uncovered is over 5 %)
    np.testing.assert_allclose(pred.window_starts, [0.0, 1.0], atol=0.03)
    assert pred.window_probabilities.shape == (2, 10) and np.isclose(pred.probabilities.sum(), 1.0)
    choice = choose_run(model_root=models, model="timbre_logreg")
    assert choice.model == "timbre_logreg" and choice.clip_seconds == 5


def test_the_report_lists_it_beside_the_others(timbre_run, tmp_path):
    record, models = timbre_run
    from training.model_store import ModelStore

    path = write_report(ModelStore(models).runs(), tmp_path / "report")
    text = path.read_text()
    assert "| timbre_logreg |" in text


#: ``gtzan predict`` in a fresh interpreter: its exit code and whether TensorFlow got imported.
PREDICT_CHILD = """
import sys
from pipelines.cli import main
code = 0
try:
    main(["predict", *sys.argv[1:]], prog_name="gtzan")
except SystemExit as exc:
    code = exc.code
print("exit", code, "tensorflow" in sys.modules, file=sys.stderr)
"""


def test_gtzan_predict_with_it_never_imports_tensorflow(timbre_run, tiny_store, tmp_path):
    """Half a GB of memory and seconds of start-up that a logistic regression does not need."""
    record, _models = timbre_run
    path = tiny_store.parent / "audio" / "genres_original" / "jazz" / "jazz.00002.wav"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTZAN_")}
    proc = subprocess.run([sys.executable, "-c", PREDICT_CHILD, str(path), "--run", record.run_dir],
                          cwd=Path(__file__).resolve().parents[2], env={**env, "GTZAN_DATA_DIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=300)
    assert "model: timbre_logreg on 5 s clips" in proc.stdout, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == "exit 0 False", proc.stderr[-2000:]
