"""The demo store's features, bit for bit, against digests recorded before the engine redesign
(issue 18): a refactoring of the store, its views or its datasets must not change one stored
value, nor the parameter hashes that name the store folders.

To re-record after a deliberate change of the features, run this module with
``GTZAN_RECORD_DIGESTS=1`` and say in the commit why the features changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import polars as pl
import pytest

from cli_helpers import env_for, ok

FIXTURE = Path(__file__).parents[1] / "fixtures" / "demo_store_digests.json"
#: (view, mode, clip lengths) built from a demo corpus of 2 songs of 6 s per genre.
BUILDS = (("mel", "first", "1,5"), ("timbre", "first", "1,5"), ("mel", "segments", "1"))


def store_digests(store: Path) -> dict[str, str]:
    """``<store folder>/<clip folder>`` -> sha256 over the index rows (ids, label, start and the
    xxh3 of every stored array row), sorted by clip id."""
    out = {}
    for index in sorted(store.glob("features/*/clip-*/current/index.parquet")):
        df = pl.read_parquet(index)
        cols = ["clip_id", "label", "start_frame"] + sorted(c for c in df.columns if c.startswith("xxh3_"))
        rows = df.select(cols).sort("clip_id").rows()
        key = f"{index.parents[2].name}/{index.parents[1].name}"
        out[key] = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    return out


def test_demo_store_features_are_bit_identical_to_the_recorded_ones(tmp_path):
    env = env_for(tmp_path / "data")
    ok(["demo", "--songs-per-genre", "2", "--seconds", "6"], env)
    ok(["ingest", "--no-progress"], env)
    for view, mode, clips in BUILDS:
        ok(["features", "build", "--view", view, "--mode", mode, "--clip-seconds", clips, "--workers", "1",
            "--no-progress"], env)
    got = store_digests(tmp_path / "data" / "store")
    if os.environ.get("GTZAN_RECORD_DIGESTS") == "1":
        FIXTURE.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"recorded {FIXTURE}")
    assert len(got) == 5
    assert got == json.loads(FIXTURE.read_text())
