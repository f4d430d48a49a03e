"""Lock files of a store: ``<store>/.locks/<name>.lock``, with who holds them.

Builds take the cache lock, then one lock per clip length in increasing order, and the
registry lock last, so two builds never wait on each other in a cycle. A holder writes
``<name>.lock.holder`` (pid, host, since) beside the lock, so that a build that has to
wait can say whom it waits for, and one that gives up can say who held it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from feature_store.errors import StoreError, StoreLockedError
from feature_store.integrity import read_bounded

#: Largest lock holder file read (it holds a pid, a host name and a time).
HOLDER_MAX_BYTES = 4096
#: Seconds between a waiting build's attempts to report whom it waits for.
REPORT_AFTER_SECONDS = 2.0


def holder_text(path: Path) -> str:
    """``pid 123 on host since 2026-11-29T10:00:00+00:00`` from a holder file, or ''."""
    try:
        info = json.loads(read_bounded(path, limit=HOLDER_MAX_BYTES, what="lock holder file"))
        return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError, RecursionError, StoreError):
        return ""


@contextlib.contextmanager
def held(
    folder: Path,
    name: str,
    *,
    timeout: float,
    busy: str,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the lock ``folder/name.lock`` for the block.

    Parameters
    ----------
    folder : path
        The store's ``.locks`` folder (created).
    name : str
    timeout : float
        Seconds to wait; 0 fails at once.
    busy : str
        The start of the error message when the lock stays taken.
    on_wait : callable(str), optional
        Told once, in one line, whom this build is waiting for, when it has to wait.

    Raises
    ------
    StoreLockedError
        After ``timeout`` seconds, naming the holder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / f"{name}.lock"))
    info = folder / f"{name}.lock.holder"
    deadline = time.monotonic() + max(0.0, timeout)
    told = False
    while True:
        remaining = deadline - time.monotonic()
        step = remaining if (told or on_wait is None) else min(remaining, REPORT_AFTER_SECONDS)
        try:
            lock.acquire(timeout=max(0.0, step))
            break
        except Timeout as exc:
            who = holder_text(info)
            if time.monotonic() >= deadline:
                raise StoreLockedError(f"{busy}; it holds {folder / name}.lock{f' (held by {who})' if who else ''}. "
                                       "Try again when it ends, or raise the lock timeout") from exc
            if on_wait is not None and not told:
                on_wait(f"waiting for {folder / name}.lock, held by {who or 'another build'}")
                told = True
    try:
        with contextlib.suppress(OSError):
            stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            info.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": stamp}))
        yield
    finally:
        with contextlib.suppress(OSError):
            info.unlink()
        lock.release()
