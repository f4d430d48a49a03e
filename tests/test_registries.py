"""Adding a view is one module, and a model family one module: the proof.

A throwaway view (``proof``, with an option of its own, ``--smoothing``) and a throwaway
model family (``proof_centroid``, a nearest-centroid classifier on that view) are written to
a temporary folder and found the way a contributor's modules are (``tests/registry_ext.py``
adds the folders to the two discovered packages, in a fresh interpreter). With no other edit,
they reach the Dagster assets, checks, jobs and resource config, the ``gtzan features``
commands, ``gtzan train``, the report and ``gtzan predict``; and the suite's own tests, which
derive their expectations from the registries, still pass with them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

VIEW_MODULE = '''
"""A throwaway view: per clip, the mean peak and RMS of its frames (times ``smoothing``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from feature_store.engine.view import ArraySpec, FeatureView, Rows, Starts, option, window_rows
from feature_store.params import FeatureParams, digest


@dataclasses.dataclass(frozen=True)
class ProofParams:
    mode: str = "first"
    smoothing: int = dataclasses.field(default=1, metadata=option("Scale of the proof values."))

    def clip_params(self) -> FeatureParams:
        return FeatureParams(mode=self.mode)

    def hash(self) -> str:
        return digest({**dataclasses.asdict(self), "code": "1"})


class ProofView(FeatureView, name="proof"):
    """Peak and RMS levels of every clip.

    A throwaway view of tests/test_registries.py: the mean over the clip of each frame's peak
    and RMS, scaled by the smoothing option, stored as an HDF5 array and a Parquet table.
    """

    default_arrays: ClassVar[tuple[str, ...]] = ("level",)
    params_type: ClassVar[type] = ProofParams

    def array_specs(self, clip_seconds: int) -> list[ArraySpec]:
        return [ArraySpec("level", (2,), columns=("peak", "rms"))]

    def entry_shape(self) -> tuple[int, ...]:
        return (2, self.clip_params.song_frames)

    def prepare(self, y: np.ndarray, *, whole_file: bool = False) -> np.ndarray:
        hop = self.clip_params.hop_length
        n = 1 + len(y) // hop
        padded = np.zeros(n * hop, np.float32)
        padded[: len(y)] = y
        frames = padded.reshape(n, hop)
        return np.stack([np.abs(frames).max(axis=1), np.sqrt((frames ** 2).mean(axis=1))]).astype(np.float32)

    def clip_rows(self, entry: np.ndarray, wanted: Mapping[int, Starts]) -> dict[int, Rows]:
        scale = np.float32(self.params.smoothing)
        return {c: {"level": window_rows(entry, list(starts), self.clip_frames(c)).mean(axis=2) * scale}
                for c, starts in wanted.items()}
'''

FAMILY_MODULE = '''
"""A throwaway model family: a nearest-centroid classifier on the proof view's levels."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from training.families.base import Fit
from training.families.vector import Probe, VectorClassifier


@dataclasses.dataclass(frozen=True)
class NearestCentroid(VectorClassifier):
    """Standardised features, the nearest class mean (a linear score: ``x.mu - |mu|^2 / 2``)."""

    trainer = "centroid"

    def fit(self, data: Any, config: Any, *, progress: bool = False) -> Fit:
        train = data.tensors(parts=data.fit_parts, arrays=self.arrays)
        t0 = time.perf_counter()
        x = np.asarray(train.x, np.float64)
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
        z = (x - mean) / std
        n = int(train.y.max()) + 1 if len(train.y) else 1
        classes = max(n, 10)
        mu = np.zeros((classes, z.shape[1]))
        bias = np.full(classes, -1e9)
        for k in np.unique(train.y):
            mu[k] = z[train.y == k].mean(axis=0)
            bias[k] = -0.5 * float(mu[k] @ mu[k])
        probe = Probe(mean=mean, std=std, weights=[mu.T], biases=[bias], classifier="logreg",
                      arrays=tuple(self.arrays), view=self.view)
        return Fit(probe, train.index, None, {"iterations": [1.0]}, time.perf_counter() - t0, 1, 1)


DECLARATIONS = (NearestCentroid("proof_centroid", view="proof", arrays=("level",)),)
'''

DRIVER = '''
import json, sys
from pathlib import Path

import registry_ext  # noqa: F401  (the contributor's modules join the packages)
import dagster as dg
from click.testing import CliRunner

from assets.resources import FeatureStoreResource
from assets.views import asset_name, check_name
from feature_store.views import VIEWS
from pipelines import cli
from pipelines.definitions import defs
from training.families import get_family

out = {"views": list(VIEWS), "family_view": get_family("proof_centroid").view}
graph = defs.resolve_asset_graph()
out["assets"] = sorted(k.to_user_string() for k in graph.get_all_asset_keys())
out["checks"] = sorted(k.name for k in graph.asset_check_keys)
job = defs.resolve_job_def("features_job")
out["features_job"] = sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys)
models = graph.get(dg.AssetKey("genre_models"))
out["model_partitions"] = sorted({k.split("|")[1] for k in models.partitions_def.get_partition_keys()})
out["model_deps"] = sorted(k.to_user_string() for k in models.parent_keys)
out["resource_fields"] = sorted(FeatureStoreResource.model_fields)
out["resource_view"] = repr(FeatureStoreResource(root="r", smoothing=3).view_store("proof").view)
out["names"] = [asset_name("proof"), check_name("proof")]

env = {"GTZAN_DATA_DIR": sys.argv[1], "GTZAN_WORKERS": "1", "GTZAN_DIR": None, "GTZAN_STORE_DIR": None,
       "GTZAN_MODEL_DIR": None, "GTZAN_REPORT_DIR": None, "GTZAN_MODE": None}


def gtzan(*args):
    r = CliRunner().invoke(cli.main, [str(a) for a in args], env=env, prog_name="gtzan")
    return {"code": r.exit_code, "out": r.stdout, "err": r.stderr}


out["help"] = {c: gtzan("features", c, "--help")["out"] for c in ("build", "describe", "query")}
out["train_help"] = gtzan("train", "--help")["out"]
steps = [("demo", "--songs-per-genre", "2", "--seconds", "6"), ("ingest",),
         ("features", "build", "--view", "proof", "--clip-seconds", "5", "--smoothing", "2"),
         ("features", "describe", "--view", "proof", "--smoothing", "2"),
         ("features", "query", "--view", "proof", "--clip-seconds", "5", "--smoothing", "2", "--table", "level",
          "--format", "json"),
         ("features", "describe", "--view", "proof"),
         ("features", "build", "--view", "proof", "--clip-seconds", "5"),
         ("train", "--model", "proof_centroid", "--clip-seconds", "5"),
         ("report",),
         ("predict", Path(sys.argv[1]) / "demo" / "genres_original" / "jazz" / "jazz.00000.wav",
          "--model", "proof_centroid", "--clip-seconds", "5", "--json")]
out["steps"] = [gtzan(*s) for s in steps]
print("RESULT " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def extra(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("contributor")
    (root / "views").mkdir()
    (root / "families").mkdir()
    (root / "views" / "proofview.py").write_text(textwrap.dedent(VIEW_MODULE))
    (root / "families" / "proof_family.py").write_text(textwrap.dedent(FAMILY_MODULE))
    (root / "driver.py").write_text(textwrap.dedent(DRIVER))
    env = {**os.environ, "GTZAN_TEST_EXTRA_VIEWS": str(root / "views"),
           "GTZAN_TEST_EXTRA_FAMILIES": str(root / "families"),
           "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}
    return {"root": str(root), **{k: env[k] for k in ("GTZAN_TEST_EXTRA_VIEWS", "GTZAN_TEST_EXTRA_FAMILIES",
                                                       "PYTHONPATH")}}


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTZAN_")}
    return {**env, **{k: v for k, v in extra.items() if k != "root"}}


@pytest.mark.timeout(600)
def test_a_new_view_and_family_reach_everything_with_no_edit_elsewhere(extra: dict[str, str]) -> None:
    data = Path(extra["root"]) / "data"
    r = subprocess.run([sys.executable, str(Path(extra["root"]) / "driver.py"), str(data)], cwd=REPO,
                       env=_env(extra), capture_output=True, text=True, timeout=600)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert r.returncode == 0 and lines, r.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["views"][:3] == ["mel", "embeddings", "timbre"] and "proof" in out["views"]
    assert out["family_view"] == "proof"
    # Dagster: the asset, its blocking check, the job, the training partitions, the resource option
    assert out["names"] == ["proof_features", "proof_sane"]
    assert "proof_features" in out["assets"] and "proof_sane" in out["checks"]
    assert "proof_features" in out["features_job"]
    assert "proof_centroid" in out["model_partitions"] and "proof_features" in out["model_deps"]
    assert "smoothing" in out["resource_fields"] and "smoothing=3" in out["resource_view"]
    # the command line: --view proof and --smoothing in every features command, the model in train's help
    for text in out["help"].values():
        text = " ".join(text.split())  # click wraps the help
        assert "proof (peak and RMS levels of every clip)" in text and "--smoothing" in text
    assert "proof: proof_centroid" in " ".join(out["train_help"].split())
    steps = out["steps"]
    build, described, query, other, default, train, report, predict = steps[2:]
    for step in steps:
        assert step["code"] == (1 if step is other else 0), step
    assert "proof " in build["out"] and "20 songs computed" in build["out"]
    assert "view        proof: Peak and RMS levels of every clip" in described["out"]
    assert "smoothing=2" in described["out"]
    rows = json.loads(query["out"])
    assert len(rows) == 20 and {"peak", "rms"} <= set(rows[0])
    # the option picks the store: with the default smoothing there is none yet, and the error
    # names the store that exists with its flags
    assert "no proof store" in other["err"] and "--smoothing 2" in other["err"], other
    assert "20 songs computed" in default["out"]
    assert "proof_centroid 5 s seed 0: song accuracy" in train["out"]
    reports = list((data / "reports").glob("*.md"))
    assert reports and "proof_centroid" in reports[0].read_text()
    predicted = json.loads(predict["out"])
    assert "jazz.00000.wav" in json.dumps(predicted) and "proof_centroid" in json.dumps(predicted), predicted


REGISTRY_TESTS = [
    "tests/pipelines/test_definitions.py::test_groups_kinds_descriptions",
    "tests/pipelines/test_definitions.py::test_checks_block_only_on_torn_or_leaking_data",
    "tests/pipelines/test_definitions.py::test_checks_on_partitioned_assets_are_partitioned_like_them",
    "tests/training/test_families.py::test_every_model_is_declared_once_in_its_family",
    "tests/training/test_families.py::test_unknown_models_views_and_classifiers_name_the_valid_ones",
    "tests/assets/test_feature_assets.py::test_every_view_has_an_asset_and_a_blocking_check_from_one_factory",
    "tests/feature_store/test_engine.py::test_views_are_found_and_rebuilt_from_their_spec",
]


@pytest.mark.timeout(300)
def test_the_suites_registry_derived_tests_hold_with_them(extra: dict[str, str]) -> None:
    check = ("import registry_ext, json; from feature_store.views import VIEWS; from training.families import "
             "model_names; print(json.dumps([list(VIEWS), model_names()]))")
    seen = subprocess.run([sys.executable, "-c", check], cwd=REPO, env=_env(extra), capture_output=True, text=True)
    views, models = json.loads(seen.stdout.strip().splitlines()[-1])
    assert "proof" in views and "proof_centroid" in models, seen.stderr  # the tests below do see them
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "registry_ext", "-p", "no:cacheprovider",
                        *REGISTRY_TESTS], cwd=REPO, env=_env(extra), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:]
    assert f"{len(REGISTRY_TESTS)} passed" in r.stdout
