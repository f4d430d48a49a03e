"""SIGKILL a model save and a report write at random moments.

Model save: ``training.train.train_model`` publishes a run with
``feature_store.atomic.new_generation`` (``model.keras``, ``normalizer.json``,
``metrics.json``, then the ``current`` swap). A model store already holds a run of the
``baseline`` model (trained on a 20-song store); a child process retrains it on a 30-song store
and is killed at a random moment of the publication (between its ``PUBLISH`` and
``PUBLISHED`` markers, measured on a clean run). TensorFlow takes seconds to import in each
child, so this loop makes 5 kills, not 20, with 1 epoch on 1 s clips.

Report: ``training.report.write_report`` (Markdown and HTML, figures off: matplotlib's import
would dominate) is killed 20 times. Its writes are milliseconds long, so the child writes in
small pieces with 1 ms pauses (fault injection on ``Path.write_bytes`` only; the atomic
temporary-and-rename path is the real one) and the kill lands at a random moment of it.

After each kill the previous run (or report) reads identically, or, where the kill came after
the rename, exactly as a clean run; no temporary is ever taken for a run or a report; and a
re-run completes, sweeps the leftovers and matches a clean run.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from _kill import Child, killed, link_copy, temporaries

from feature_store import FeatureStore, ingest
from feature_store import atomic as fs_atomic
from feature_store.demo import write_demo_corpus
from feature_store.datasets.gtzan import GENRES

MODEL, CLIP = "baseline", 1
MODEL_KILLS, REPORT_KILLS = 5, 20


def _train(store: Path, models: Path) -> dict:
    from training.train import TrainConfig, train_model

    return train_model(store_root=store, model_root=models, model=MODEL, clip_seconds=CLIP,
                       config=TrainConfig(epochs=1))


def _weights(run_dir: Path) -> list[np.ndarray]:
    from training.train import load_model

    return load_model(Path(run_dir) / "model.keras").get_weights()


def _same_weights(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Feature stores of 20 and 30 songs, the previous run (20) and a clean run (30)."""
    base = tmp_path_factory.mktemp("killmodel")
    full = base / "audio-30"
    write_demo_corpus(full, songs_per_genre=3, duration=6.0)
    small = base / "audio-20"
    for g in GENRES:
        (small / "genres_original" / g).mkdir(parents=True)
        for i in range(2):
            shutil.copy(full / "genres_original" / g / f"{g}.{i:05d}.wav", small / "genres_original" / g)
    stores = {}
    for key, audio in (("old", small), ("new", full)):
        stores[key] = base / f"store-{key}"
        ingest(audio, stores[key])
        FeatureStore(stores[key]).build(audio_root=audio, clip_seconds=[CLIP], workers=1)
    prev_root, clean_root = base / "models-prev", base / "models-clean"
    prev = _train(stores["old"], prev_root)
    # the clean run, timing its publication the way the child announces it
    marks: list[float] = []
    real = fs_atomic.new_generation

    @contextlib.contextmanager
    def timed(folder, **kw):
        marks.append(time.monotonic())
        with real(folder, **kw) as tmp:
            yield tmp
        marks.append(time.monotonic())

    fs_atomic.new_generation = timed
    try:
        clean = _train(stores["new"], clean_root)
    finally:
        fs_atomic.new_generation = real
    return {"stores": stores, "prev": prev, "clean": clean, "prev_root": prev_root, "clean_root": clean_root,
            "publish_seconds": marks[1] - marks[0], "base": base,
            "prev_weights": _weights(prev.run_dir), "clean_weights": _weights(clean.run_dir)}


def _check_model_store(root: Path, runs: dict) -> str:
    """One whole run is published: the previous one or the clean one. Returns which."""
    from training.train import ModelStore

    published = ModelStore(root).runs()
    assert len(published) == 1
    run = published[0].run_dir
    assert run.name.startswith("gen-") and run.parent.name.startswith("seed-")
    assert sorted(p.name for p in run.iterdir()) == ["metrics.json", "model.keras", "normalizer.json"]
    json.loads((run / "normalizer.json").read_text())
    weights = _weights(run)
    if published[0].metrics == runs["prev"].metrics and _same_weights(weights, runs["prev_weights"]):
        return "old"
    assert published[0].metrics == runs["clean"].metrics, "the published run is neither the old nor the new"
    assert _same_weights(weights, runs["clean_weights"])
    return "new"


