"""The ``gtzan`` command line, through its real entry point: every subcommand, success and errors.

Most tests drive ``pipelines.cli.main`` with click's ``CliRunner``; a few run the installed
console script in a subprocess. One module-scoped sandbox walks the whole chain on a tiny
demo corpus (3 songs per genre, 6 s): demo -> ingest -> features build -> train -> report ->
predict, and the error tests use fresh, empty locations.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from cli_helpers import GTZAN_VARS, env_for, fails, ok, run

from pipelines import cli
from pipelines.cli import ui as cli_ui
from pipelines.cli import workspace as cli_workspace

SUBCOMMANDS = ("demo", "ingest", "features", "train", "report", "predict", "ui", "run")
FEATURE_SUBCOMMANDS = ("build", "describe", "query", "verify")


# ---------------------------------------------------------------------------------------
# the sandbox: a tiny corpus taken through every subcommand
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("cli")
    data = root / "data"
    env = env_for(data)
    steps = {}
    steps["demo"] = ok(["demo", "--songs-per-genre", "3", "--seconds", "6"], env)
    steps["ingest"] = ok(["ingest", "--progress"], env)
    steps["build"] = ok(["features", "build", "--clip-seconds", "1,5", "--progress"], env)
    steps["train"] = ok(["train", "--model", "seed_cnn", "--clip-seconds", "1", "--epochs", "1", "--no-progress"], env)
    steps["report"] = ok(["report"], env)
    return {"root": root, "data": data, "env": env, "steps": steps}


def test_demo_writes_the_kaggle_layout(sandbox: dict) -> None:
    r = sandbox["steps"]["demo"]
    out = Path(r.stdout.strip())
    assert out == sandbox["data"] / "demo" / "genres_original"
    files = sorted(out.glob("*/*.wav"))
    assert len(files) == 30
    info = sf.info(out / "jazz" / "jazz.00002.wav")
    assert info.samplerate == 22050 and info.duration == pytest.approx(6.0)


def test_demo_to_another_folder(tmp_path: Path) -> None:
    r = ok(["demo", "--out", tmp_path / "d", "--songs-per-genre", "1", "--seconds", "2", "--seed", "3"],
           env_for(tmp_path / "data"))
    assert Path(r.stdout.strip()) == tmp_path / "d" / "genres_original"
    assert len(list((tmp_path / "d" / "genres_original").glob("*/*.wav"))) == 10
    fails(["demo", "--out", tmp_path / "e", "--songs-per-genre", "0"], env_for(tmp_path), 2,
          r"'--songs-per-genre': 0 is not in the range 1<=x<=1000")
    fails(["demo", "--out", tmp_path / "e", "--seconds", "-1"], env_for(tmp_path), 2,
          r"'--seconds': -1\.0 is not in the range 0<x<=600")


def test_ingest_reports_counts_tables_and_progress(sandbox: dict) -> None:
    r = sandbox["steps"]["ingest"]
    assert "cataloged 30 files" in r.stdout and "30 ok, 0 quarantined" in r.stdout
    assert "synthetic demo" in r.stdout
    store = sandbox["data"] / "store"
    assert pl.read_parquet(store / "catalog.parquet").height == 30
    assert pl.read_parquet(store / "splits.parquet").height == 30
    assert re.search(r"seed\s+test 10, train 20", r.stdout)
    assert re.search(r"decode: .*\d+/30", r.stderr)  # the tqdm bar


def test_ingest_quarantines_an_unreadable_file(sandbox: dict, tmp_path: Path) -> None:
    import shutil

    gtzan = tmp_path / "gtzan"
    shutil.copytree(sandbox["data"] / "demo" / "genres_original", gtzan / "genres_original")
    (gtzan / "genres_original" / "jazz" / "jazz.00054.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    env = env_for(tmp_path / "data")
    r = ok(["ingest", gtzan], env)
    assert "31 files" in r.stdout and "30 ok, 1 quarantined" in r.stdout
    assert re.search(r"quarantined jazz/jazz.00054.wav: .+", r.stdout)
    cat = pl.read_parquet(tmp_path / "data" / "store" / "catalog.parquet")
    assert cat.filter(pl.col("song_id") == "jazz.00054")["status"].item() == "quarantined"
    # GTZAN_DIR is the default folder
    r = ok(["ingest", "--store", tmp_path / "s2"], env_for(tmp_path / "data", GTZAN_DIR=str(gtzan)))
    assert "31 files" in r.stdout and (tmp_path / "s2" / "catalog.parquet").exists()


def test_ingest_errors(tmp_path: Path) -> None:
    env = env_for(tmp_path / "data")
    fails(["ingest", tmp_path / "no" / "such" / "folder"], env, 2, r"audio folder '.*folder' does not exist")
    (tmp_path / "empty").mkdir()
    fails(["ingest", tmp_path / "empty"], env, 2, "holds no genre folders")
    fails(["ingest"], env_for(tmp_path / "data", GTZAN_DIR=str(tmp_path / "gone")), 2, "does not exist")
    fails(["ingest", "--layout", "weird", tmp_path], env, 2, "--layout must be one of")


def test_features_build_output_and_files(sandbox: dict) -> None:
    r = sandbox["steps"]["build"]
    assert "30 songs computed, 0 cached, 0 failed" in r.stdout
    assert re.search(r"1 s\s+built\s+30 clips of 30 songs", r.stdout)
    assert re.search(r"5 s\s+built\s+30 clips of 30 songs", r.stdout)
    paths = re.findall(r"(\S+/clip-0[15]s/current/index.parquet)", r.stdout)
    assert len(paths) == 2 and all(Path(p).exists() for p in paths)
    assert "mel" in r.stderr  # the tqdm bar of the feature build
    # a re-run computes nothing
    again = ok(["features", "build", "--clip-seconds", "5"], sandbox["env"])
    assert "0 songs computed, 30 cached" in again.stdout and "unchanged" in again.stdout


def test_features_build_errors(sandbox: dict, tmp_path: Path) -> None:
    env = env_for(tmp_path / "data")
    audio = sandbox["data"] / "demo"
    fails(["features", "build", audio], env, 1, r"no catalog at .*run ingest first \(`gtzan ingest`\)")
    fails(["features", "build", audio, "--clip-seconds", "7"], env, 2, r"clip_seconds must be one of \[1, 5, 15, 30\]")
    fails(["features", "build"], env, 1, "no demo corpus")
    fails(["features", "build", audio, "--mode", "sometimes"], env, 2, r"unknown mode 'sometimes'")
    # the store's catalog is of other files than the folder given
    other = tmp_path / "other"
    from feature_store.demo import write_demo_corpus

    write_demo_corpus(other, songs_per_genre=1, duration=2.0, genres=("rock",))
    fails(["features", "build", other, "--clip-seconds", "1", "--store", sandbox["data"] / "store"], env, 1,
          r"does not hold the cataloged files \(no blues/blues.00000.wav\); pass the folder you ingested")


def test_features_describe_prints_paths_that_exist(sandbox: dict) -> None:
    r = ok(["features", "describe"], sandbox["env"])
    assert "mode=first" in r.stdout and "n_mels=128" in r.stdout
    assert "30 files, 30 ok, 0 quarantined" in r.stdout
    for kind in ("index", "mel", "summary"):
        found = re.findall(rf"^\s+{kind}\s+(\S+)$", r.stdout, re.M)
        assert len(found) == 2, r.stdout
        assert all(Path(p).exists() and "/current/" in p for p in found)
    reg = json.loads(ok(["features", "describe", "--json"], sandbox["env"]).stdout)
    assert set(reg["clip_lengths"]) == {"1", "5"} and reg["params"]["mode"] == "first"


def test_features_describe_errors(sandbox: dict, tmp_path: Path) -> None:
    fails(["features", "describe"], env_for(tmp_path / "data"), 1, r"no feature store .*gtzan features build")
    r = fails(["features", "describe", "--mode", "segments"], sandbox["env"], 1, "no feature store")
    assert "--mode first --dtype float32" in r.stderr  # it names the stores that do exist


def test_features_query_table(sandbox: dict) -> None:
    r = ok(["features", "query", "--clip-seconds", "5", "--genre", "jazz", "--split", "test"], sandbox["env"])
    lines = r.stdout.splitlines()
    assert lines[0].startswith("| clip_id") and "genre" in lines[0] and "sha256" not in lines[0]
    rows = [ln for ln in lines[2:] if ln.startswith("|")]
    assert len(rows) == 1 and "jazz.00002#05s#00" in rows[0] and "| test " in rows[0]
    assert lines[-1] == "1 clip"
    r = ok(["features", "query", "--clip-seconds", "1", "--limit", "4"], sandbox["env"])
    assert len([ln for ln in r.stdout.splitlines()[2:] if ln.startswith("|")]) == 4
    r = ok(["features", "query", "--clip-seconds", "1"], sandbox["env"])
    assert "30 clips (showing 20;" in r.stdout


def test_features_query_formats(sandbox: dict, tmp_path: Path) -> None:
    env = sandbox["env"]
    base = ["features", "query", "--clip-seconds", "5", "--genre", "blues,rock"]
    csv = pl.read_csv(io.StringIO(ok([*base, "--format", "csv"], env).stdout))
    assert csv.height == 6 and set(csv["genre"]) == {"blues", "rock"} and "hdf5_row" in csv.columns
    js = json.loads(ok([*base, "--format", "json"], env).stdout)
    assert len(js) == 6 and {d["genre"] for d in js} == {"blues", "rock"}
    r = ok([*base, "--format", "parquet"], env)
    pq = pl.read_parquet(io.BytesIO(r.stdout_bytes))
    assert pq.equals(csv.cast(pq.schema)) or pq.height == 6
    r = ok([*base, "-o", tmp_path / "q.parquet"], env)
    assert "wrote 6 clips to" in r.stderr
    assert pl.read_parquet(tmp_path / "q.parquet").select("clip_id").equals(pq.select("clip_id"))
    ok([*base, "--format", "csv", "-o", tmp_path / "q.txt"], env)
    assert pl.read_csv(tmp_path / "q.txt").height == 6
    r = ok([*base, "--summary", "--columns", "clip_id,mean_000,std_127", "--format", "csv"], env)
    s = pl.read_csv(io.StringIO(r.stdout))
    assert s.columns == ["clip_id", "mean_000", "std_127"] and s.height == 6
    r = ok(["features", "query", "--clip-seconds", "5", "--song", "pop.00001", "--scheme", "stratified",
            "--format", "json"], env)
    assert [d["song_id"] for d in json.loads(r.stdout)] == ["pop.00001"]


def test_features_query_errors(sandbox: dict, tmp_path: Path) -> None:
    env = sandbox["env"]
    q = ["features", "query", "--clip-seconds"]
    fails([*q, "5", "--genre", "polka"], env, 2, r"unknown genre 'polka'; valid genres are \['blues'")
    fails([*q, "7"], env, 2, r"clip_seconds must be one of \[1, 5, 15, 30\], got '7'")
    fails([*q, "30"], env, 1, r"no 30 s (feature )?store .*built clip lengths: \[1, 5\]")
    fails([*q, "5", "--split", "holdout"], env, 2, "unknown split 'holdout' for scheme 'seed'; valid splits are")
    fails([*q, "5", "--scheme", "random"], env, 2, "random")
    fails([*q, "5", "--columns", "nope"], env, 2, r"unknown column\(s\) \['nope'\]")
    fails([*q, "5", "-o", tmp_path / "x.xlsx"], env, 2, "cannot tell the format of x.xlsx")
    fails([*q, "5", "--format", "xml"], env, 2, "Invalid value for '--format'")
    fails(["features", "query"], env, 2, "Missing option '--clip-seconds'")
    fails([*q, "5"], env_for(tmp_path / "data"), 1, r"no 5 s (feature )?store")


def test_train_prints_metrics_and_publishes_a_run(sandbox: dict) -> None:
    r = sandbox["steps"]["train"]
    m = re.search(r"seed_cnn 1 s seed 0: song accuracy (\d+) %, clip accuracy (\d+) % on 10 held-out songs .*  (\S+)",
                  r.stdout)
    assert m, r.stdout
    run_dir = Path(m[3])
    assert (run_dir / "model.keras").exists() and (run_dir / "normalizer.json").exists()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == "seed_cnn" and metrics["clip_seconds"] == 1 and metrics["costs"]["epochs_run"] == 1
    assert int(m[1]) == round(100 * metrics["metrics"]["song_accuracy"])
    assert f"\n  labels: {', '.join(metrics['labels'])}\n" in r.stdout  # the labels of the data it trained on


def test_train_errors(sandbox: dict, tmp_path: Path) -> None:
    env = sandbox["env"]
    fails(["train", "--model", "transformer"], env, 2, r"unknown model 'transformer'; valid models are")
    fails(["train", "--clip-seconds", "30"], env, 1, r"no 30 s (feature )?store .*gtzan features build")
    fails(["train", "--clip-seconds", "2"], env, 2, "clip_seconds must be one of")
    fails(["train", "--seed", "x"], env, 2, "--seed takes integers")
    fails(["train", "--epochs", "0", "--clip-seconds", "1", "--models-dir", tmp_path / "m"], env, 2,
          r"'--epochs': 0 is not in the range 1<=x<=10000")
    fails(["train"], env_for(tmp_path / "data"), 1, r"no 5 s (feature )?store")


def test_report_writes_markdown_and_names_the_best(sandbox: dict) -> None:
    r = sandbox["steps"]["report"]
    m = re.search(r"report of 1 run: (\S+)", r.stdout)
    assert m and Path(m[1]).exists()
    assert Path(m[1]).resolve().parent == (sandbox["data"] / "reports").resolve()
    assert "seed_cnn" in Path(m[1]).read_text()
    assert re.search(r"best model: seed_cnn at 1 s \(song accuracy \d+ %\)", r.stdout)
    html = Path(m[1]).with_suffix(".html")
    assert ("as HTML: " in r.stdout) == html.exists()
    r = ok(["report", "--out", sandbox["root"] / "elsewhere"], sandbox["env"])
    assert (sandbox["root"] / "elsewhere" / "report.md").exists()


def test_report_errors(sandbox: dict, tmp_path: Path) -> None:
    fails(["report"], env_for(tmp_path / "data"), 1, r"no trained model under .*gtzan train")
    fails(["report", "--mode", "segments"], sandbox["env"], 1, "mode segments")


# ---------------------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def audio_files(sandbox: dict) -> dict[str, Path]:
    import soxr

    folder = sandbox["root"] / "inputs"
    folder.mkdir()
    y, sr = sf.read(sandbox["data"] / "demo" / "genres_original" / "reggae" / "reggae.00001.wav", dtype="float32")
    y44 = soxr.resample(y, sr, 44100).astype(np.float32)
    stereo = np.stack([y44, 0.8 * y44], axis=1)
    files = {
        "wav": folder / "stereo44k.wav",
        "ogg": folder / "song.ogg",
        "mp3": folder / "song.mp3",
        "short": folder / "short.flac",
        "bad": folder / "broken.wav",
    }
    sf.write(files["wav"], stereo, 44100)
    sf.write(files["ogg"], stereo, 44100, format="OGG", subtype="VORBIS")
    sf.write(files["mp3"], stereo, 44100, format="MP3", subtype="MPEG_LAYER_III")
    sf.write(files["short"], y[: sr // 2], sr)
    files["bad"].write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt nonsense")
    return files


def test_predict_prints_top3_per_file(sandbox: dict, audio_files: dict[str, Path]) -> None:
    r = ok(["predict", audio_files["wav"], audio_files["ogg"], audio_files["mp3"]], sandbox["env"])
    out = r.stdout.splitlines()
    assert re.match(r"model: seed_cnn on 1 s clips, seed 0 \(best model of the report; held-out song accuracy \d+ %\)",
                    out[0])
    assert out[1] == "labels: blues, classical, country, disco, hiphop, jazz, metal, pop, reggae, rock"  # the run's
    for name, fmt_line in (("stereo44k.wav", out[2]), ("song.ogg", out[6]), ("song.mp3", out[10])):
        assert name in fmt_line and "44100 Hz, stereo" in fmt_line and "windows of 1 s" in fmt_line
    for block in (out[3:6], out[7:10], out[11:14]):
        pcts = [float(re.match(r"  (\w+)\s+([\d.]+) %", ln)[2]) for ln in block]
        assert pcts == sorted(pcts, reverse=True) and 0 < sum(pcts) <= 100.1
    assert len(out) == 14


def test_predict_short_file_is_padded_and_says_so(sandbox: dict, audio_files: dict[str, Path]) -> None:
    r = ok(["predict", audio_files["short"]], sandbox["env"])
    assert "(0.5 s, 22050 Hz, mono; 1 window of 1 s; shorter than one 1 s window: padded with 0.5 s of silence)" \
        in r.stdout


def test_predict_json_has_per_window_probabilities(sandbox: dict, audio_files: dict[str, Path]) -> None:
    r = ok(["predict", audio_files["wav"], audio_files["short"], "--json"], sandbox["env"])
    doc = json.loads(r.stdout)
    assert doc["model"]["model"] == "seed_cnn" and doc["model"]["clip_seconds"] == 1
    long, short = doc["files"]
    assert long["ok"] and len(long["top"]) == 3 and long["n_windows"] == 6 == len(long["windows"])
    assert long["source_sample_rate"] == 44100 and long["source_channels"] == 2
    for w in long["windows"]:
        assert sum(w["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    mean = {g: np.mean([w["probabilities"][g] for w in long["windows"]]) for g in long["probabilities"]}
    assert mean == pytest.approx(long["probabilities"], abs=1e-6)
    assert short["padded"] is True and short["padded_seconds"] == pytest.approx(0.5, abs=1e-3)


def test_predict_skips_unreadable_files(sandbox: dict, audio_files: dict[str, Path], tmp_path: Path) -> None:
    env = sandbox["env"]
    r = run(["predict", audio_files["bad"], audio_files["wav"], tmp_path / "missing.mp3"], env)
    assert r.exit_code == 0, r.stderr
    assert "stereo44k.wav" in r.stdout
    errs = [ln for ln in r.stderr.splitlines() if ln.startswith("gtzan: error:")]
    assert len(errs) == 2
    assert "cannot decode broken.wav" in errs[0] and errs[0].endswith("(skipped)")
    assert "missing.mp3: no such file (skipped)" in errs[1]
    fails(["predict", audio_files["bad"], audio_files["wav"], "--strict"], env, 1, "1 of 2 files failed")
    fails(["predict", audio_files["bad"]], env, 1, "every file failed")
    doc = json.loads(run(["predict", audio_files["bad"], audio_files["ogg"], "--json"], env).stdout)
    assert [f["ok"] for f in doc["files"]] == [False, True] and "cannot decode" in doc["files"][0]["error"]


def test_predict_model_choice_and_errors(sandbox: dict, audio_files: dict[str, Path], tmp_path: Path) -> None:
    env = sandbox["env"]
    wav = audio_files["wav"]
    r = ok(["predict", wav, "--model", "seed_cnn", "--clip-seconds", "1", "--seed", "0"], env)
    assert "best trained run matching your choice" in r.stdout
    fails(["predict", wav, "--model", "seed_rnn"], env, 1,
          r"model 'seed_rnn' has not been trained yet \(trained: seed_cnn 1 s seed 0\); train it with "
          r"`gtzan train --model seed_rnn`")
    fails(["predict", wav, "--clip-seconds", "30"], env, 1, "at 30 s has not been trained yet")
    fails(["predict", wav, "--clip-seconds", "3"], env, 2, "clip_seconds must be one of")
    fails(["predict", wav, "--model", "nope"], env, 2, "unknown model 'nope'")
    fails(["predict", wav], env_for(tmp_path / "data"), 1, r"no trained model under .*\(`make run` or `gtzan train`\)")
    fails(["predict"], env, 2, "Missing argument 'FILES...'")
    fails(["predict", wav, "--hop", "0"], env, 2, r"--hop must be a number of seconds >= 0\.01")
    fails(["predict", wav, "--hop", "inf"], env, 2, r"--hop must be a number of seconds >= 0\.01, got inf")
    fails(["predict", wav, "--max-seconds", "0"], env, 2, "predict_max_seconds must be a finite number > 0")
    # a run folder named directly
    run_dir = next((sandbox["data"] / "models").glob("mel-*/seed_cnn/clip-01s/seed-0/current"))
    r = ok(["predict", wav, "--run", run_dir, "--hop", "0.5"], env)
    assert "the run you named" in r.stdout and "11 windows of 1 s" in r.stdout
    fails(["predict", wav, "--run", run_dir, "--model", "seed_cnn"], env, 2, "--run names one run")
    fails(["predict", wav, "--run", tmp_path], env, 1, "is not a complete trained run: missing metrics.json")


# ---------------------------------------------------------------------------------------
# ui
# ---------------------------------------------------------------------------------------
def test_ui_dry_run_binds_localhost(tmp_path: Path) -> None:
    r = ok(["ui", "--dry-run", "--port", "3999"], env_for(tmp_path / "data"))
    root = Path(cli.__file__).resolve().parents[2]
    assert f"cd {root}" in r.stdout
    assert re.search(r"dagster dev -w workspace.yaml -h 127.0.0.1 -p 3999$", r.stdout.strip())
    assert f"GTZAN_DATA_DIR={tmp_path / 'data'}" in r.stdout


def test_ui_starts_dagster_dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class FakeProc:
        def __init__(self, cmd, cwd, env):
            calls.append((cmd, cwd, env))

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(cli_ui.subprocess, "Popen", FakeProc)
    home = tmp_path / "home"
    ok(["ui"], {**env_for(tmp_path / "data"), "DAGSTER_HOME": str(home)})
    (cmd, cwd, env), = calls
    assert cmd[1:] == ["dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", "3000"]
    assert Path(cmd[0]).name == "dagster" and Path(cwd, "workspace.yaml").exists()
    assert env["DAGSTER_HOME"] == str(home) and (home / "dagster.yaml").exists()
    assert "telemetry" in (home / "dagster.yaml").read_text()


def test_ui_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class DyingProc:
        def __init__(self, *a, **k):
            pass

        def wait(self, timeout=None):
            return 3

    monkeypatch.setattr(cli_ui.subprocess, "Popen", DyingProc)
    fails(["ui"], {**env_for(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "h")}, 1,
          "dagster dev exited with code 3")
    fails(["ui", "--port", "0"], env_for(tmp_path), 2, "Invalid value for '--port'")
    monkeypatch.setattr(cli_workspace, "PROJECT_DIR", tmp_path)
    monkeypatch.chdir(tmp_path)
    fails(["ui", "--dry-run"], env_for(tmp_path), 1, "no workspace.yaml")


@pytest.mark.slow
def test_ui_really_serves_on_localhost(tmp_path: Path) -> None:
    """Start `gtzan ui` for real, wait for the web server, then stop it with SIGINT."""
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "GTZAN_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([_gtzan_exe(), "ui", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                time.sleep(2)
        else:
            pytest.fail("the Dagster UI did not come up within 240 s")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---------------------------------------------------------------------------------------
# settings, flags and the workspace
# ---------------------------------------------------------------------------------------
def test_workspace_makes_the_stores(tmp_path: Path) -> None:
    from feature_store.embeddings import EmbeddingStore
    from feature_store.errors import ParameterError
    from feature_store.store import FeatureStore

    ws = cli.Workspace.from_env({"GTZAN_DATA_DIR": str(tmp_path), "GTZAN_MODE": "segments"}, dtype="float16")
    assert (ws.store_root, ws.model_root, ws.report_root) == (tmp_path / "store", tmp_path / "models",
                                                              tmp_path / "reports")
    assert (ws.params.mode, ws.params.dtype) == ("segments", "float16")
    mel = ws.view_store("mel")
    assert mel.view.name == "mel" and mel.view.params == ws.params and mel.root == (tmp_path / "store").resolve()
    assert mel.store_dir == FeatureStore(tmp_path / "store", params=ws.params).store_dir
    emb = ws.with_settings(embedding_model="MTT_musicnn").view_store("embeddings")
    assert emb.view.model == "MTT_musicnn" and emb.view.clip_params.mode == "segments"
    assert emb.store_dir == EmbeddingStore(tmp_path / "store", model="MTT_musicnn", params=ws.params).store_dir
    with pytest.raises(ParameterError,
                       match=r"unknown feature view 'pictures'; valid views are \['mel', 'embeddings', 'timbre'\]"):
        ws.view_store("pictures")
    assert ws.model_store().root == (tmp_path / "models").resolve()
    root = ws.audio_root(tmp_path / "x", write_demo=False)
    assert root.path == tmp_path / "x" and not root.is_demo


def test_bad_environment_is_one_line(tmp_path: Path) -> None:
    fails(["features", "describe"], {**env_for(tmp_path), "GTZAN_WORKERS": "many"}, 2,
          "GTZAN_WORKERS must be a non-negative integer, got 'many'")
    fails(["ingest"], env_for(tmp_path, GTZAN_MODE="sometimes"), 2, r"GTZAN_MODE must be one of \['first', 'segments'\]")


def test_help_shows_the_settings_in_force(tmp_path: Path) -> None:
    out = ok(["features", "build", "--help"], env_for(tmp_path / "d", GTZAN_MODE="segments")).stdout
    squeezed = "".join(out.split())  # help wraps long paths anywhere
    assert f"[default:{tmp_path / 'd' / 'store'}]" in squeezed
    text = " ".join(out.split())
    assert re.search(r"--mode [^\[]*\[default: segments\]", text)
    assert re.search(r"--clip-seconds [^\[]*\[default: 1, 5, 15, 30\]", text)
    assert re.search(r"--lock-timeout [^\[]*\[default: 3600.0; x>=0\]", text)


def test_train_without_model_trains_the_run_models(sandbox: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """`gtzan train` trains the models of `make run`, with its epoch cap (2) and seed."""
    from pipelines.cli import train as cli_train
    from pipelines.settings import DEFAULT_MODELS

    calls = []
    monkeypatch.setattr(cli_train, "_train", lambda ws, name, c, seed, show, pin=None: calls.append(
        (name, c, seed, ws.settings.epochs)))
    r = ok(["train", "--clip-seconds", "1"], sandbox["env"])
    # the default models whose view is built (the sandbox has no timbre store: it says so)
    assert calls == [(m, 1, 0, 2) for m in DEFAULT_MODELS if m != "timbre_logreg"]
    assert "skipping timbre_logreg: its timbre view is not built at 1 s (`gtzan features build --view timbre" \
        in r.stderr
    calls.clear()
    ok(["train", "--model", "cnn", "--model", "rnn,baseline", "--clip-seconds", "1,5", "--seed", "3", "--epochs", "4"],
       sandbox["env"])
    assert calls == [(m, c, 3, 4) for c in (1, 5) for m in ("cnn", "rnn", "baseline")]


def test_run_options_become_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipelines.sequence
    from assets.partitions import PIPELINE_MODELS

    seen = []

    def fake_run_all(*, settings, workspace_file, dagster_home, run_launcher, with_embeddings, log):
        assert workspace_file == Path(cli.__file__).resolve().parents[2] / "workspace.yaml"
        assert dagster_home == tmp_path / "home" and (dagster_home / "dagster.yaml").is_file()
        seen.append((settings, with_embeddings, run_launcher))
        return {"runs": ["r1", "r2"], "report": "report.md"}

    monkeypatch.setattr(pipelines.sequence, "run_all", fake_run_all)
    env = {**env_for(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home")}
    r = ok(["run"], env)
    s, emb, launcher = seen[-1]
    assert launcher is False
    assert (s.models, s.clip_seconds, s.epochs, s.seeds, s.scheme, emb) == (
        ("baseline", "cnn", "rnn", "crnn_small", "timbre_logreg"), (1, 5, 15, 30), 2, (0,), "seed", False)
    assert s.data_dir == tmp_path / "data" and "2 runs recorded" in r.stdout and "report.md" in r.stdout
    ok(["run", "--epochs", "30", "--seeds", "0", "1", "2", "--clip-seconds", "5", "1", "--models", "cnn", "rnn",
        "--scheme", "fault_filtered", "--run-launcher"], env)
    s, emb, launcher = seen[-1]
    assert launcher is True
    assert (s.models, s.clip_seconds, s.epochs, s.seeds, s.scheme, emb) == (
        ("cnn", "rnn"), (1, 5), 30, (0, 1, 2), "fault_filtered", False)
    ok(["run", "--models", "all", "--seeds", "0,1"], env)
    s, emb, _ = seen[-1]
    assert s.models == PIPELINE_MODELS and "timbre_logreg" in s.models and s.seeds == (0, 1) and emb is True
    ok(["run", "--with-embeddings"], env)
    assert seen[-1][1] is True
    fails(["run", "--epochs", "0"], env, 2, "Invalid value for '--epochs'")
    fails(["run", "--seeds", "a"], env, 2, "--seeds takes integers")
    fails(["run", "--clip-seconds", "7"], env, 2, r"clip_seconds must be one of \[1, 5, 15, 30\]")
    assert len(seen) == 4


def test_features_build_lock_timeout(sandbox: dict) -> None:
    """--lock-timeout 0: a build that finds the store locked by another gives up at once."""
    from filelock import FileLock

    store_dir = next((sandbox["data"] / "store" / "features").glob("mel-*"))
    lock = FileLock(str(store_dir / ".locks" / "cache.lock"), thread_local=False)  # what a running build holds
    with lock:
        fails(["features", "build", "--clip-seconds", "1", "--lock-timeout", "0"], sandbox["env"], 1,
              "another build is filling")
    fails(["features", "build", "--lock-timeout", "-1"], sandbox["env"], 2, "Invalid value for '--lock-timeout'")


# ---------------------------------------------------------------------------------------
# the console script, help and start-up
# ---------------------------------------------------------------------------------------
def _gtzan_exe() -> str:
    exe = Path(sys.executable).parent / "gtzan"
    if not exe.exists():
        pytest.skip("the gtzan console script is not installed beside this Python")
    return str(exe)


def test_console_script_help_in_a_subprocess() -> None:
    p = subprocess.run([_gtzan_exe(), "--help"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    for sub in SUBCOMMANDS:
        assert re.search(rf"^\s+{sub}\s", p.stdout, re.M), sub
    assert "Exit codes" in p.stdout
    from pipelines.settings import ENV_VARS

    for var in ENV_VARS:
        assert re.search(rf"^\s+{var}\s", p.stdout, re.M), var


def test_console_script_error_is_one_line_in_a_subprocess(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in GTZAN_VARS}
    p = subprocess.run([_gtzan_exe(), "ingest", str(tmp_path / "nowhere")], capture_output=True, text=True,
                       timeout=120, env=env, cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [f"gtzan: error: audio folder '{tmp_path / 'nowhere'}' does not exist"]


def test_importing_the_cli_loads_neither_dagster_nor_tensorflow() -> None:
    code = ("import sys, pipelines.cli; heavy = [m for m in ('dagster', 'tensorflow', 'keras', 'librosa', 'h5py') "
            "if m in sys.modules]; print(heavy)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


@pytest.mark.parametrize("path", [[s] for s in SUBCOMMANDS] + [["features", s] for s in FEATURE_SUBCOMMANDS])
def test_every_subcommand_help_has_an_example(path: list[str], tmp_path: Path) -> None:
    r = ok([*path, "--help"], env_for(tmp_path))
    assert re.search(r"^\s+Examples?:\s*$", r.stdout, re.M), r.stdout
    examples = re.findall(r"^\s+(gtzan \S.*)$", r.stdout, re.M)
    assert examples and all(e.split()[1] == path[0] for e in examples)


def test_unknown_subcommand_and_option_are_one_line(tmp_path: Path) -> None:
    fails(["fly"], env_for(tmp_path), 2, r"No such command 'fly'.*\(see `gtzan --help`\)")
    fails(["features", "build", "--fast"], env_for(tmp_path), 2, r"No such option.*--fast.*\(see `gtzan features build --help`\)")


def test_gtzan_debug_shows_the_traceback(tmp_path: Path) -> None:
    r = run(["ingest", tmp_path / "nowhere"], {**env_for(tmp_path), "GTZAN_DEBUG": "1"})
    assert r.exit_code != 0
    from feature_store.errors import ParameterError

    assert isinstance(r.exception, ParameterError)


def test_train_help_states_trainconfigs_defaults(tmp_path: Path) -> None:
    from training.train import TrainConfig

    text = " ".join(ok(["train", "--help"], env_for(tmp_path)).stdout.split())
    assert re.search(rf"--epochs [^\\[]*TrainConfig's.*\[default: {TrainConfig().epochs}; 1<=x<=\d+\]", text)
    assert re.search(rf"--batch-size [^\\[]*TrainConfig's.*\[default: {TrainConfig().batch_size}; 1<=x<=\d+\]", text)


# ---------------------------------------------------------------------------------------
# the embeddings view and the probes (musicnn)
# ---------------------------------------------------------------------------------------
def _no_musicnn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the musicnn weights package look uninstalled."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "musicnn" else real(name, *a))


@pytest.fixture(scope="module")
def emb_sandbox(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """2 songs per genre of 6 s: embeddings of 1 s and 5 s clips, a logistic-regression probe at 5 s only."""
    from feature_store.embeddings import musicnn as mn

    try:
        weights = mn.weights_sha256("MSD_musicnn")
    except mn.MusicnnWeightsError:
        pytest.skip(f"musicnn weights not installed; `{mn.INSTALL_COMMAND}` installs them")
    data = tmp_path_factory.mktemp("cli-emb") / "data"
    env = env_for(data)
    ok(["demo", "--songs-per-genre", "2", "--seconds", "6"], env)
    ok(["ingest"], env)
    steps = {
        "build": ok(["features", "build", "--view", "embeddings", "--clip-seconds", "1,5"], env),
        "rebuild": ok(["features", "build", "--view", "embeddings", "--clip-seconds", "5"], env),
        "train": ok(["train", "--model", "probe_logreg_msd", "--clip-seconds", "5", "--seed", "0,1"], env),
        "report": ok(["report"], env),
    }
    return {"data": data, "env": env, "steps": steps, "weights": weights}


def test_features_build_embeddings(emb_sandbox: dict) -> None:
    out = emb_sandbox["steps"]["build"].stdout
    w = emb_sandbox["weights"]
    assert re.search(rf"^embeddings \S+emb-MSD_musicnn-\w+ \(MSD_musicnn, weights {w[:12]}, mode first\): "
                     r"20 songs computed, 0 cached, 0 failed", out, re.M), out
    for c in (1, 5):
        m = re.search(rf"^\s+{c} s  built\s+20 clips of 20 songs, 1 musicnn patch per clip, \d+ ms per clip  (\S+)$",
                      out, re.M)
        assert m, out
        index = Path(m[1])
        assert index.is_file() and (index.parent / "embeddings.h5").is_file()
        assert pl.read_parquet(index)["patches"].to_list() == [1] * 20
    again = emb_sandbox["steps"]["rebuild"].stdout
    assert "0 songs computed, 20 cached" in again and re.search(r"^\s+5 s  unchanged", again, re.M), again


def test_features_describe_embeddings(emb_sandbox: dict) -> None:
    env, w = emb_sandbox["env"], emb_sandbox["weights"]
    out = ok(["features", "describe", "--view", "embeddings"], env).stdout
    assert f"model       MSD_musicnn, weights sha256 {w}" in out
    assert "layers      max_pool 753, mean_pool 753, penultimate 200, tags 50" in out
    paths = [Path(p) for p in re.findall(r"^\s+(?:index|embeddings)\s+(\S+)$", out, re.M)]
    assert len(paths) == 4 and all(p.is_file() for p in paths)
    assert re.search(r"^ 5 s clips  20 clips of 20 songs, 1 musicnn patch per clip", out, re.M)
    reg = json.loads(ok(["features", "describe", "--view", "embeddings", "--json"], env).stdout)
    assert reg["weights_sha256"] == w and reg["model"] == "MSD_musicnn" and set(reg["clip_lengths"]) == {"1", "5"}


def test_features_query_embeddings(emb_sandbox: dict, tmp_path: Path) -> None:
    from feature_store.embeddings import EmbeddingStore

    env = emb_sandbox["env"]
    out = ok(["features", "query", "--view", "embeddings", "--clip-seconds", "5", "--genre", "jazz"], env).stdout
    assert "patches" in out and "jazz.00000#05s#00" in out and "2 clips" in out
    dest = tmp_path / "tags.parquet"
    ok(["features", "query", "--view", "embeddings", "--clip-seconds", "5", "--split", "test", "--layers", "tags",
        "-o", dest], env)
    df = pl.read_parquet(dest)
    tags = [f"tags_{k:03d}" for k in range(50)]
    assert df.height == 10 and tags[0] in df.columns and tags[-1] in df.columns and "patches" in df.columns
    ref = EmbeddingStore(emb_sandbox["data"] / "store").tensors(clip_seconds=5, layers="tags", split="test")
    assert df["clip_id"].to_list() == ref.index["clip_id"].to_list()
    np.testing.assert_array_equal(df.select(tags).to_numpy(), ref.x)
    fails(["features", "query", "--view", "embeddings", "--clip-seconds", "5", "--summary"], env, 2,
          r"the embeddings view has no table 'summary'; its tables are \[\]")
    fails(["features", "query", "--clip-seconds", "5", "--layers", "tags"], env, 2,
          r"the mel view has no array 'tags'; valid arrays are \['mel'\]")
    fails(["features", "query", "--view", "embeddings", "--clip-seconds", "5", "--layers", "conv9"], env, 2,
          r"the embeddings view has no array 'conv9'; valid arrays are \['max_pool', 'mean_pool', 'penultimate', 'tags'\]")


def test_embeddings_view_errors(emb_sandbox: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = emb_sandbox["env"]
    fails(["features", "query", "--view", "embeddings", "--clip-seconds", "30"], env, 1,
          r"no 30 s MSD_musicnn embedding.*`gtzan features build --view embeddings --clip-seconds 30`")
    fails(["features", "describe", "--view", "embeddings", "--embedding-model", "MTT_musicnn"], env, 1,
          r"no MTT_musicnn embedding store.*`gtzan features build --view embeddings --embedding-model MTT_musicnn`"
          r".*emb-MSD_musicnn-\w+ \(--mode first --embedding-model MSD_musicnn; 1, 5 s\)")
    fails(["features", "build", "--view", "pictures"], env, 2, r"Invalid value for '--view'")
    fails(["features", "build", "--view", "embeddings", "--embedding-model", "MSD_vgg"], env, 2,
          r"Invalid value for '--embedding-model'")
    _no_musicnn(monkeypatch)
    fails(["features", "build", "--view", "embeddings", "--clip-seconds", "5"], env, 1,
          r"musicnn weights \(MSD_musicnn\) are not installed.*`python -m pip install --no-deps musicnn==0\.1\.0`")


def test_train_probe_report_and_predict(emb_sandbox: dict) -> None:
    env = emb_sandbox["env"]
    out = emb_sandbox["steps"]["train"].stdout
    lines = re.findall(r"^probe_logreg_msd 5 s seed (\d): song accuracy (\d+) %, clip accuracy \d+ % on 10 held-out "
                       r"songs \(10 training clips, \d+ ms per clip with musicnn\)  (\S+)$", out, re.M)
    assert [s for s, _, _ in lines] == ["0", "1"], out
    for _, acc, run_dir in lines:
        files = sorted(p.name for p in Path(run_dir).iterdir())
        assert files == ["metrics.json", "probe.json", "probe.npz"]
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
        assert metrics["family"] == "vector" and int(acc) == round(100 * metrics["metrics"]["song_accuracy"])
    assert "best model: probe_logreg_msd at 5 s" in emb_sandbox["steps"]["report"].stdout
    song = emb_sandbox["data"] / "demo" / "genres_original" / "jazz" / "jazz.00001.wav"
    # the report's best is a probe: predict uses it, embedding the file with musicnn
    r = ok(["predict", song], env)
    assert r.stdout.startswith("model: probe_logreg_msd on 5 s clips, seed 0 (best model of the report; ")
    assert re.search(r"jazz\.00001\.wav  \(6\.0 s, 22050 Hz, mono; 2 windows of 5 s\)", r.stdout), r.stdout
    doc = json.loads(ok(["predict", song, "--model", "probe_logreg_msd", "--seed", "1", "--json"], env).stdout)
    assert doc["model"]["family"] == "vector" and doc["model"]["seed"] == 1
    [f] = doc["files"]
    assert f["n_windows"] == 2 and len(f["windows"]) == 2
    assert sum(f["probabilities"].values()) == pytest.approx(1.0)


def test_probe_errors(emb_sandbox: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = emb_sandbox["env"]
    fails(["train", "--model", "probe_svm_msd"], env, 2,
          r"unknown model 'probe_svm_msd'; valid models are \[.*'probe_logreg_msd', 'probe_logreg_mtt', "
          r"'probe_mlp_msd', 'probe_mlp_mtt'.*'seed_cnn'.*'timbre_logreg'\]")
    fails(["train", "--model", "probe_logreg_msd", "--clip-seconds", "30"], env, 1,
          r"no 30 s MSD_musicnn embedding.*`gtzan features build --view embeddings --clip-seconds 30`")
    fails(["train", "--model", "probe_logreg_mtt", "--clip-seconds", "5", "--models-dir", tmp_path / "m"], env, 1,
          r"MTT_musicnn.*`gtzan features build --view embeddings --clip-seconds 5 --embedding-model MTT_musicnn`")
    fails(["predict", "x.wav", "--model", "probe_logreg_msd", "--clip-seconds", "1"], env, 1,
          r"model 'probe_logreg_msd' at 1 s has not been trained yet \(trained: probe_logreg_msd 5 s seed 0, "
          r"probe_logreg_msd 5 s seed 1\)")
    _no_musicnn(monkeypatch)
    song = emb_sandbox["data"] / "demo" / "genres_original" / "jazz" / "jazz.00001.wav"
    fails(["predict", song], env, 1, r"`python -m pip install --no-deps musicnn==0\.1\.0`")
