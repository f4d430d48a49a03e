"""Peak resident memory of this process while one run lasts (every model family measures it so)."""

from __future__ import annotations

import os
import resource
import threading
from typing import Any


class RssSampler:
    """Peak resident memory of this process between ``start`` and ``stop``.

    A daemon thread samples ``/proc/self/statm`` every ``interval`` seconds. Unlike
    ``ru_maxrss``, which only grows over the life of the process, this measures one run even
    when several runs share a process. Off Linux it falls back to ``ru_maxrss``.

    Examples
    --------
    >>> with RssSampler() as rss:          # doctest: +SKIP
    ...     work()
    >>> rss.peak_mb                        # doctest: +SKIP
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self.start_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _sample(self) -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * self._page
        except (OSError, ValueError, IndexError):
            return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_bytes = max(self.peak_bytes, self._sample())

    def start(self) -> RssSampler:
        self.start_bytes = self.peak_bytes = self._sample()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> RssSampler:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._sample())
        return self

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20

    @property
    def start_mb(self) -> float:
        return self.start_bytes / 2**20

    def __enter__(self) -> RssSampler:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
