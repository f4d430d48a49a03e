"""The report: Markdown + HTML + PNG figures from real runs on a tiny corpus."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from feature_store.params import FeatureParams
from feature_store.datasets.gtzan import GENRES
from training.record import RunRecord
from training.report import FIGURES, STUDY_RESULTS, best_run, recall_rows, report_paths, write_report
from training.train import ModelStore, TrainConfig, train_model, train_seeds

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_runs(tiny_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("report_models")
    params = FeatureParams(mode="first")
    cfg = TrainConfig(epochs=1, batch_size=8)
    for clip in (1, 5):
        train_seeds(seeds=[0, 1], store_root=tiny_store, model_root=root, model="baseline", clip_seconds=clip,
                    params=params, config=cfg)
        train_model(store_root=tiny_store, model_root=root, model="seed_cnn", clip_seconds=clip, params=params,
                    config=cfg)
    return ModelStore(root).runs()


def test_report_on_a_tiny_corpus_has_its_figures(tiny_runs, tmp_path):
    md = write_report(tiny_runs, tmp_path / "report")
    paths = report_paths(tmp_path / "report")
    assert md == paths["markdown"] and md.exists() and paths["html"].exists()
    text = md.read_text()
    for name in FIGURES:
        fig = paths["figures"][name]
        assert fig.exists() and fig.read_bytes().startswith(PNG), name
        assert f"figures/{name}" in text
    # every image the documents link to exists
    for link in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):
        assert (md.parent / link).exists()
    html = paths["html"].read_text()
    for link in re.findall(r'<img src="([^"]+)"', html):
        assert (md.parent / link).exists()
    assert html.count("<table>") == text.count("\n|---") and "<table>" in html


def test_report_states_the_setup_and_the_study_beside_ours(tiny_runs, tmp_path):
    text = write_report(tiny_runs, tmp_path).read_text()
    assert "**Data:**" in text and "**Split:** scheme seed" in text and "**Mode:** first" in text
    assert "**Seeds:** [0, 1]" in text and "n = [1, 2]" in text
    assert "*seed_cnn, as published*" in text
    published = " | ".join(f"{100 * v:.0f} %" for v in STUDY_RESULTS["seed_cnn"].values())
    assert published in text
    assert "ours, indexOfMax, clips" in text and "ours, argmax, songs" in text
    # baseline ran with two seeds: cells carry mean ± std and n
    row = next(line for line in text.splitlines() if line.startswith("| baseline |"))
    assert "±" in row and "(n=2)" in row
    assert "| model | clip | parameters | file MB | s / epoch |" in text


def test_best_run_is_the_highest_mean_song_accuracy(tiny_runs):
    best = best_run(tiny_runs)
    means = {}
    for r in tiny_runs:
        means.setdefault((r.model, r.clip_seconds), []).append(r.metrics.song_accuracy)
    top = max(sum(v) / len(v) for v in means.values())
    assert best["song_accuracy"] == pytest.approx(top)
    assert (best["model"], best["clip_seconds"]) in means and best["variant"] == ""


def test_report_without_runs(tmp_path):
    md = write_report([], tmp_path)
    assert "No trained models yet" in md.read_text()
    assert Path(tmp_path / "report.html").exists()
    assert best_run([]) is None


def _fake_run(model: str, clip: int, seed: int, acc: float, *, labels: tuple[str, ...] = GENRES) -> RunRecord:
    """A run record with what the report reads, without training anything."""
    n = len(labels)
    recall = [acc] + [None] * (n - 1)
    return RunRecord.from_dict({
        "model": model, "family": "mel", "view": "mel", "variant": "", "trainer": "keras", "clip_seconds": clip,
        "seed": seed, "store_root": None, "test_store_root": None, "held_out": "seed:test",
        "config": {"scheme": "seed", "epochs": 1}, "feature_params": {"mode": "first"}, "params_hash": "h",
        "layout": "mels_frames_1", "frames": 1, "labels": list(labels), "train_clips": 20, "valid_clips": 0,
        "valid_songs": 0, "songs": {}, "history": {}, "streamed": False,
        "train_songs": 20, "test_songs": 10, "test_clips": 10,
        "metrics": {"song_accuracy": acc, "clip_accuracy": acc, "study_metric_accuracy": acc / 2,
                    "song_recall": recall, "song_macro_f1": acc, "song_confusion": [[0] * n for _ in range(n)]},
        "costs": {"parameters": 10, "model_mb": 0.1, "train_seconds": 1.0, "seconds_per_epoch": 1.0,
                  "epochs_run": 1, "best_epoch": 1, "peak_rss_mb": 100.0, "inference_ms_per_clip": 1.0},
    })


def test_recall_columns_and_confusion_ticks_are_the_runs_labels(tmp_path):
    runs = [_fake_run("knn", 5, 0, 0.7, labels=("alpha", "beta", "gamma")),
            _fake_run("knn", 5, 1, 0.5, labels=("alpha", "beta", "gamma"))]
    head, rows = recall_rows(runs)
    assert head == ["model", "clip", "alpha", "macro-F1 (songs)"]  # beta and gamma had no held-out songs
    assert rows == [["knn", "5 s", "0.60", "0.60 ± 0.14 (n=2)"]]
    text = write_report(runs, tmp_path).read_text()
    assert "| model | clip | alpha | macro-F1 (songs) |" in text and "blues" not in text
    from training import figures

    fig = figures.draw_confusions(runs)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["alph", "beta", "gamm"]


def test_a_clip_length_the_study_did_not_publish_shows_a_dash(tmp_path, monkeypatch):
    """A clip length added to CLIP_SECONDS has no published number: a dash, not a KeyError."""
    import training.report as report

    monkeypatch.setattr(report, "CLIP_SECONDS", (1, 5, 10, 15, 30))
    runs = [_fake_run("seed_cnn", 10, 0, 0.5), _fake_run("seed_cnn", 5, 0, 0.4)]
    head, rows = report.accuracy_rows(runs)
    assert head == ["model", "1 s", "5 s", "10 s", "15 s", "30 s"]
    assert rows[1] == ["*seed_cnn, as published*", "17 %", "21 %", "–", "35 %", "42 %"]
    _, rows = report.study_rows(runs)
    assert rows[0] == ["seed_cnn", "published (indexOfMax, clips)", "17 %", "21 %", "–", "35 %", "42 %"]
    text = report.write_report(runs, tmp_path, figures=False).read_text()
    assert "| *seed_cnn, as published* | 17 % | 21 % | – | 35 % | 42 % |" in text


def test_the_report_and_its_figures_do_not_import_each_other():
    """report -> figures -> summary: one way, so neither module needs the other's internals."""
    import ast

    import training.figures
    import training.summary

    def imported(module) -> set[str]:
        tree = ast.parse(Path(module.__file__).read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}

    assert "training.report" not in imported(training.figures) | imported(training.summary)
    assert "training.figures" not in imported(training.summary)
