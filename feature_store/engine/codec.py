"""Rows of a song, encoded for the HDF5 files as they will be stored.

Arrays stored one clip per chunk (``row`` chunking: the mel spectrograms) are compressed
here, clip by clip, with numcodecs' Blosc (:func:`feature_store.h5.chunk_codec`, the bytes
the HDF5 Blosc filter writes), and go into the file with ``write_direct_chunk``; the others
(vectors, summary tables) travel as plain float32 arrays. The build's main process encodes
the rows of cached songs; with many workers the workers encode the rows of the songs they
compute (:mod:`feature_store.engine.worker`), so that the one process writing the files
does not also do all the compression. NumPy and numcodecs only: workers import this.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from feature_store.engine.view import ArraySpec, Rows
from feature_store.integrity import digest

#: Set in worker processes by :func:`one_thread`: the workers already use every core.
_ONE_THREAD = False


@dataclasses.dataclass
class EncodedRows:
    """The rows of one song's clips at one clip length, ready for a writer.

    Attributes
    ----------
    payload : bytes
        The compressed chunks of every ``row`` array, one after another.
    chunks : dict of str to list of (offset, length)
        Per ``row`` array, each clip's chunk in ``payload``, in clip order.
    values : dict of str to np.ndarray [shape=(clips, *shape), dtype=float32]
        The other arrays.
    digests : dict of str to list of int
        Per ``row`` array, the xxh3 digest of each clip's stored bytes (before compression):
        see :mod:`feature_store.integrity`.
    """

    payload: bytes
    chunks: dict[str, list[tuple[int, int]]]
    values: dict[str, np.ndarray]
    digests: dict[str, list[int]] = dataclasses.field(default_factory=dict)


def one_thread() -> None:
    """Encode on one Blosc thread in this process (worker processes call it at start-up)."""
    global _ONE_THREAD
    _ONE_THREAD = True
    process_codec.cache_clear()


@functools.lru_cache(maxsize=1)
def process_codec() -> Any:
    """This process's Blosc codec (one thread in a worker process after :func:`one_thread`)."""
    from feature_store.h5 import chunk_codec

    if _ONE_THREAD:
        import numcodecs.blosc

        numcodecs.blosc.use_threads = False
    return chunk_codec()


def encode_rows(specs: Sequence[ArraySpec], rows: Rows) -> EncodedRows:
    """Encode one song's rows at one clip length (see :class:`EncodedRows`).

    Parameters
    ----------
    specs : list of ArraySpec
        The arrays of the clip length.
    rows : dict
        Per array name, the clips' values: an array ``(clips, *shape)`` or a list of
        per-clip arrays (views into the song's features are fine: each is copied once, into
        its chunk, in the spec's dtype).
    """
    codec = process_codec()
    parts: list[bytes] = []
    chunks: dict[str, list[tuple[int, int]]] = {}
    values: dict[str, np.ndarray] = {}
    digests: dict[str, list[int]] = {}
    offset = 0
    for spec in specs:
        data = rows[spec.name]
        if spec.chunking == "row" and spec.hdf5:
            where = chunks[spec.name] = []
            sums = digests[spec.name] = []
            for clip in data:
                if clip.shape != spec.shape:
                    raise ValueError(f"{spec.name}: a clip of shape {clip.shape}, not {spec.shape}")
                stored = np.ascontiguousarray(clip, dtype=spec.dtype)
                sums.append(digest(stored))
                blob = bytes(codec.encode(stored))
                where.append((offset, len(blob)))
                parts.append(blob)
                offset += len(blob)
        else:
            arr = np.asarray(data, dtype=np.float32)
            if arr.shape[1:] != spec.shape:
                raise ValueError(f"{spec.name}: rows of shape {arr.shape[1:]}, not {spec.shape}")
            values[spec.name] = arr
    return EncodedRows(payload=b"".join(parts), chunks=chunks, values=values, digests=digests)
