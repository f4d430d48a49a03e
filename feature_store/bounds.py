"""Upper bounds of the numeric parameters that the library, the settings, the command line and
the Dagster config share: a value past one is refused in one line before any work.

Import-light (no NumPy), so that the command line's options can name the bounds in ``--help``.
"""

from __future__ import annotations

import os

#: The largest seed: NumPy's legacy ``RandomState`` and TensorFlow take 32-bit seeds.
MAX_SEED = 2**31 - 1
#: Worker processes allowed per CPU (:func:`max_workers`). Workers compute; past a few per core
#: they only add memory (each imports NumPy, librosa...), so a larger request is refused by the
#: command line and the settings, and capped by :func:`feature_store.procs.worker_pool`.
MAX_WORKERS_PER_CPU = 4
#: The synthetic demo corpus: songs per genre (GTZAN has 100) and seconds per song (GTZAN: 30).
MAX_DEMO_SONGS_PER_GENRE = 1000
MAX_DEMO_SECONDS = 600.0
#: Training: the epoch cap and the batch size (of the command line, the settings and the
#: Dagster run config of ``genre_models``).
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 65_536
#: Rows that ``gtzan features query --limit`` may ask for.
MAX_QUERY_LIMIT = 100_000_000
#: Shards a view's songs are spread over (:mod:`feature_store.engine.shards`): one Dagster
#: partition each per clip length, and Dagster's UI slows down past a few thousand partitions.
MAX_SHARDS = 4096


def max_workers() -> int:
    """The most worker processes a pool starts: :data:`MAX_WORKERS_PER_CPU` times the CPU count."""
    return MAX_WORKERS_PER_CPU * (os.cpu_count() or 1)
