"""What a build's worker processes run: decode a song and cache its full-length mel.

Kept apart from :mod:`feature_store.store` so that a worker imports only NumPy, SciPy and
soundfile (not polars, h5py or librosa): with spawned processes, start-up is paid per
worker and per build.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from feature_store import atomic
from feature_store.audio import decode
from feature_store.errors import AudioError, ParameterError
from feature_store.features import mel_spectrogram, window_summaries
from feature_store.params import FeatureParams

#: Reason recorded for a song whose file no longer has the content the catalog hashed.
CHANGED = "file changed since it was cataloged; re-run ingest"


#: ``(start frame, frames)`` of a clip taken from a song's full-length mel.
Window = tuple[int, int]


class Job(NamedTuple):
    """One content hash to compute: the songs that have it and their files.

    With ``windows`` and ``chunk_file``, the clips the store is writing are also encoded in
    the worker and their chunks left in ``chunk_file`` (see :func:`compute_song`).
    """

    song_ids: list[str]
    paths: list[str]
    sha256: str
    cache_file: str
    windows: list[Window] | None = None
    chunk_file: str | None = None


def encode_clips(mel: np.ndarray, *, windows: list[Window], dtype: str) -> tuple[bytes, dict, dict]:
    """Compressed HDF5 chunks and band summaries of the clips ``windows`` of one mel.

    Parameters
    ----------
    mel : np.ndarray [shape=(n_mels, frames), dtype=float32]
    windows : list of (start, frames)
        Each inside ``mel``.
    dtype : {'float32', 'float16'}
        Storage dtype of the chunks.

    Returns
    -------
    payload : bytes
        The chunks, one after another.
    chunks : dict
        ``window -> (offset, length)`` of its chunk in ``payload``: a chunk of the store's
        ``mel`` dataset, ready for ``write_direct_chunk``.
    summaries : dict
        ``window -> np.ndarray [shape=(2 * n_mels,), dtype=float32]`` (band means, then
        standard deviations), from the float32 values.
    """
    codec = _codec()
    parts: list[bytes] = []
    chunks: dict[Window, tuple[int, int]] = {}
    offset = 0
    for start, frames in windows:
        if start < 0 or start + frames > mel.shape[1]:
            raise ParameterError(f"a clip of {frames} frames at {start} exceeds the mel's {mel.shape[1]} frames")
        clip = np.ascontiguousarray(mel[:, start : start + frames], dtype=dtype)
        data = bytes(codec.encode(clip))
        chunks[(start, frames)] = (offset, len(data))
        parts.append(data)
        offset += len(data)
    return b"".join(parts), chunks, window_summaries(mel, windows=list(windows))


#: Set in worker processes by :func:`single_threaded_worker`.
_ONE_THREAD = False


@functools.lru_cache(maxsize=1)
def _codec() -> Any:
    from feature_store.h5 import chunk_codec

    if _ONE_THREAD:  # the workers already use every core between them
        import numcodecs.blosc

        numcodecs.blosc.use_threads = False
    return chunk_codec()


def compute_song(job: Job, params_dict: dict) -> dict:
    """Decode the audio with content hash ``job.sha256`` and cache its mel; never raises
    for one song's sake (a file that cannot be decoded, or a ``MemoryError``, fails the song).

    ``job.paths`` are the files of ``job.song_ids`` that the catalog found with this content (one,
    unless the corpus repeats a song). Each is hashed; a file whose bytes changed since it
    was cataloged is reported in ``changed``, and the bytes of the first unchanged one, as
    hashed, are decoded.

    The cache file is renamed into place atomically but not flushed to disk
    (``durable=False``): the store checks every cached mel it loads and recomputes one that
    a power cut left empty.

    With ``job.windows`` and ``job.chunk_file``, the clips the store is writing are also
    encoded here (:func:`encode_clips`) and their chunks written to ``chunk_file``, for the
    parent to copy into its HDF5 files: the compression is spread over the workers.

    Returns
    -------
    dict
        ``ok`` (bool), ``changed`` (song ids); with ``windows``, ``chunks`` and
        ``summaries`` (see :func:`encode_clips`); when not ok, ``reason``.
    """
    params = FeatureParams.from_dict(params_dict)
    changed: list[str] = []
    try:
        source: tuple[str, bytes] | None = None
        for sid, path in zip(job.song_ids, job.paths, strict=True):
            data = Path(path).read_bytes()
            if hashlib.sha256(data).hexdigest() != job.sha256:
                changed.append(sid)
            elif source is None:
                source = (path, data)
        if source is None:
            return {"ok": False, "changed": changed, "reason": CHANGED}
        audio = decode(source[0], sr=params.sr, data=source[1])  # the bytes just hashed
        # no BLAS in the mel (scipy.fft + a sparse filterbank): the numbers are the same in
        # every process, whatever its thread settings or the number of workers
        mel = mel_spectrogram(audio.y, params=params)
        with atomic.atomic_path(job.cache_file, durable=False) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, mel, allow_pickle=False)
        out = {"ok": True, "changed": changed}
        if job.windows is not None and job.chunk_file is not None:
            payload, chunks, summaries = encode_clips(mel, windows=job.windows, dtype=params.dtype)
            with open(job.chunk_file, "wb") as fh:
                fh.write(payload)
            out.update(chunks=chunks, summaries=summaries)
        return out
    except (AudioError, OSError, ParameterError) as exc:
        return {"ok": False, "changed": changed, "reason": str(exc)}
    except MemoryError:  # decode() bounds its own memory; this is the mel or the file's bytes
        return {"ok": False, "changed": changed, "reason": "out of memory computing this song's mel"}


def compute_songs(jobs: list[Job], params_dict: dict) -> list[dict]:
    """:func:`compute_song` for each job, in order."""
    return [compute_song(job, params_dict) for job in jobs]


def warm_up(params_dict: dict) -> None:
    """Import what the work needs and build the filterbank, while the parent prepares."""
    params = FeatureParams.from_dict(params_dict)
    mel_spectrogram(np.zeros(params.n_fft, dtype=np.float32), params=params)
    _codec()


def single_threaded_worker() -> None:
    """Pool initializer: one BLAS/OpenMP thread per worker process.

    The workers already use every core between them; a library that starts a thread per
    core in each of them too oversubscribes the machine. Blosc (when the workers encode
    chunks) is kept to one thread too.
    """
    global _ONE_THREAD
    _ONE_THREAD = True
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
