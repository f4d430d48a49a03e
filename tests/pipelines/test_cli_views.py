"""Every view through the same ``gtzan features`` commands (timbre here), and ``verify --repair``."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from cli_helpers import env_for, fails, ok

from feature_store.engine.store import ViewStore
from feature_store.views import get_view
from feature_store.views.timbre import COLUMNS


@pytest.fixture(scope="module")
def timbre_sandbox(tmp_path_factory: pytest.TempPathFactory) -> dict:
    data = tmp_path_factory.mktemp("cli-views") / "data"
    env = env_for(data)
    ok(["demo", "--songs-per-genre", "2", "--seconds", "6"], env)
    ok(["ingest"], env)
    steps = {
        "build": ok(["features", "build", "--view", "timbre", "--clip-seconds", "1,5"], env),
        "mel": ok(["features", "build", "--clip-seconds", "5"], env),
        "train": ok(["train", "--model", "timbre_logreg", "--clip-seconds", "5"], env),
    }
    return {"data": data, "env": env, "steps": steps}


def test_build_describe_and_query_a_view_with_no_code_of_its_own(timbre_sandbox: dict) -> None:
    env, data = timbre_sandbox["env"], timbre_sandbox["data"]
    out = timbre_sandbox["steps"]["build"].stdout
    assert re.search(r"^timbre \S+/features/timbre-\w+ \(mode first\): 20 songs computed, 0 cached, 0 failed", out,
                     re.M), out
    assert re.search(r"^\s+5 s  built\s+20 clips of 20 songs  \S+/clip-05s/current/index.parquet$", out, re.M), out
    described = ok(["features", "describe", "--view", "timbre"], env).stdout
    assert "view        timbre: Classic timbral statistics" in described and "n_mfcc=20" in described
    files = re.findall(r"^\s+(index|timbre|timbre\.parquet)\s+(\S+)$", described, re.M)
    assert sorted({k for k, _ in files}) == ["index", "timbre", "timbre.parquet"]
    assert all(Path(p).is_file() for _, p in files)
    csv = ok(["features", "query", "--view", "timbre", "--clip-seconds", "5", "--genre", "jazz", "--table", "timbre",
              "--format", "csv"], env).stdout
    df = pl.read_csv(io.StringIO(csv))
    ref = ViewStore(data / "store", get_view("timbre")).tensors(clip_seconds=5, genre="jazz")
    assert df["clip_id"].to_list() == ref.index["clip_id"].to_list()
    np.testing.assert_allclose(df.select(COLUMNS).to_numpy(), ref.x, rtol=1e-6)
    fails(["features", "query", "--view", "timbre", "--clip-seconds", "5", "--table", "summary"], env, 2,
          r"the timbre view has no table 'summary'; its tables are \['timbre'\]")
    fails(["features", "describe", "--view", "timbre", "--mode", "segments"], env, 1,
          r"no timbre store .*`gtzan features build --view timbre --mode segments`.*\(--mode first; 1, 5 s\)")


def test_the_timbre_baseline_trains_from_the_command_line(timbre_sandbox: dict) -> None:
    out = timbre_sandbox["steps"]["train"].stdout
    m = re.search(r"^timbre_logreg 5 s seed 0: song accuracy \d+ %, clip accuracy \d+ % on \d+ held-out songs "
                  r"\(\d+ training clips, \d+ ms per clip\)  (\S+)$", out, re.M)
    assert m, out
    assert json.loads((Path(m[1]) / "metrics.json").read_text())["view"] == "timbre"


def test_verify_reports_damage_and_repairs_it(timbre_sandbox: dict, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(timbre_sandbox["data"], data, symlinks=True)
    env = env_for(data)
    sound = ok(["features", "verify"], env).stdout
    assert re.search(r"^mel: 1 clip length, 20 rows checked: sound$", sound, re.M), sound
    assert re.search(r"^timbre: 2 clip lengths, 40 rows checked: sound$", sound, re.M), sound
    before = ViewStore(data / "store", get_view("timbre")).tensors(clip_seconds=5)
    index = ViewStore(data / "store", get_view("timbre")).generation(5) / "index.parquet"
    raw = index.read_bytes()
    index.unlink()
    index.write_bytes(raw[: len(raw) // 2])  # a truncated copy, as a full disk leaves
    r = fails(["features", "verify", "--view", "timbre"], env, 1, r"1 view damaged; `gtzan features verify --repair`")
    assert re.search(r"^timbre: 2 clip lengths, \d+ rows checked: 1 problem$", r.stdout, re.M), r.stdout
    assert "index.parquet" in r.stdout
    fixed = ok(["features", "verify", "--view", "timbre", "--repair"], env).stdout
    assert "repaired: songs computed again: none; now sound" in fixed, fixed
    after = ViewStore(data / "store", get_view("timbre")).tensors(clip_seconds=5)
    np.testing.assert_array_equal(after.x, before.x)
    assert after.index.equals(before.index)
