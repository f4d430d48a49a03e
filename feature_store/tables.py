"""The dataset-neutral tables every store holds, and the record of the audio they describe.

Every dataset (:mod:`feature_store.datasets`) writes the same two tables: the catalog (one row
per audio file, its ``genre`` column holding the file's label, whatever the labels are) and the
split table (one column per scheme). The engine reads them through the schemas below and finds
the audio again through the audio-source record; it never imports a dataset.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from feature_store.errors import ParameterError

#: The catalog's columns; ``genre`` is the file's label (the column keeps its historical name).
CATALOG_SCHEMA: dict[str, pl.DataType] = {
    "song_id": pl.String(),
    "genre": pl.String(),
    "number": pl.Int64(),
    "path": pl.String(),
    "bytes": pl.Int64(),
    "sha256": pl.String(),
    "format": pl.String(),
    "sample_rate": pl.Int64(),
    "channels": pl.Int64(),
    "frames": pl.Int64(),
    "duration": pl.Float64(),
    "status": pl.String(),
    "reason": pl.String(),
    "notes": pl.String(),
    "duplicate_of": pl.String(),
}

SCHEMES: tuple[str, ...] = ("seed", "stratified", "fault_filtered")
#: The columns of the split table.
SPLITS_SCHEMA: dict[str, pl.DataType] = {
    "song_id": pl.String(), "genre": pl.String(), "sha256": pl.String(), **{s: pl.String() for s in SCHEMES},
}
EXCLUDED = "excluded"
#: Parts of each scheme, besides ``excluded``. ``stratified`` parts depend on k.
SCHEME_PARTS: dict[str, tuple[str, ...]] = {
    "seed": ("train", "test"),
    "fault_filtered": ("train", "valid", "test"),
}

#: The file, beside the catalog, that records the audio folder the catalog's paths are under.
AUDIO_SOURCE_FILE = "audio_source.json"
#: The largest audio-source record read back (it holds two paths and the label set).
AUDIO_SOURCE_MAX_BYTES = 64 * 1024


def validate_scheme(scheme: str) -> str:
    """Return ``scheme`` if known, else raise :class:`ParameterError` naming the valid ones."""
    if scheme not in SCHEMES:
        raise ParameterError(f"unknown split scheme {scheme!r}; valid schemes are {list(SCHEMES)}")
    return scheme


def resolve_in_root(root: str | os.PathLike[str], rel: str) -> Path:
    """Resolve ``rel`` under ``root`` and refuse anything that escapes it.

    Raises
    ------
    ParameterError
        If the resolved path lies outside ``root`` (``..``, absolute paths, symlinks out).
    """
    base = Path(root).resolve()
    p = (base / rel).resolve()
    if p != base and base not in p.parents:
        raise ParameterError(f"path {rel!r} escapes its root {str(base)!r}")
    return p


def file_kind(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words."""
    kinds = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((name for test, name in kinds if test(mode)), "a special file")


def size_and_sha256(path: Path) -> tuple[int, str]:
    """Size and sha256 of a regular file, opened without blocking and checked on its
    descriptor (a FIFO swapped in after the listing is refused, not waited on)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb", closefd=True) as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{file_kind(st.st_mode)}, not a regular file")
        h = hashlib.sha256()
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return st.st_size, h.hexdigest()


def file_sha256(path: Path) -> str | None:
    """The sha256 of the regular file ``path`` (opened without blocking), or None when it is
    missing, unreadable or not a regular file (nothing but a regular file is read)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        return size_and_sha256(path)[1]
    except OSError:
        return None


def write_audio_source(store_root: str | os.PathLike[str], genre_root: str | os.PathLike[str], *,
                       dataset: str = "gtzan", labels: Sequence[str] | None = None,
                       labels_file: str | os.PathLike[str] | None = None) -> Path:
    """Record (atomically, with a checksum) the audio folder a store's catalog was made from, the
    dataset that read it and its label set, so that a repair can find the audio again without
    being told (:func:`recorded_genre_root`) and every build numbers the labels alike."""
    from feature_store.atomic import write_json_atomic
    from feature_store.integrity import with_checksum

    doc: dict[str, Any] = {"genre_root": str(Path(genre_root).resolve()), "dataset": dataset}
    if labels is not None:
        doc["labels"] = list(labels)
    if labels_file is not None:
        doc["labels_file"] = str(Path(labels_file).resolve())
    return write_json_atomic(Path(store_root) / AUDIO_SOURCE_FILE, with_checksum(doc))


def read_audio_source(store_root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record :func:`write_audio_source` wrote, checked, or None when there is none (a store
    ingested before the record existed, or tables written by hand).

    Raises
    ------
    IntegrityError
        The record is larger than :data:`AUDIO_SOURCE_MAX_BYTES`, not JSON, fails its checksum,
        or holds values of the wrong kind.
    """
    from feature_store.integrity import IntegrityError, read_json

    path = Path(store_root) / AUDIO_SOURCE_FILE
    remedy = "run `gtzan ingest` again to rewrite it"
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size > AUDIO_SOURCE_MAX_BYTES:
        raise IntegrityError(f"{path} holds {size} bytes, more than {AUDIO_SOURCE_MAX_BYTES}: the file is damaged; "
                             f"{remedy}")
    doc = read_json(path, remedy=remedy)
    value = doc.get("genre_root")
    if not isinstance(value, str) or not os.path.isabs(value):
        raise IntegrityError(f"{path} does not name an absolute folder: the file is damaged; {remedy}")
    labels = doc.get("labels")
    if labels is not None and (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)):
        raise IntegrityError(f"{path} holds a label set that is not a list of names: the file is damaged; {remedy}")
    if not isinstance(doc.get("dataset", "gtzan"), str):
        raise IntegrityError(f"{path} names no dataset: the file is damaged; {remedy}")
    return doc


def recorded_genre_root(store_root: str | os.PathLike[str]) -> Path | None:
    """The audio folder :func:`write_audio_source` recorded, or None when there is none. The
    folder is only ever read, and only files whose sha256 matches the catalog are used from it."""
    doc = read_audio_source(store_root)
    return None if doc is None else Path(doc["genre_root"])


def label_order(labels: Sequence[str] | pl.Series) -> tuple[str, ...]:
    """The label set of a corpus that declares none: its distinct labels, sorted."""
    return tuple(sorted(set(labels)))
