"""Nothing in the project loads a pickle, and Keras models load only with ``safe_mode=True``.

A source scan (by syntax tree, so comments and strings never count) of every Python file of
the repository: product packages, pipelines, benchmarks and tests. It refuses

* imports of ``pickle``, ``cPickle``, ``_pickle``, ``dill``, ``cloudpickle``, ``joblib``,
  ``shelve`` and ``marshal``, and ``torch.load``;
* ``np.load``/``numpy.load`` without an explicit ``allow_pickle=False``, and any
  ``allow_pickle=`` other than ``False``;
* ``read_pickle``/``to_pickle`` (pandas, polars plugins), ``yaml.load``/``unsafe_load``/
  ``full_load``;
* Keras ``load_model`` without ``safe_mode=True``, any ``safe_mode=False``, and
  ``enable_unsafe_deserialization``.

The one exception is ``benchmarks/study_baseline.py``: the study's own pipeline, pickles
included, which the benchmark measures our store against. The scan checks that it is still
the only file it lets through, and that it really does pickle (a stale exception fails).

Dagster could pickle too: its default IO manager pickles asset outputs. No asset returns a
value (they return ``MaterializeResult``) and none takes an upstream value as input, so no IO
manager is ever used; a run with an IO manager that refuses every call proves it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".venv", ".git", "data", "build", "dist", ".dagster_home", "__pycache__", "node_modules"}
ALLOWED = {"benchmarks/study_baseline.py"}
PICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def python_files() -> list[Path]:
    out = []
    for p in REPO.rglob("*.py"):
        rel = p.relative_to(REPO)
        if not SKIP_DIRS.intersection(rel.parts) and not rel.parts[0].endswith(".egg-info"):
            out.append(p)
    return sorted(out)


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for an attribute chain or name, else ''."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def scan_source(source: str) -> list[tuple[int, str]]:
    """Every pickle or unsafe-model load in ``source``, as (line, what)."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    keras_names: set[str] = set()  # local names bound to a Keras/TensorFlow load_model
    numpy_aliases = {"numpy"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PICKLERS:
                    found.append((node.lineno, f"import {a.name}"))
                if a.name == "numpy":
                    numpy_aliases.add(a.asname or "numpy")
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if root in PICKLERS:
                found.append((node.lineno, f"from {node.module} import ..."))
            if root in ("keras", "tensorflow", "tf_keras"):
                for a in node.names:
                    if a.name == "load_model":
                        keras_names.add(a.asname or a.name)
                    if a.name == "enable_unsafe_deserialization":
                        found.append((node.lineno, "enable_unsafe_deserialization"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "enable_unsafe_deserialization":
            found.append((node.lineno, "enable_unsafe_deserialization"))
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, last = name.rpartition(".")
        allow = _kw(node, "allow_pickle")
        if allow is not None and not _is_const(allow, False):
            found.append((node.lineno, f"{name or 'call'}(allow_pickle=...) not False"))
        if last == "load" and head in numpy_aliases | {"np"} and not _is_const(allow, False):
            found.append((node.lineno, f"{name}() without allow_pickle=False"))
        if name in ("torch.load", "joblib.load", "dill.load", "dill.loads", "pickle.load", "pickle.loads"):
            found.append((node.lineno, f"{name}()"))
        if last in ("read_pickle", "to_pickle"):
            found.append((node.lineno, f"{name}()"))
        if name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
            found.append((node.lineno, f"{name}()"))
        safe = _kw(node, "safe_mode")
        if safe is not None and not _is_const(safe, True):
            found.append((node.lineno, f"{name}(safe_mode=...) not True"))
        keras_call = (last == "load_model" and head.split(".")[0] in ("keras", "tf", "tensorflow", "tf_keras")) or (
            not head and last in keras_names
        )
        if keras_call and not _is_const(safe, True):
            found.append((node.lineno, f"{name}() without safe_mode=True"))
    return sorted(set(found))


def test_the_scanner_catches_every_pattern():
    bad = """
import pickle
import dill as d
from joblib import load
import numpy as npx
from keras.models import load_model as lm
import keras
npx.load("a.npy")
npx.load("a.npy", allow_pickle=True)
np.save("a.npy", x, allow_pickle=True)
torch.load("m.pt")
df = pd.read_pickle("x")
yaml.load(open("c.yaml"))
keras.models.load_model("m.keras")
keras.saving.load_model("m.keras", safe_mode=False)
lm("m.keras")
keras.config.enable_unsafe_deserialization()
"""
    whats = [w for _, w in scan_source(bad)]
    for needle in ("import pickle", "import dill", "from joblib", "npx.load() without", "allow_pickle=...",
                   "torch.load()", "pd.read_pickle()", "yaml.load()", "keras.models.load_model() without",
                   "safe_mode=...) not True", "lm() without", "enable_unsafe_deserialization"):
        assert any(needle in w for w in whats), (needle, whats)
    good = """
import numpy as np
from training.train import load_model
np.load("a.npy", allow_pickle=False)
np.save("a.npy", x, allow_pickle=False)
keras.models.load_model("m.keras", safe_mode=True, custom_objects={})
load_model("m.keras")  # the project's wrapper
text = "pickle.load(fh)"  # a string is not a call
"""
    assert scan_source(good) == []


def test_no_file_loads_a_pickle_or_an_unsafe_model():
    files = python_files()
    assert len(files) > 40 and any(f.name == "store.py" for f in files)
    offenders = {}
    for f in files:
        rel = f.relative_to(REPO).as_posix()
        hits = scan_source(f.read_text(encoding="utf-8"))
        if hits and rel not in ALLOWED:
            offenders[rel] = hits
    assert offenders == {}, "pickle or unsafe model loading found:\n" + "\n".join(
        f"  {rel}:{line}: {what}" for rel, hits in offenders.items() for line, what in hits
    )


def test_the_one_exception_is_the_study_baseline_and_it_pickles():
    for rel in ALLOWED:
        hits = scan_source((REPO / rel).read_text(encoding="utf-8"))
        assert any("pickle" in w for _, w in hits), f"{rel} no longer pickles: drop it from ALLOWED"


def test_keras_models_refuse_code_on_load(tmp_path):
    """A ``.keras`` file with a Python lambda inside is refused by the project's loader."""
    import keras

    from training.train import load_model

    inp = keras.Input((4,))
    net = keras.Model(inp, keras.layers.Lambda(lambda x: x * 2.0)(inp))
    path = tmp_path / "evil.keras"
    net.save(path)
    with pytest.raises(ValueError, match="safe_mode"):
        load_model(path)


def test_no_asset_output_goes_through_an_io_manager(tmp_path):
    """IO managers (Dagster's default one pickles) are never called by the assets."""
    import dagster as dg

    from assets import ALL_ASSETS, audio_catalog, evaluation_report, mel_features, song_splits
    from assets.resources import AudioSource, FeatureStoreResource, ModelStoreResource
    from feature_store.demo import write_demo_corpus

    for a in ALL_ASSETS:  # upstream assets are ``deps`` (Nothing inputs), never loaded values
        loaded = [i.name for i in a.op.input_defs if not i.dagster_type.is_nothing]
        assert loaded == [], f"{a.key} takes {loaded} from upstream through an IO manager"

    class Refuse(dg.IOManager):
        def handle_output(self, context, obj):
            if obj is not None:
                raise AssertionError(f"an IO manager was asked to store {type(obj).__name__}")

        def load_input(self, context):
            raise AssertionError("an IO manager was asked to load an input")

    audio = write_demo_corpus(tmp_path / "audio", songs_per_genre=1, duration=2.0).parent
    resources = {
        "audio": AudioSource(path=str(audio)),
        "features": FeatureStoreResource(root=str(tmp_path / "store"), workers=1),
        "models": ModelStoreResource(root=str(tmp_path / "models"), report_dir=str(tmp_path / "reports")),
        "io_manager": Refuse(),
    }
    assert dg.materialize([audio_catalog, song_splits], resources=resources).success
    assert dg.materialize([mel_features], resources=resources, partition_key="1").success
    assert dg.materialize([evaluation_report], resources=resources).success
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pickle"))
