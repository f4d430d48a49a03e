"""Issue 17, "Stored files": crafted files in the stores, each refused in one line.

A hostile local user edits what the project wrote: a record whose checksum no longer matches
or was deleted, a ``run_dir`` key that points elsewhere, an index rewritten with valid Parquet
page checksums, and files whose sizes or shapes claim far more memory than any the project
writes. Each is refused with one line naming the file and what to do, never a traceback;
the commands that parse the large ones run in a child process under an address-space limit
(:data:`_rlimit.ADDRESS_SPACE_GIB`: TensorFlow reserves address space it never touches; a clean
``gtzan train`` of one epoch here peaks at about 3.7 GB of address space, a clean
``gtzan predict`` at about 2 GB), and their peak resident set (``VmHWM``, and ``ru_maxrss``
of their children) must stay under :data:`PEAK_RSS_LIMIT`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from _rlimit import CHILD
from click.testing import CliRunner

from feature_store import integrity
from feature_store.errors import StoreError

REPO = Path(__file__).resolve().parents[2]
PEAK_RSS_LIMIT = 1.5e9
#: What the issue measured: a 476 MB ``metrics.json``.
BIG_JSON_BYTES = 476_000_000


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A data folder: the demo corpus (3 songs x 3 s per genre), mel and timbre at 1 s, a
    ``cnn`` run (one epoch) and a ``timbre_logreg`` run."""
    from feature_store import ingest
    from feature_store.demo import write_demo_corpus
    from feature_store.engine.store import ViewStore
    from feature_store.views import get_view
    from training.config import TrainConfig
    from training.runner import train_model

    data = tmp_path_factory.mktemp("crafted") / "data"
    audio = write_demo_corpus(data / "demo", songs_per_genre=3, duration=3.0)
    ingest(audio, data / "store")
    for view in ("mel", "timbre"):
        ViewStore(data / "store", get_view(view)).build(audio_root=audio, clip_seconds=[1], workers=1)
    train_model(store_root=data / "store", model_root=data / "models", model="cnn", clip_seconds=1,
                config=TrainConfig(epochs=1, seed=0))
    train_model(store_root=data / "store", model_root=data / "models", model="timbre_logreg", clip_seconds=1)
    return data


@pytest.fixture
def data(world, tmp_path) -> Path:
    """A private copy of the world to damage."""
    out = tmp_path / "data"
    shutil.copytree(world, out, symlinks=True)
    return out


def run_of(data: Path, model: str) -> Path:
    """The published folder of ``model``'s run (seed 0, 1 s)."""
    return next((data / "models").glob(f"*-*/{model}/clip-01s/seed-0/current")).resolve()


def song(data: Path) -> Path:
    return next((data / "demo").rglob("jazz.00000.wav"))


def env_of(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTZAN_")}
    env.update(GTZAN_DATA_DIR=str(data), GTZAN_WORKERS="1", TF_CPP_MIN_LOG_LEVEL="3")
    return env


def gtzan(args: list, data: Path) -> tuple[int, str, str]:
    """``gtzan ARGS`` in process: exit code, stdout, stderr."""
    from pipelines import cli

    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GTZAN_")}
    env.update(GTZAN_DATA_DIR=str(data), GTZAN_WORKERS="1")
    r = CliRunner().invoke(cli.main, [str(a) for a in args], env=env, prog_name="gtzan")
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, r.stdout, r.stderr


def refused(code: int, out: str, err: str, pattern: str) -> str:
    """Assert a non-zero exit with one error line matching ``pattern``, and no traceback."""
    assert code != 0, out + err
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("gtzan: error: ")]
    assert errors and any(re.search(pattern, e) for e in errors), err
    return errors[-1]


def gtzan_child(args: list, data: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """``gtzan ARGS`` in a child process under the address-space limit: output, exit and peak."""
    out = tmp_path / f"peak-{len(list(tmp_path.glob('peak-*')))}.json"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(out), *map(str, args)], cwd=REPO, env=env_of(data),
                          capture_output=True, text=True, timeout=600)
    assert out.exists(), proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr, proc.stderr[-3000:]
    assert result["peak_kib"] * 1024 < PEAK_RSS_LIMIT, f"peak RSS {result['peak_kib'] / 2**20:.2f} GiB"
    return proc, result


