"""Importing TensorFlow without its start-up lines, and without its false retracing warnings.

Every function of the project that needs TensorFlow or Keras calls :func:`import_tensorflow`
first, so that the first import in a process (a ``gtzan`` command, a Dagster step, a run
worker, a test) is the quiet one:

* **Start-up lines.** While it loads, TensorFlow 2.21 writes from C++ straight to file
  descriptor 2 ("All log messages before absl::InitializeLog() is called are written to
  STDERR", "oneDNN custom operations are on..."), before ``TF_CPP_MIN_LOG_LEVEL`` applies
  (even 3 does not hide them). In a Dagster step they land in the step's captured stderr, in
  the UI. The import runs with descriptor 2 pointed at ``/dev/null``; an error while
  importing still raises, with its message.
* **Retracing warnings.** TensorFlow counts the traces of a ``tf.function`` per Python
  function, across every function object made from it, and warns "N out of the last M calls
  to <function ...> triggered tf.function retracing" after five. Keras makes a train, test and
  predict function per model from the same Python functions, so a process that trains several
  models (``gtzan run`` trains every cell in one process) sees each new model's first trace
  as a retrace, although every model is traced once: the batches have an unknown batch size
  (:meth:`training.feeding.Feeder.dataset`), so a short last batch does not retrace, and the
  musicnn network has a fixed input signature. The message is dropped from the
  ``tensorflow`` logger; tests/training check that each model is traced once.

:func:`keep_tensorflow_logs` (``GTZAN_DEBUG``) leaves TensorFlow's output as it is. This module
imports nothing heavy itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from types import ModuleType

#: The text of TensorFlow's frequent-retracing warning (``polymorphic_function.py``).
RETRACING = "triggered tf.function retracing"

_keep = False


class DropRetracingWarnings(logging.Filter):
    """Drops TensorFlow's frequent-retracing warning (see the module docstring), nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return RETRACING not in record.getMessage()


def keep_tensorflow_logs() -> None:
    """Leave TensorFlow's output as TensorFlow prints it (``GTZAN_DEBUG``), for this process."""
    global _keep
    _keep = True
    logger = logging.getLogger("tensorflow")
    for f in [f for f in logger.filters if isinstance(f, DropRetracingWarnings)]:
        logger.removeFilter(f)


@contextlib.contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    """File descriptor 2 writes to ``/dev/null`` while the block runs (as it is, if it cannot)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 to redirect
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow() -> ModuleType:
    """TensorFlow (with Keras imported too), imported quietly on the first call of a process.

    ``TF_CPP_MIN_LOG_LEVEL`` defaults to 2 (errors only) for what TensorFlow logs later, and
    the retracing warning is filtered (:class:`DropRetracingWarnings`), unless
    :func:`keep_tensorflow_logs` was called.
    """
    if not _keep:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules:
        with contextlib.nullcontext() if _keep else _stderr_to_devnull():
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
    if not _keep:
        logger = logging.getLogger("tensorflow")
        if not any(isinstance(f, DropRetracingWarnings) for f in logger.filters):
            logger.addFilter(DropRetracingWarnings())
    return sys.modules["tensorflow"]
