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
    """Quiet TensorFlow's C++ logging (before ``training`` sets its own default), unless ``debug``,
    which keeps everything TensorFlow prints (``GTZAN_DEBUG=1``)."""
    if debug:
        from feature_store.quiet_tf import keep_tensorflow_logs

        keep_tensorflow_logs()
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def quiet_tensorflow(debug: bool) -> None:
    """Import TensorFlow now, without its start-up lines (:mod:`feature_store.quiet_tf`).

    ``TF_CPP_MIN_LOG_LEVEL`` (default here: 3) quiets what it logs later; with ``debug``
    (``GTZAN_DEBUG=1``) everything is left as TensorFlow prints it, and nothing is imported yet.
    """
    tf_log_level(debug)
    if debug:
        return
    from feature_store.quiet_tf import import_tensorflow

    import_tensorflow()


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def patches(n: int) -> str:
    return f"{n} musicnn patch{'' if n == 1 else 'es'}"


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f} %"
