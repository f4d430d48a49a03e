"""Where the project's data lives: environment variables with repo-local defaults.

Dagster-free, so that the ``gtzan`` command line can import it without starting Dagster.
The Dagster resources and the CLI both read their locations from here.

=====================  ===============================  ==================================
variable               default                          meaning
=====================  ===============================  ==================================
``GTZAN_DIR``          (unset: the synthetic demo)      GTZAN copy to ingest
``GTZAN_DATA_DIR``     ``data``                         parent of the folders below
``GTZAN_STORE_DIR``    ``$GTZAN_DATA_DIR/store``        feature store root
``GTZAN_MODEL_DIR``    ``$GTZAN_DATA_DIR/models``       model store root
``GTZAN_REPORT_DIR``   ``$GTZAN_DATA_DIR/reports``      evaluation reports
``GTZAN_MODE``         ``first``                        sampling mode: first | segments
``GTZAN_LAYOUT``       ``auto``                         auto | kaggle | original
``GTZAN_WORKERS``      ``0`` (the CPU count)            feature worker processes
``GTZAN_EXECUTOR``     ``multiprocess``                 Dagster executor: multiprocess | in_process | celery | k8s
=====================  ===============================  ==================================

Relative paths are relative to the working directory. Every function reads the
environment when it is called, not at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Every environment variable the project reads, with its meaning.
ENV_VARS: dict[str, str] = {
    "GTZAN_DIR": "GTZAN copy to ingest (unset: the synthetic demo corpus under $GTZAN_DATA_DIR/demo)",
    "GTZAN_DATA_DIR": "parent of the demo, store, models and reports folders (default: data)",
    "GTZAN_STORE_DIR": "feature store root (default: $GTZAN_DATA_DIR/store)",
    "GTZAN_MODEL_DIR": "model store root (default: $GTZAN_DATA_DIR/models)",
    "GTZAN_REPORT_DIR": "evaluation reports (default: $GTZAN_DATA_DIR/reports)",
    "GTZAN_MODE": "sampling mode of the features: first | segments (default: first)",
    "GTZAN_LAYOUT": "layout of $GTZAN_DIR: auto | kaggle | original (default: auto, detected)",
    "GTZAN_WORKERS": "worker processes of the feature build (default: 0, the CPU count)",
    "GTZAN_EXECUTOR": "Dagster executor of the code location: multiprocess | in_process | celery | k8s "
    "(default: multiprocess)",
}

#: Values that ``GTZAN_LAYOUT`` accepts; ``auto`` detects the layout from the folder.
LAYOUTS: tuple[str, ...] = ("auto", "kaggle", "original")
#: Values that ``GTZAN_EXECUTOR`` accepts (``celery`` needs dagster-celery, ``k8s`` dagster-k8s).
EXECUTORS: tuple[str, ...] = ("multiprocess", "in_process", "celery", "k8s")


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def data_dir() -> Path:
    """``$GTZAN_DATA_DIR``, default ``data``."""
    return Path(_env("GTZAN_DATA_DIR") or "data").expanduser()


def audio_dir() -> Path | None:
    """``$GTZAN_DIR``, or ``None`` when unset (the demo corpus is used then)."""
    value = _env("GTZAN_DIR")
    return Path(value).expanduser() if value else None


def demo_dir() -> Path:
    """Where the synthetic demo corpus is written: ``$GTZAN_DATA_DIR/demo``."""
    return data_dir() / "demo"


def store_dir() -> Path:
    """Feature store root: ``$GTZAN_STORE_DIR``, default ``$GTZAN_DATA_DIR/store``."""
    value = _env("GTZAN_STORE_DIR")
    return Path(value).expanduser() if value else data_dir() / "store"


def model_dir() -> Path:
    """Model store root: ``$GTZAN_MODEL_DIR``, default ``$GTZAN_DATA_DIR/models``."""
    value = _env("GTZAN_MODEL_DIR")
    return Path(value).expanduser() if value else data_dir() / "models"


def report_dir() -> Path:
    """Report folder: ``$GTZAN_REPORT_DIR``, default ``$GTZAN_DATA_DIR/reports``."""
    value = _env("GTZAN_REPORT_DIR")
    return Path(value).expanduser() if value else data_dir() / "reports"


def mode() -> str:
    """Sampling mode of the features: ``$GTZAN_MODE``, default ``first``."""
    return _env("GTZAN_MODE") or "first"


def layout() -> str:
    """Layout of ``$GTZAN_DIR``: ``$GTZAN_LAYOUT``, one of :data:`LAYOUTS`, default ``auto``.

    Raises
    ------
    ParameterError
        If the variable holds anything else.
    """
    return _choice("GTZAN_LAYOUT", LAYOUTS, "auto")


def workers() -> int:
    """Worker processes of the feature build: ``$GTZAN_WORKERS``, default 0 (the CPU count).

    Raises
    ------
    ParameterError
        If the variable is not a non-negative integer.
    """
    from feature_store.errors import ParameterError

    value = _env("GTZAN_WORKERS") or "0"
    if not value.isdigit():
        raise ParameterError(f"GTZAN_WORKERS must be a non-negative integer, got {value!r}")
    return int(value)


def executor() -> str:
    """Dagster executor of the code location: ``$GTZAN_EXECUTOR``, one of :data:`EXECUTORS`.

    Raises
    ------
    ParameterError
        If the variable holds anything else.
    """
    return _choice("GTZAN_EXECUTOR", EXECUTORS, "multiprocess")


def _choice(name: str, choices: tuple[str, ...], default: str) -> str:
    """``$name`` if it is one of ``choices`` (``default`` when unset), else ParameterError."""
    from feature_store.errors import ParameterError

    value = _env(name) or default
    if value not in choices:
        raise ParameterError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value