def test_sigkill_a_model_save(runs, tmp_path):
    rng = random.Random(11)
    window = runs["publish_seconds"]
    outcomes = []
    for n in range(MODEL_KILLS):
        share = (n + rng.random()) / MODEL_KILLS
        root = tmp_path / f"models-{n}"
        for attempt in range(3):
            shutil.rmtree(root, ignore_errors=True)
            link_copy(runs["prev_root"], root)
            child = Child("train", {"store": str(runs["stores"]["new"]), "models": str(root), "model": MODEL,
                                    "clip_seconds": CLIP}, log=tmp_path / f"train-{n}.log")
            t0 = child.wait_for("PUBLISH", timeout=300)
            time.sleep(max(0.0, t0 + share * window / (2**attempt) - time.monotonic()))
            rc = child.kill()
            if killed(rc):
                break
            assert rc == 0, child.stderr()[-3000:]
        else:
            pytest.fail(f"kill {n}: the save always finished before the kill")
        leftovers = temporaries(root)
        state = _check_model_store(root, runs)
        # the re-run completes, sweeps the killed writer's leftovers and matches the clean run
        again = _train(runs["stores"]["new"], root)
        assert again.metrics == runs["clean"].metrics
        assert _same_weights(_weights(again.run_dir), runs["clean_weights"])
        assert _check_model_store(root, runs) == "new"
        assert temporaries(root) == []
        outcomes.append((round(share * window, 3), state, len(leftovers)))
    print("model kills", outcomes, "publish window", round(window, 3))
    assert len(outcomes) == MODEL_KILLS


# ---------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?( ?UTC|Z)?")
REPORT_FILES = ("report.md", "report.html")


def _texts(folder: Path) -> dict[str, str]:
    """The report files, with their generation time blanked (it is the only thing that varies)."""
    return {f: _TIME.sub("<time>", (folder / f).read_text()) for f in REPORT_FILES}


def test_sigkill_a_report_write(runs, tmp_path):
    from training.report import write_report
    from training.train import ModelStore

    old_runs, new_runs = ModelStore(runs["prev_root"]).runs(), ModelStore(runs["clean_root"]).runs()
    (tmp_path / "new-runs.json").write_text(json.dumps([r.to_dict() for r in new_runs]))
    previous, clean = tmp_path / "report-prev", tmp_path / "report-clean"
    write_report(old_runs, previous, figures=False)
    write_report(new_runs, clean, figures=False)
    old_bytes = {f: (previous / f).read_bytes() for f in REPORT_FILES}
    old_text, new_text = _texts(previous), _texts(clean)
    assert old_text != new_text
    args = {"runs_json": str(tmp_path / "new-runs.json"), "slow": True}
    probe = Child("report", {**args, "out": str(tmp_path / "probe")}, log=tmp_path / "probe.log")
    t0 = probe.wait_for("READY")
    probe.result()
    duration = probe.seen[-1][0] - t0
    assert probe.wait() == 0 and _texts(tmp_path / "probe") == new_text
    rng = random.Random(5)
    outcomes = []
    for n in range(REPORT_KILLS):
        share = (n + rng.random()) / REPORT_KILLS
        out = tmp_path / f"report-{n:02d}"
        for attempt in range(4):
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(previous, out)
            child = Child("report", {**args, "out": str(out)}, log=tmp_path / f"report-{n:02d}.log")
            ready = child.wait_for("READY")
            time.sleep(max(0.0, ready + share * duration * 0.9 / (2**attempt) - time.monotonic()))
            rc = child.kill()
            if killed(rc):
                break
            assert rc == 0, child.stderr()[-2000:]
        else:
            pytest.fail(f"kill {n}: the report was always written before the kill")
        states = []
        for f in REPORT_FILES:
            raw = (out / f).read_bytes()
            if raw == old_bytes[f]:
                states.append("old")  # the previous report reads identically, byte for byte
            else:
                assert _TIME.sub("<time>", raw.decode()) == new_text[f], f"{f} is torn"
                states.append("new")
        leftovers = temporaries(out)
        assert all(p.name.startswith(".tmp-report.") for p in leftovers)
        write_report(new_runs, out, figures=False)  # the re-run
        assert _texts(out) == new_text
        assert temporaries(out) == []
        outcomes.append((states, len(leftovers)))
    print("report kills", outcomes)
    assert any(n for _, n in outcomes), "no kill hit a half-written temporary"
    assert any(s == ["old", "old"] for s, _ in outcomes)