def rewrite_json(path: Path, change, *, checksum: bool) -> None:
    """Apply ``change`` to the JSON object at ``path``; recompute its checksum or delete it."""
    doc = json.loads(path.read_text())
    doc.pop(integrity.JSON_CHECKSUM_KEY)
    change(doc)
    path.chmod(0o644)
    path.write_text(json.dumps(integrity.with_checksum(doc) if checksum else doc))


# ---------------------------------------------------------------------------------------
# 3. records edited, a run_dir key, a deleted checksum
# ---------------------------------------------------------------------------------------
def test_an_edited_metrics_json_is_refused_by_report_choice_and_predict(data):
    from training.predict import choose_run

    metrics = run_of(data, "cnn") / "metrics.json"
    text = metrics.read_text()
    doc = json.loads(text)
    acc = json.dumps(doc["metrics"]["song_accuracy"])
    at = text.index(f'"song_accuracy": {acc}') + len('"song_accuracy": ')
    metrics.chmod(0o644)
    metrics.write_text(text[:at] + ("9" if text[at] != "9" else "8") + text[at + 1:])  # one byte
    refused(*gtzan(["report"], data), r"metrics\.json fails its checksum: the file is damaged; train it again")
    with pytest.raises(StoreError, match=r"metrics\.json fails its checksum"):
        choose_run(model_root=data / "models")
    refused(*gtzan(["predict", song(data)], data), r"metrics\.json fails its checksum")
    refused(*gtzan(["predict", song(data), "--run", metrics.parent], data), r"metrics\.json fails its checksum")


def test_a_run_dir_key_never_chooses_the_model_folder(data, tmp_path):
    from training.model_store import ModelStore
    from training.predict import choose_run

    real = run_of(data, "cnn")
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(real, elsewhere)
    for m in (real, elsewhere):  # even with a checksum that matches, the key is not a path to follow
        rewrite_json(m / "metrics.json", lambda d: d.update(run_dir=str(elsewhere)), checksum=True)
    assert all(r.run_dir != elsewhere.resolve() for r in ModelStore(data / "models").runs())
    choice = choose_run(model_root=data / "models", model="cnn")
    assert choice.run_dir == real
    code, out, err = gtzan(["predict", song(data), "--model", "cnn", "--json"], data)
    assert code == 0, err
    assert json.loads(out)["model"]["run_dir"] == str(real)


def test_a_model_folder_outside_the_store_is_refused(data, tmp_path):
    from training.model_store import ModelStore

    link = next((data / "models").glob("mel-*/cnn/clip-01s/seed-0/current"))
    outside = tmp_path / "outside"
    shutil.copytree(link.resolve(), outside)
    link.unlink()
    link.symlink_to(outside)
    with pytest.raises(StoreError, match=r"leads to .*outside, outside the model store"):
        ModelStore(data / "models").runs()


@pytest.mark.parametrize("name", ["metrics.json", "normalizer.json"])
def test_a_run_file_without_its_checksum_is_refused(data, name):
    run = run_of(data, "cnn")
    rewrite_json(run / name, lambda d: None, checksum=False)
    line = refused(*gtzan(["predict", song(data), "--run", run], data), rf"{name}")
    assert "train it again" in line and ("has no checksum" in line or "not the" in line)
    if name == "normalizer.json":  # the family's own reader refuses it too, record or not
        from training.families import family_for
        from training.record import RunRecord

        record = RunRecord.load(run)
        with pytest.raises(StoreError, match=r"normalizer\.json has no checksum .*train it again"):
            family_for(record).load(run, record)
    else:
        refused(*gtzan(["report"], data), r"metrics\.json has no checksum")


def test_an_edited_normalizer_with_a_recomputed_checksum_is_refused(data):
    """The record lists each model file's sha256: a consistent rewrite of one is still caught."""
    run = run_of(data, "cnn")
    rewrite_json(run / "normalizer.json", lambda d: d.update(mean=[0.0] * len(d["mean"])) if "mean" in d else None,
                 checksum=True)
    refused(*gtzan(["predict", song(data), "--run", run], data),
            r"normalizer\.json (is \d+ bytes, not the|does not match its sha256).*train it again")


