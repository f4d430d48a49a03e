"""Worker processes that never outlive the process that started them.

A build, an ingest or an embedding run starts worker processes. If the parent is killed
(SIGKILL of the CLI, of a Dagster step, an out-of-memory kill), nothing runs its clean-up,
and workers would go on computing for a store that no longer waits for them. Each worker
asks the kernel to kill it when its parent dies (Linux ``PR_SET_PDEATHSIG``), as the pool
initializer's first step.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

from feature_store.bounds import max_workers

#: ``prctl`` option: the signal a process gets when its parent dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1


def pool_size(workers: int | None, tasks: int) -> int:
    """Worker processes for ``tasks`` tasks: ``workers`` (default: the CPU count), at least one,
    never more than the tasks nor than :func:`feature_store.bounds.max_workers`."""
    return max(1, min(workers or os.cpu_count() or 1, tasks, max_workers()))


def die_with_parent() -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies; True where that works.

    Call it in the child, as early as possible. If the parent died before the call (while
    the child was still starting), the child exits at once.
    """
    import multiprocessing

    started_by = multiprocessing.parent_process()  # the process that spawned this one, if any
    parent = started_by.pid if started_by is not None and started_by.pid else os.getppid()
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent:  # the parent is already gone
                os._exit(1)
            return True
    return False


def refuse_in_worker_bootstrap(what: str) -> None:
    """Raise :class:`~feature_store.errors.StoreError` in a worker still importing the main module.

    Workers are started with ``spawn``, which imports the parent's main module in each of
    them. A script that builds at module level, with no ``if __name__ == "__main__":``, would
    build again in every worker, and that build would wait for the lock its own parent holds
    while the parent waits for the worker: a silent hang until the lock times out. Python
    refuses to start processes there (``multiprocessing.spawn._check_not_importing_main``);
    a build refuses before it takes a lock, the same way and with the same test.
    """
    import multiprocessing as mp

    from feature_store.errors import StoreError

    if getattr(mp.current_process(), "_inheriting", False):
        raise StoreError(f"{what} was called in a worker process while it imported the main module: put the "
                         f"script's code under `if __name__ == \"__main__\":` (workers import the main module)")


@contextlib.contextmanager
def worker_pool(n_workers: int, *, initializer: Callable[[], Any] = die_with_parent,
                what: str) -> Iterator[Any]:
    """A ``spawn`` process pool of ``n_workers`` (at most :func:`feature_store.bounds.max_workers`) whose workers
    die with this process.

    A worker that dies under it (killed, out of memory, or failing as it starts) is a
    one-line :class:`~feature_store.errors.WorkerDiedError` naming ``what`` ("build",
    "ingest"), instead of ``BrokenProcessPool``; the pool's other workers stop with it.
    ``initializer`` must call :func:`die_with_parent` first.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from feature_store.errors import WorkerDiedError

    try:
        with ProcessPoolExecutor(max(1, min(n_workers, max_workers())), mp_context=mp.get_context("spawn"), initializer=initializer) as pool:
            yield pool
    except BrokenProcessPool as exc:
        raise WorkerDiedError(f"a worker process of the {what} died before it finished (killed, out of memory, or "
                              f"it failed as it started: its own error is above); nothing was published, run the "
                              f"{what} again") from exc


def default_signals() -> None:
    """SIGTERM and SIGINT back to their defaults: the ``preexec_fn`` of a server started from a
    background process, which may have inherited them ignored (it could not then be stopped by
    its process group)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a server a test or a benchmark starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
