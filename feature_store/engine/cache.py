"""The content-addressed per-song cache of a view: ``<root>/cache/<folder>/<sha256>...``.

* ``song`` scope: ``<sha256>.npy``, one float32 array ``(features, frames)`` of the whole
  song, as ``np.save`` writes it (no pickle).
* ``clip`` scope: ``<sha256>-05s.npz``, per clip length: ``segments`` (the clips' segment
  numbers), one array per :class:`~feature_store.engine.view.ArraySpec` and
  ``compute_seconds`` (what the song cost to compute).

Entries are renamed into place atomically but not flushed to disk (``durable=False``): the
cache is derived data, and every entry is checked when it is loaded (its digest, shape, dtype
and length), so one that a power cut left empty or short, or a bit flip damaged, is computed
again instead of spreading into a new generation. This module is imported by
the build's worker processes: NumPy and the standard library only.
"""

from __future__ import annotations

import functools
import io
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from feature_store import atomic
from feature_store.errors import ParameterError, StoreError
from feature_store.integrity import IntegrityError, digest, read_bounded, read_npz


class CacheError(StoreError):
    """A cache entry cannot be read or is not what the view expects (it is recomputed)."""


def check_sha256(sha256: str) -> str:
    """Return ``sha256`` if it is a lower-case hex sha256 digest, else ParameterError."""
    if not (isinstance(sha256, str) and len(sha256) == 64 and all(ch in "0123456789abcdef" for ch in sha256)):
        raise ParameterError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


class SongCache:
    """One view's cache folder.

    Parameters
    ----------
    folder : path
        ``<root>/cache/<view.cache_folder(provenance)>``.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    # -- paths ------------------------------------------------------------------------------
    def entry_path(self, sha256: str) -> Path:
        """File of a ``song``-scope entry."""
        return self.folder / f"{check_sha256(sha256)}.npy"

    def rows_path(self, sha256: str, clip_seconds: int) -> Path:
        """File of a ``clip``-scope entry (one song, one clip length)."""
        return self.folder / f"{check_sha256(sha256)}-{int(clip_seconds):02d}s.npz"

    # -- song scope -------------------------------------------------------------------------
    def save_entry(self, sha256: str, entry: np.ndarray) -> Path:
        """Write a song's array atomically, followed by the digest of its data (not flushed:
        see the module docstring)."""
        path = self.entry_path(sha256)
        arr = np.ascontiguousarray(entry, dtype=np.float32)
        with atomic.atomic_path(path, durable=False) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
                fh.write(TRAILER + digest(arr).to_bytes(8, "little"))
        return path

    def load_entry(self, sha256: str, shape: tuple[int, ...]) -> np.ndarray:
        """A song's array, checked against its digest, ``shape`` and float32 (read-only).

        Raises
        ------
        CacheError
            If the file is missing, damaged, without a digest, or of another shape or dtype.
        """
        path = self.entry_path(sha256)
        header = _npy_header(tuple(shape))
        count = int(np.prod(shape)) * 4
        try:  # never more than the entry of that shape: a larger file is refused unread
            raw = read_bounded(path, limit=len(header) + count + len(TRAILER) + 8, what="cache entry")
        except (OSError, IntegrityError) as exc:
            raise CacheError(f"the cache entry {path} cannot be read ({exc})") from exc
        if not (raw.startswith(header) and len(raw) == len(header) + count + len(TRAILER) + 8
                and raw[len(header) + count: -8] == TRAILER):
            raise CacheError(f"the cache entry {path} is not a {tuple(shape)} float32 array with its digest")
        data = memoryview(raw)[len(header): len(header) + count]
        if digest(data) != int.from_bytes(raw[-8:], "little"):
            raise CacheError(f"the cache entry {path} fails its checksum")
        return np.frombuffer(data, dtype="<f4").reshape(shape)

    # -- clip scope -------------------------------------------------------------------------
    def save_rows(self, sha256: str, clip_seconds: int, *, segments: Sequence[int], rows: Mapping[str, np.ndarray],
                  seconds: float) -> Path:
        """Write one song's rows at one clip length."""
        path = self.rows_path(sha256, clip_seconds)
        with atomic.atomic_path(path, durable=False) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, segments=np.asarray(segments, np.int64), compute_seconds=np.float64(seconds),
                         **{k: np.asarray(v, np.float32) for k, v in rows.items()})
        return path

    def load_rows(self, sha256: str, clip_seconds: int, *, segments: Sequence[int],
                  shapes: Mapping[str, tuple[int, ...]]) -> tuple[dict[str, np.ndarray], float]:
        """The rows of ``segments`` (in that order) of one song at one clip length.

        Returns
        -------
        rows : dict of str to np.ndarray [shape=(len(segments), *shape)]
        seconds : float
            What the song's rows cost to compute (all its clips at this length).

        Raises
        ------
        CacheError
            If the file is missing or damaged, lacks a segment or an array, or has other shapes.
        """
        path = self.rows_path(sha256, clip_seconds)
        try:
            z = read_npz(path)  # sizes bounded from the zip directory before decompressing
            stored = {int(k): i for i, k in enumerate(z["segments"])}
            missing = [int(k) for k in segments if int(k) not in stored]
            if missing:
                raise CacheError(f"the cache entry {path} lacks segments {missing}")
            take = np.asarray([stored[int(k)] for k in segments], np.int64)
            rows = {}
            for name, shape in shapes.items():
                arr = z[name]
                if arr.shape[1:] != tuple(shape) or arr.shape[0] != len(stored):
                    raise CacheError(f"the cache entry {path} holds {name} of shape {arr.shape}, "
                                     f"not (clips, *{tuple(shape)})")
                rows[name] = arr[take].astype(np.float32, copy=False)
            return rows, float(z["compute_seconds"])
        except CacheError:
            raise
        except (OSError, ValueError, EOFError, KeyError, TypeError, IntegrityError, zipfile.BadZipFile,
                zlib.error) as exc:
            raise CacheError(f"the cache entry {path} cannot be read ({type(exc).__name__}: {exc})") from exc


#: What follows the array in a ``song``-scope entry: this marker, then its xxh3 digest (8 bytes,
#: little-endian). ``np.load`` ignores it, so an entry still reads as a plain ``.npy`` file.
TRAILER = b"XXH3"


@functools.lru_cache(maxsize=8)
def _npy_header(shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` header ``np.save`` writes for a float32 array of ``shape``."""
    buf = io.BytesIO()
    np.save(buf, np.empty((0,), "<f4"))  # the format version np.save picks
    version = buf.getvalue()[6:8]
    buf = io.BytesIO()
    write = np.lib.format.write_array_header_1_0 if version == b"\x01\x00" else np.lib.format.write_array_header_2_0
    write(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue()