def test_a_registry_without_its_checksum_is_refused_by_describe_and_verify(data):
    reg = next((data / "store" / "features").glob("mel-*/registry.json"))
    rewrite_json(reg, lambda d: d["catalog"].update(files=999999), checksum=False)
    refused(*gtzan(["features", "describe"], data), r"registry\.json has no checksum .*verify --repair")
    code, out, err = gtzan(["features", "verify", "--view", "mel"], data)
    assert code == 1 and "registry.json has no checksum" in out + err and "999999" not in out


# ---------------------------------------------------------------------------------------
# 4. an index rewritten with valid Parquet checksums
# ---------------------------------------------------------------------------------------
def test_an_index_rewritten_with_valid_parquet_checksums_fails_verify_and_train(data):
    from feature_store.engine.store import ViewStore
    from feature_store.views import get_view

    gen = ViewStore(data / "store", get_view("mel")).generation(1)
    index = gen / "index.parquet"
    df = integrity.read_parquet(index)
    index.chmod(0o644)
    integrity.write_parquet(df.with_columns(pl.lit("blues").alias("genre"), pl.lit(0, pl.Int64).alias("label")),
                            index, compression="lz4", use_dictionary=False)
    integrity.read_parquet(index)  # its own page checksums are valid
    code, out, err = gtzan(["features", "verify", "--view", "mel"], data)
    assert code == 1 and "Traceback" not in out + err
    lines = [ln for ln in (out + err).splitlines() if "index.parquet" in ln]
    assert len(lines) == 1 and "manifest.json" in lines[0], out + err
    refused(*gtzan(["train", "--model", "baseline", "--clip-seconds", "1"], data),
            r"index\.parquet (is \d+ bytes, not the|does not match its sha256)")


def test_labels_that_disagree_with_the_genres_never_reach_a_fit(data):
    """Even past the manifest (rewritten to agree), a fit never sees labels that are not the genres'."""
    from feature_store.engine.store import ViewStore
    from feature_store.manifest import write_manifest
    from feature_store.views import get_view

    gen = ViewStore(data / "store", get_view("mel")).generation(1)
    index = gen / "index.parquet"
    df = integrity.read_parquet(index)
    index.chmod(0o644)
    integrity.write_parquet(df.with_columns(pl.lit(0, pl.Int64).alias("label")), index, compression="lz4",
                            use_dictionary=False)
    write_manifest(gen)
    refused(*gtzan(["train", "--model", "baseline", "--clip-seconds", "1"], data),
            r"labels clip \S+ \((?!blues)\w+\) as 0: the store is damaged")


# ---------------------------------------------------------------------------------------
# 5. files that claim more memory than any the project writes, in a child process
# ---------------------------------------------------------------------------------------
def test_a_476_mb_metrics_json_is_refused_unread(data, tmp_path):
    metrics = run_of(data, "cnn") / "metrics.json"
    metrics.chmod(0o644)
    with open(metrics, "r+b") as fh:  # a sparse file: its size is what the reader must not trust
        fh.truncate(BIG_JSON_BYTES)
    for args in (["predict", song(data), "--model", "cnn"], ["report"]):
        proc, out = gtzan_child(args, data, tmp_path)
        assert out["exit"] == 1, proc.stderr[-3000:]
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("gtzan: error: ")]
        assert len(errors) == 1 and f"metrics.json is {BIG_JSON_BYTES} bytes, more than the" in errors[0], proc.stderr


