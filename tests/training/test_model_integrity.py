"""Silent corruption in the model store: 50 random byte flips in every file of a run.

A Keras run (``model.keras``, ``normalizer.json``, ``metrics.json``) and a vector-classifier
run (``probe.npz``, ``probe.json``, ``metrics.json``: the probes' format, trained here as
``timbre_logreg`` to need no musicnn weights). Each flip must be *detected* (loading the run
raises one line naming the file and what to do) or *harmless* (the run predicts exactly what
it predicted before).
"""

from __future__ import annotations

import shutil
import zlib

import numpy as np
import pytest

from feature_store.engine.store import ViewStore
from feature_store.errors import StoreError
from feature_store.views import get_view
from training.config import TrainConfig
from training.families import family_for
from training.record import RunRecord
from training.runner import train_model

FLIPS = 50


@pytest.fixture(scope="module")
def runs(tiny_store, tmp_path_factory):
    audio = tiny_store.parent / "audio"
    ViewStore(tiny_store, get_view("timbre")).build(audio_root=audio, clip_seconds=[5], workers=1)
    models = tmp_path_factory.mktemp("flip_models")
    cnn = train_model(store_root=tiny_store, model_root=models, model="cnn", clip_seconds=5,
                      config=TrainConfig(epochs=1))
    vec = train_model(store_root=tiny_store, model_root=models, model="timbre_logreg", clip_seconds=5)
    rng = np.random.default_rng(0)
    inputs = {"cnn": rng.normal(-40, 10, size=(3, 128, 216)).astype(np.float32),
              "timbre_logreg": rng.normal(0, 1, size=(3, 50)).astype(np.float32)}
    return {"cnn": cnn.run_dir, "timbre_logreg": vec.run_dir}, inputs


def predictions(run_dir, x):
    record = RunRecord.load(run_dir)
    return family_for(record).load(record.run_dir, record).predict_proba(x)


CASES = [("cnn", "model.keras"), ("cnn", "normalizer.json"), ("cnn", "metrics.json"),
         ("timbre_logreg", "probe.npz"), ("timbre_logreg", "probe.json"), ("timbre_logreg", "metrics.json")]


@pytest.mark.parametrize(("model", "name"), CASES, ids=[f"{m}-{n}" for m, n in CASES])
def test_a_flipped_byte_in_a_run_is_detected_or_harmless(runs, tmp_path, model, name):
    run_dirs, inputs = runs
    run = tmp_path / "run"
    shutil.copytree(run_dirs[model], run)
    truth = predictions(run, inputs[model])
    target = run / name
    original = target.read_bytes()
    rng = np.random.default_rng(zlib.crc32(f"{model}/{name}".encode()))
    detected = 0
    for _ in range(FLIPS):
        data = bytearray(original)
        at = int(rng.integers(len(data)))
        data[at] ^= int(rng.integers(1, 256))
        target.write_bytes(bytes(data))
        try:
            got = predictions(run, inputs[model])
        except StoreError as exc:
            assert "\n" not in str(exc) and name in str(exc), (at, str(exc))
            detected += 1
        else:
            np.testing.assert_array_equal(got, truth, err_msg=f"silent corruption: byte {at} of {name}")
    target.write_bytes(original)
    assert detected > 0


def test_an_emptied_model_file_says_so(runs, tmp_path):
    run_dirs, inputs = runs
    run = tmp_path / "run"
    shutil.copytree(run_dirs["cnn"], run)
    (run / "model.keras").write_bytes(b"")
    with pytest.raises(StoreError, match=r"model\.keras is empty \(0 bytes\): the file is damaged; train it again"):
        predictions(run, inputs["cnn"])
