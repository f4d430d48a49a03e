"""A corpus that is not GTZAN (issue 18): three labels, alpha, beta and gamma, in
``DIR/<label>/<files>`` folders, through ingest, build, train, report and predict; predict
answers with those labels and nothing assumes GTZAN's ten genres."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf
from cli_helpers import env_for, ok

SR = 22050
LABELS = ("alpha", "beta", "gamma")


def write_corpus(root, *, songs: int = 8, seconds: float = 2.0) -> None:
    """Each label a tone of its own pitch with a little noise: easy to tell apart."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    for k, label in enumerate(LABELS):
        (root / label).mkdir(parents=True)
        for i in range(songs):
            y = 0.3 * np.sin(2 * np.pi * (220.0 * 2**k) * (1 + 0.01 * i) * t) + 0.02 * rng.standard_normal(t.size)
            sf.write(root / label / f"{label}-{i}.wav", y.astype(np.float32), SR, subtype="PCM_16")


def test_three_labels_go_through_ingest_build_train_report_and_predict(tmp_path):
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    env = env_for(tmp_path / "data")
    ok(["ingest", str(corpus), "--dataset", "folders", "--no-progress"], env)
    ok(["features", "build", "--view", "timbre", "--clip-seconds", "1", "--no-progress"], env)
    ok(["train", "--model", "timbre_logreg", "--clip-seconds", "1", "--no-progress"], env)
    [metrics] = (tmp_path / "data" / "models").rglob("metrics.json")
    run = json.loads(metrics.read_text())
    assert run["labels"] == list(LABELS) and len(run["metrics"]["song_recall"]) == 3
    report = ok(["report"], env)
    assert "timbre_logreg" in report.stdout
    out = ok(["predict", "--model", "timbre_logreg", "--clip-seconds", "1", "--json",
              str(corpus / "gamma" / "gamma-0.wav")], env)
    doc = json.loads(out.stdout)
    text = json.dumps(doc)
    assert "gamma" in text and not any(g in text for g in ("blues", "jazz", "rock"))