def _zip_bomb(path: Path, *, gib: float) -> None:
    """A ``probe.npz`` whose ``w0`` member inflates to ``gib`` GiB of zeros (written in blocks)."""
    n = int(gib * (1 << 30)) // 4
    header = __import__("io").BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (n,)})
    block = bytes(16 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("w0.npy", "w", force_zip64=True) as fh:
            fh.write(header.getvalue())
            left = n * 4
            while left:
                fh.write(block[: min(left, len(block))])
                left -= min(left, len(block))


def test_a_zip_bomb_probe_npz_is_refused_from_its_directory(data, tmp_path):
    run = run_of(data, "timbre_logreg")
    bomb = tmp_path / "bomb.npz"
    _zip_bomb(bomb, gib=1.0)
    assert bomb.stat().st_size < 8 << 20
    (run / "probe.npz").chmod(0o644)
    shutil.copyfile(bomb, run / "probe.npz")
    proc, out = gtzan_child(["predict", song(data), "--run", run], data, tmp_path)  # the record's sha256
    assert out["exit"] == 1 and "probe.npz is" in proc.stderr and "train it again" in proc.stderr, proc.stderr
    # a user who also rewrites the record's list and checksum reaches the reader, which bounds it
    from feature_store.manifest import list_files

    rewrite_json(run / "metrics.json", lambda d: d.update(files=list_files(run, skip=["metrics.json"])), checksum=True)
    proc, out = gtzan_child(["predict", song(data), "--run", run], data, tmp_path)
    assert out["exit"] == 1, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("gtzan: error: ")]
    assert len(errors) == 1 and "probe.npz claims 1 arrays of" in errors[0] and "more than the" in errors[0], errors


def _crafted_h5(gen: Path, frames: int) -> None:
    """Replace ``mel.h5`` by one whose ``mel`` claims ``(rows, 128, frames)``: the same attributes
    (the index's digest included) and clip ids, chunks of one clip never written (a small file)."""
    from feature_store import h5 as h5lib

    h5py = h5lib.h5py()
    path = gen / "mel.h5"
    with h5py.File(path, "r") as old:
        attrs = dict(old.attrs)
        ids = old["clip_id"][:]
        rows, mels = old["mel"].shape[:2]
    path.unlink()
    with h5py.File(path, "w", libver="latest") as h5:
        h5.attrs.update(attrs)
        h5.create_dataset("clip_id", data=ids)
        h5.create_dataset("mel", shape=(rows, mels, frames), dtype="float32", chunks=(1, mels, frames),
                          **h5lib.compression())


@pytest.mark.parametrize("frames", [100_000, 2_000_000])
def test_a_mel_h5_claiming_a_huge_shape_is_refused_before_any_read(data, tmp_path, frames):
    from feature_store.engine.store import ViewStore
    from feature_store.views import get_view

    gen = ViewStore(data / "store", get_view("mel")).generation(1)
    _crafted_h5(gen, frames)
    assert (gen / "mel.h5").stat().st_size < 1 << 20
    proc, out = gtzan_child(["train", "--model", "cnn", "--clip-seconds", "1", "--epochs", "1", "--no-progress"],
                            data, tmp_path)
    assert out["exit"] == 1, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("gtzan: error: ")]
    assert len(errors) == 1 and re.search(rf"mel\.h5: mel claims shape \(\d+, 128, {frames}\)", errors[0]), errors
    code, out_, err = gtzan(["features", "verify", "--view", "mel"], data)
    assert code == 1 and "mel.h5" in out_ + err and "Traceback" not in out_ + err


def test_a_generation_without_a_manifest_is_refused_and_repair_writes_one(data):
    """A store written before manifests existed: refused with the remedy, which works."""
    from feature_store.engine.store import ViewStore
    from feature_store.views import get_view

    store = ViewStore(data / "store", get_view("mel"))
    gen = store.generation(1)
    (gen / "manifest.json").unlink()
    with pytest.raises(StoreError, match=r"has no manifest\.json \(written by an older version.*verify --repair"):
        store.clips(clip_seconds=1).collect()
    code, out, err = gtzan(["features", "verify", "--view", "mel"], data)
    assert code == 1 and "has no manifest.json" in out + err
    code, out, err = gtzan(["features", "verify", data / "demo", "--view", "mel", "--repair"], data)
    assert code == 0, out + err
    assert store.generation(1) != gen and (store.generation(1) / "manifest.json").is_file()
    assert store.verify().ok and store.clips(clip_seconds=1).collect().height > 0
