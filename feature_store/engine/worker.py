"""What a build's worker processes run: read, check and decode a song, then the view's features.

Kept apart from the rest of the engine so that a worker imports only NumPy, soundfile, the
view's module and what its features need (not polars or h5py): with spawned processes,
start-up is paid per worker and per build.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Any

from feature_store.audio import decode
from feature_store import integrity
from feature_store.engine import codec
from feature_store.engine.cache import SongCache
from feature_store.errors import AudioError, ParameterError
from feature_store.procs import die_with_parent

#: Reason recorded for a song whose file no longer has the content the catalog hashed.
CHANGED = "file changed since it was cataloged; re-run ingest"


@dataclasses.dataclass
class Job:
    """One content hash to compute: the songs that have it and their files.

    Attributes
    ----------
    song_ids, paths : list of str
        The songs with this content and their files (one, unless the corpus repeats a song).
    sha256 : str
    size : int
        The files' size in bytes, as cataloged: a worker reads no more than that.
    cache_folder : str
        The view's cache folder (a ``song``-scope entry is written there by the worker).
    wanted : dict, optional
        Clip length -> the clips' start frames (view grid) whose rows the worker also
        encodes (``song`` scope, many workers): see :mod:`feature_store.engine.codec`.
    """

    song_ids: list[str]
    paths: list[str]
    sha256: str
    size: int
    cache_folder: str
    wanted: dict[int, list[int]] | None = None


@dataclasses.dataclass
class JobResult:
    """What a worker did with one :class:`Job`.

    Attributes
    ----------
    ok : bool
    changed : list of str
        Songs whose file changed since ingest (they fail alone).
    reason : str, optional
        Why the job failed.
    prepared : object, optional
        ``clip``-scope views: the song's prepared features, for the main process.
    encoded : dict, optional
        Clip length -> :class:`~feature_store.engine.codec.EncodedRows` of ``job.wanted``.
    seconds : float
        Decode and prepare time.
    """

    ok: bool
    changed: list[str]
    reason: str | None = None
    prepared: Any = None
    encoded: dict[int, codec.EncodedRows] | None = None
    seconds: float = 0.0


_VIEWS: dict[str, Any] = {}


def view_of(spec: tuple[str, dict]) -> Any:
    """The view of ``spec``, rebuilt once per process."""
    import json

    key = json.dumps(spec, sort_keys=True, default=str)
    if key not in _VIEWS:
        from feature_store.engine.plugins import view_from_spec

        _VIEWS[key] = view_from_spec(spec)
    return _VIEWS[key]


def _read_cataloged(path: str, *, size: int) -> bytes | None:
    """The bytes of an audio file, or None when it is no longer the regular file of ``size``
    bytes that ingest cataloged (a FIFO or a device swapped in is never read, a grown file
    never read whole): the caller reports it changed.
    """
    try:
        return integrity.read_bounded(path, limit=size, what="cataloged audio file")
    except integrity.IntegrityError:
        return None


def run_job(job: Job, spec: tuple[str, dict]) -> JobResult:
    """Compute one content hash; never raises for one song's sake (a file that cannot be
    decoded, or a ``MemoryError``, fails that song alone).

    Each file of ``job.paths`` is hashed; a file whose bytes changed since it was
    cataloged is reported in ``changed``, and the bytes of the first unchanged one, as
    hashed, are decoded (at the view's rate, padded or cropped to the nominal 30 s) and
    prepared. A ``song``-scope entry is written to the cache (and its wanted rows encoded);
    a ``clip``-scope one is returned to the main process.
    """
    view = view_of(spec)
    changed: list[str] = []
    t0 = time.perf_counter()
    try:
        source: tuple[str, bytes] | None = None
        for sid, path in zip(job.song_ids, job.paths, strict=True):
            data = _read_cataloged(path, size=job.size)
            if data is None or hashlib.sha256(data).hexdigest() != job.sha256:
                changed.append(sid)
            elif source is None:
                source = (path, data)
        if source is None:
            return JobResult(ok=False, changed=changed, reason=CHANGED)
        audio = decode(source[0], sr=view.sample_rate, data=source[1])
        prepared = view.prepare(audio.y)
        seconds = time.perf_counter() - t0
        if view.cache_scope == "clip":
            return JobResult(ok=True, changed=changed, prepared=prepared, seconds=seconds)
        SongCache(job.cache_folder).save_entry(job.sha256, prepared)
        encoded = None
        if job.wanted:
            rows = view.clip_rows(prepared, job.wanted)
            encoded = {c: codec.encode_rows(view.array_specs(c), rows[c]) for c in job.wanted}
        return JobResult(ok=True, changed=changed, encoded=encoded, seconds=seconds)
    except (AudioError, OSError, ParameterError) as exc:
        return JobResult(ok=False, changed=changed, reason=str(exc) or type(exc).__name__)
    except MemoryError:  # decode() bounds its own memory; this is the features or the file's bytes
        return JobResult(ok=False, changed=changed, reason=f"out of memory computing this song's {view.name} features")


def run_jobs(jobs: list[Job], spec: tuple[str, dict]) -> list[JobResult]:
    """:func:`run_job` for each job, in order (a worker task holds a few songs)."""
    return [run_job(job, spec) for job in jobs]


def warm_up(spec: tuple[str, dict]) -> None:
    """Import what the work needs and build the view's filters while the parent prepares."""
    import numpy as np

    view = view_of(spec)
    with contextlib.suppress(Exception):
        view.prepare(np.zeros(view.sample_rate // 4, dtype=np.float32))
    with contextlib.suppress(Exception):
        codec.process_codec()


def single_threaded_worker() -> None:
    """Pool initializer: die with the parent; one BLAS/OpenMP thread and one Blosc thread.

    The workers already use every core between them; a library that starts a thread per
    core in each of them too oversubscribes the machine.
    """
    die_with_parent()
    codec.one_thread()
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
