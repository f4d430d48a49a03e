"""What the ``gtzan`` commands print: progress bars, numbers, and a quiet TensorFlow."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any


def tqdm_callback(enabled: bool, desc: str, unit: str) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    """A ``progress(done, total)`` callback drawing a tqdm bar, and a function that closes it."""
    if not enabled:
        return None, lambda: None
    from tqdm.auto import tqdm

    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)
        bar.update(done - bar.n)

    def close() -> None:
        if state.get("bar") is not None:
            state["bar"].close()

    return update, close


def tf_log_level(debug: bool) -> None:
    """Quiet TensorFlow's C++ logging (before ``training`` sets its own default), unless ``debug``."""
    if not debug:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def quiet_tensorflow(debug: bool) -> None:
    """Import TensorFlow with its native start-up chatter on stderr silenced.

    TensorFlow logs from C++ straight to file descriptor 2 while it loads, before any
    Python setting applies. ``TF_CPP_MIN_LOG_LEVEL`` (default here: 3) quiets the rest;
    with ``debug`` (``GTZAN_DEBUG=1``) everything is left as TensorFlow prints it.
    """
    if debug:
        return
    tf_log_level(debug)
    if "tensorflow" in sys.modules:
        return
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def patches(n: int) -> str:
    return f"{n} musicnn patch{'' if n == 1 else 'es'}"


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f} %"
