"""What a build's worker processes run: decode a song and cache its full-length mel.

Kept apart from :mod:`feature_store.store` so that a worker imports only NumPy, SciPy and
soundfile (not polars, h5py or librosa): with spawned processes, start-up is paid per
worker and per build.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import numpy as np

from feature_store import atomic
from feature_store.audio import decode
from feature_store.errors import AudioError, ParameterError
from feature_store.features import mel_spectrogram
from feature_store.params import FeatureParams

#: Reason recorded for a song whose file no longer has the content the catalog hashed.
CHANGED = "file changed since it was cataloged; re-run ingest"


def compute_song(song_ids: list[str], paths: list[str], sha256: str, cache_file: str, params_dict: dict) -> dict:
    """Decode the audio with content hash ``sha256`` and cache its mel; never raises.

    ``paths`` are the files of ``song_ids`` that the catalog found with this content (one,
    unless the corpus repeats a song). Each is hashed; a file whose bytes changed since it
    was cataloged is reported in ``changed``, and the bytes of the first unchanged one, as
    hashed, are decoded.

    The cache file is renamed into place atomically but not flushed to disk
    (``durable=False``): the store checks every cached mel it loads and recomputes one that
    a power cut left empty.

    Returns
    -------
    dict
        ``ok`` (bool), ``changed`` (song ids) and, when not ok, ``reason``.
    """
    params = FeatureParams.from_dict(params_dict)
    changed: list[str] = []
    try:
        source: tuple[str, bytes] | None = None
        for sid, path in zip(song_ids, paths, strict=True):
            data = Path(path).read_bytes()
            if hashlib.sha256(data).hexdigest() != sha256:
                changed.append(sid)
            elif source is None:
                source = (path, data)
        if source is None:
            return {"ok": False, "changed": changed, "reason": CHANGED}
        audio = decode(source[0], sr=params.sr, data=source[1])  # the bytes just hashed
        # no BLAS in the mel (scipy.fft + a sparse filterbank): the numbers are the same in
        # every process, whatever its thread settings or the number of workers
        mel = mel_spectrogram(audio.y, params=params)
        with atomic.atomic_path(cache_file, durable=False) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, mel, allow_pickle=False)
        return {"ok": True, "changed": changed}
    except (AudioError, OSError, ParameterError) as exc:
        return {"ok": False, "changed": changed, "reason": str(exc)}


def compute_songs(jobs: list[tuple[list[str], list[str], str, str]], params_dict: dict) -> list[dict]:
    """:func:`compute_song` for each ``(song_ids, paths, sha256, cache_file)`` job, in order."""
    return [compute_song(*job, params_dict) for job in jobs]


def single_threaded_worker() -> None:
    """Pool initializer: one BLAS/OpenMP thread per worker process.

    The workers already use every core between them; a library that starts a thread per
    core in each of them too oversubscribes the machine.
    """
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
