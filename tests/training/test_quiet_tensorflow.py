"""TensorFlow stays quiet: no start-up lines from its import, no false retracing warnings, and
no real retracing either (each model's functions are traced once, whatever the batch sizes).

The first two run in fresh interpreters, since TensorFlow is imported once per process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
#: What TensorFlow 2.21 writes on descriptor 2 while it loads (absl's and oneDNN's lines).
START_UP = ("absl::InitializeLog", "oneDNN custom operations")


def run_python(code: str, **env_vars: str) -> str:
    """stderr of ``python -c code`` in a fresh interpreter (run from the project folder)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), **env_vars}
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stderr


@pytest.fixture(scope="module")
def prints_start_up_lines() -> bool:
    """Whether a plain ``import tensorflow`` prints its start-up lines on this machine."""
    return any(s in run_python("import tensorflow") for s in START_UP)


#: Seven new models, each predicting once, as when one process trains several cells: TensorFlow
#: counts each model's first trace as a retrace of the same Python function, and warns.
SEVEN_MODELS = """
import numpy as np, keras
for _ in range(7):
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    net.predict(np.zeros((5, 4), np.float32), verbose=0)
"""
#: The first import of TensorFlow through the training code (set_determinism, then build_model).
TRAINING = (
    "from training.keras_fit import set_determinism\n"
    "from training.models import build_model\n"
    "set_determinism(0)\n"
    "net = build_model('cnn', n_mels=32, frames=44, n_classes=10)\n"
    "import sys; print('built', net.count_params(), file=sys.stderr)\n"
)


def test_the_first_import_through_the_project_prints_nothing_and_no_retracing_warning(tmp_path,
                                                                                        prints_start_up_lines):
    # a process that loads the code location (a run worker, a step process) and trains
    quiet = run_python("import pipelines.definitions\n" + TRAINING + SEVEN_MODELS, GTZAN_DATA_DIR=str(tmp_path))
    assert "built" in quiet  # what the process itself writes to stderr still shows
    assert not any(s in quiet for s in START_UP), quiet
    assert "retracing" not in quiet, quiet
    # the musicnn embeddings' entry point
    assert not any(s in run_python("from feature_store.embeddings.musicnn import configure_threads\n"
                                   "configure_threads(1)\n") for s in START_UP)
    if not prints_start_up_lines:
        pytest.skip("TensorFlow prints no start-up lines on this machine: the quiet import is not shown to matter")


def test_gtzan_debug_keeps_what_tensorflow_prints(tmp_path, prints_start_up_lines):
    """GTZAN_DEBUG=1: the command line (tf_log_level) and every process that loads the code location
    (run workers, step processes) leave TensorFlow's output as it is, the retracing warning too."""
    location = run_python("import pipelines.definitions\n" + TRAINING + SEVEN_MODELS, GTZAN_DEBUG="1",
                          GTZAN_DATA_DIR=str(tmp_path))
    assert "triggered tf.function retracing" in location  # what TensorFlow says of 7 models traced once each
    cli = run_python("from pipelines.cli.console import quiet_tensorflow\nquiet_tensorflow(True)\n" + TRAINING)
    if not prints_start_up_lines:
        pytest.skip("TensorFlow prints no start-up lines on this machine")
    assert all(s in location for s in START_UP), location
    assert all(s in cli for s in START_UP), cli


class _Clips:
    """A stand-in for a ClipSource: ``read(positions)``, labels ``y`` and a length."""

    def __init__(self, n: int, n_mels: int, frames: int) -> None:
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(n, n_mels, frames)).astype(np.float32)
        self.y = np.arange(n) % 10

    def __len__(self) -> int:
        return len(self.y)

    def read(self, pos: np.ndarray) -> np.ndarray:
        return self.x[pos]


def _tf_functions(fn) -> list:
    """The tf.functions a Keras train/test function closes over (how Keras 3 builds them)."""
    return [c.cell_contents for c in (fn.__closure__ or ())
            if hasattr(c.cell_contents, "experimental_get_tracing_count")]


def test_a_model_is_traced_once_whatever_the_batch_sizes():
    """The cause the retracing warning points at: 10 clips in batches of 4 are batches of 4, 4
    and 2. Training and validation run on the feeder's datasets, whose batch size is open; the
    held-out clips are scored by a function whose input signature leaves it open."""
    from training.feeding import Feeder
    from training.keras_fit import forward_function, input_shape, predict_source, set_determinism
    from training.models import build_model
    from training.normalizer import BandNormalizer

    set_determinism(0)
    src = _Clips(10, 32, 44)
    net = build_model("cnn", n_mels=32, frames=44, n_classes=10)
    net.compile(optimizer="adam", loss="categorical_crossentropy")
    norm = BandNormalizer.fit(src.x)
    feed = Feeder(src, np.arange(10), norm, "mels_frames_1", 10, 4, 0)  # type: ignore[arg-type]
    valid = Feeder(src, np.arange(7), norm, "mels_frames_1", 10, 4, 0)  # type: ignore[arg-type]
    net.fit(feed.dataset(input_shape(net)), validation_data=valid.dataset(input_shape(net)), epochs=2, verbose=0,
            shuffle=False)
    [train] = _tf_functions(net.train_function)
    [test] = _tf_functions(net.test_function)
    assert [train.experimental_get_tracing_count(), test.experimental_get_tracing_count()] == [1, 1]

    forward = forward_function(net)
    batches = [np.asarray(forward(x)) for x in feed.dataset(input_shape(net), with_labels=False)]
    assert [len(b) for b in batches] == [4, 4, 2] and forward.experimental_get_tracing_count() == 1
    # the same probabilities as Keras' own predict, which traced its function twice for them
    expected = net.predict(feed.dataset(input_shape(net), with_labels=False), verbose=0)
    assert net.predict_function.experimental_get_tracing_count() == 2  # the batches of 4, then the one of 2
    np.testing.assert_allclose(np.concatenate(batches), expected, rtol=1e-5, atol=1e-6)
    probs, ms = predict_source(net, src, normalizer=norm, layout="mels_frames_1", batch_size=4)  # type: ignore[arg-type]
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    assert ms > 0
