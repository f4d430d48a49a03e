"""Issue 13: ``gtzan predict`` in memory bounded by design, whatever a file claims or lasts.

The real command line runs in a child process (``pipelines.cli.main``, in process there) with
a trained ``cnn`` run. The child reports its peak resident set (``VmHWM``; ``ru_maxrss`` of any
process it waited for), never a wall time, and runs under a 4 GiB address-space limit, so that
a regression ends in a ``MemoryError`` that fails the test instead of taking the machine down
(TensorFlow alone reserves about 2.4 GB of address space here).

1. The lying corpus of :mod:`_lying` and a good song: every file that ingest quarantines is
   refused with the same one-line reason, every other is predicted for the audio it holds
   (the hour of silence included), the good song too, exit code 0 as the README says (1 only
   when no file could be predicted), and peak RSS stays under 1.5 GB.
2. Peak RSS on a 40-minute file is that of a 10-minute file within a small margin: the file
   is streamed, and its windows go through the network in batches of bounded size, so nothing
   grows with the duration. Not a 1-minute file: the peak rises over the first few batches (the
   kernels and allocator pools of TensorFlow warming up) and is flat from about 10 minutes on.
   A predict that kept every window of the file (2400 windows of 1 s at 40 minutes) peaked
   about 60 MB higher at 40 minutes than at 10: more than :data:`DURATION_MARGIN`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _lying import FILES, write_corpus
from _rlimit import CHILD

REPO = Path(__file__).resolve().parents[2]
PEAK_RSS_LIMIT = 1.5e9
#: How far the peak of a 40-minute file may be above that of a 10-minute file.
DURATION_MARGIN = 32 << 20
#: The two durations compared, in minutes.
SHORT, LONG = 10, 40
GOOD = "rock/rock.00000.wav"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A ``cnn`` run on 1 s clips, one epoch on a tiny demo store."""
    from feature_store import FeatureStore, ingest
    from feature_store.demo import write_demo_corpus
    from training.config import TrainConfig
    from training.runner import train_model

    root = tmp_path_factory.mktemp("predict_memory")
    audio = write_demo_corpus(root / "demo", songs_per_genre=3, duration=3.0)
    ingest(audio, root / "store")
    FeatureStore(root / "store").build(audio_root=audio, clip_seconds=[1], workers=1)
    r = train_model(store_root=root / "store", model_root=root / "models", model="cnn", clip_seconds=1,
                    config=TrainConfig(epochs=1, seed=0))
    return r.run_dir


def gtzan_predict(args: list[str | Path], tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """``gtzan predict ARGS`` in a child process: its output and ``{"exit", "peak_kib"}``."""
    out = tmp_path / f"peak-{len(list(tmp_path.glob('peak-*')))}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTZAN_")}
    env.update(GTZAN_DATA_DIR=str(tmp_path / "data"), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(out), "predict", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert out.exists(), proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def test_predict_on_lying_files_refuses_or_predicts_each_in_bounded_memory(run_dir, tmp_path):
    corpus = write_corpus(tmp_path) / "genres_original"
    files = [corpus / lie.rel for lie in FILES] + [corpus / GOOD]
    proc, out = gtzan_predict([*files, "--run", run_dir, "--json"], tmp_path)
    assert out["exit"] == 0, proc.stderr[-3000:]  # some files could be predicted
    assert "Traceback" not in proc.stderr
    results = {Path(r["path"]).name: r for r in json.loads(proc.stdout)["files"]}
    errors = [line for line in proc.stderr.splitlines() if line.startswith("gtzan: error: ")]
    refused = [lie for lie in FILES if lie.status == "quarantined"]
    assert len(errors) == len(refused), proc.stderr
    for lie in FILES:
        name = Path(lie.rel).name
        r = results[name]
        if lie.status == "quarantined":  # the reason ingest records, on one line
            assert not r["ok"] and r["error"] == f"cannot decode {name}: {lie.reason}", r
            assert f"gtzan: error: cannot decode {name}: {lie.reason} (skipped)" in errors
        else:  # predicted for what it holds, never what its header claims
            assert r["ok"] and r["duration"] == pytest.approx(lie.duration), r
            assert r["n_windows"] == len(r["windows"]) >= int(lie.duration)
    good = results[Path(GOOD).name]
    assert good["ok"] and good["duration"] == pytest.approx(6.0) and good["n_windows"] == 6
    assert out["peak_kib"] * 1024 < PEAK_RSS_LIMIT, f"peak RSS {out['peak_kib'] / 2**20:.2f} GiB"


def test_predict_exits_1_when_no_file_could_be_predicted(run_dir, tmp_path):
    corpus = write_corpus(tmp_path) / "genres_original"
    refused = [corpus / lie.rel for lie in FILES if lie.status == "quarantined"]
    proc, out = gtzan_predict([*refused, "--run", run_dir], tmp_path)
    assert out["exit"] == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1] == "gtzan: error: every file failed"
    assert len([line for line in lines if line.endswith("(skipped)")]) == len(refused)


def _write_music(path: Path, *, minutes: float, sr: int = 22050) -> None:
    """``minutes`` of a changing tone mixture with noise, as FLAC, written a second at a time."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, format="FLAC", subtype="PCM_16") as f:
        for s in range(int(minutes * 60)):
            t = s + np.arange(sr) / sr
            f0 = 110.0 * 2 ** ((s % 24) / 12)
            y = 0.2 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(2 * np.pi * 3 * f0 * t) + 0.05 * rng.standard_normal(sr)
            f.write(y.astype(np.float32))


def test_peak_memory_does_not_grow_with_the_duration(run_dir, tmp_path):
    """SHORT and LONG minutes, each in a fresh child: the same peak within DURATION_MARGIN."""
    peaks = {}
    for minutes in (SHORT, LONG):
        path = tmp_path / f"{minutes}min.flac"
        _write_music(path, minutes=minutes)
        proc, out = gtzan_predict([path, "--run", run_dir], tmp_path)
        assert out["exit"] == 0, proc.stderr[-3000:]
        assert f"{path}  ({minutes * 60}.0 s, 22050 Hz, mono; {minutes * 60} windows of 1 s)" in proc.stdout
        peaks[minutes] = out["peak_kib"] * 1024
    assert peaks[LONG] - peaks[SHORT] < DURATION_MARGIN, {m: f"{p / 2**20:.0f} MiB" for m, p in peaks.items()}
    assert peaks[LONG] < PEAK_RSS_LIMIT
