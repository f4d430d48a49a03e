"""Crash-safe file writes: write to a temporary name in the same folder, then rename.

A reader never sees a half-written file: ``os.replace`` is atomic on POSIX within one
filesystem. Temporary names start with ``.tmp-`` so that no reader or glob takes them
for a store, and :func:`remove_stale_temps` sweeps what a killed writer left behind: all of
it under a build lock, or, without a lock, only the leftovers of writers that are no longer
running (the writer's process id is part of every temporary name).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"


def tmp_name(target: Path) -> Path:
    """A unique temporary sibling of ``target`` (same folder, hidden, never globbed)."""
    return target.parent / f"{TMP_PREFIX}{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries so that a rename survives a power cut."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path; on success rename it onto ``target``, on error delete it.

    Works for files and for folders (a folder replaces an existing folder of the same name
    only if that one is empty; use :func:`swap_symlink` for generations of folders).

    With ``durable`` (the default) the file and the folder entry are flushed to disk
    (fsync), so the rename survives a power cut. ``durable=False`` is for caches whose
    readers check what they read and recompute it: the rename is still atomic for every
    process, and a power cut can at worst leave an empty or missing file.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(target)
    try:
        yield tmp
        if durable and tmp.is_file():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
        if durable:
            fsync_dir(target.parent)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise


def writer_alive(tmp: str | os.PathLike[str]) -> bool:
    """Whether the process that made the temporary ``tmp`` (see :func:`tmp_name`) may still run.

    False only when the process id in the name is not this process and no such process
    exists on this machine; a name of another shape counts as alive (it is kept).
    """
    parts = Path(tmp).name.rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return True
    pid = int(parts[1])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # no permission to signal it: it exists
        return True
    return True


def _sweep_dead(target: Path) -> None:
    """Delete the leftovers of killed writers of ``target`` (temporaries of dead processes)."""
    remove_stale_temps(target.parent, prefix=f"{TMP_PREFIX}{target.name}.", dead_only=True)


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically (sweeping what killed writers of it left)."""
    _sweep_dead(Path(target))
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_json_atomic(target: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``target`` atomically."""
    return write_bytes_atomic(target, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def write_parquet_atomic(target: str | os.PathLike[str], df: Any) -> Path:
    """Write a polars DataFrame to Parquet atomically (zstd, page checksums: see
    :mod:`feature_store.integrity`), sweeping killed writers' leftovers."""
    from feature_store.integrity import write_parquet

    _sweep_dead(Path(target))
    with atomic_path(target) as tmp:
        write_parquet(df, tmp)
    return Path(target)


def swap_symlink(link: str | os.PathLike[str], target_name: str) -> None:
    """Point ``link`` at ``target_name`` (relative) atomically, replacing any old link."""
    link = Path(link)
    tmp = tmp_name(link)
    os.symlink(target_name, tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)


def remove_stale_temps(
    folder: str | os.PathLike[str], *, prefix: str = TMP_PREFIX, dead_only: bool = False
) -> list[Path]:
    """Delete ``.tmp-*`` leftovers of killed writers in ``folder``; return what was removed.

    Parameters
    ----------
    folder : path
    prefix : str
        Only names starting with this (default: every temporary).
    dead_only : bool
        Only the temporaries of processes that no longer run (:func:`writer_alive`). Without
        it, call this only while holding the folder's build lock, so that no live writer is hit.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir() or not prefix.startswith(TMP_PREFIX):
        return removed
    for p in folder.iterdir():
        if p.name.startswith(prefix) and not (dead_only and writer_alive(p)):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            removed.append(p)
    return removed


def resolve_current(folder: str | os.PathLike[str]) -> Path | None:
    """The generation that ``folder/current`` points at, or None if there is none."""
    folder = Path(folder)
    link = folder / "current"
    if not link.is_symlink():
        return None
    target = (folder / os.readlink(link)).resolve()
    return target if target.is_dir() else None


@contextlib.contextmanager
def new_generation(folder: str | os.PathLike[str], *, keep_old: int = 1) -> Iterator[Path]:
    """Build a new generation of ``folder`` and publish it atomically.

    Yields an empty temporary folder. When the block ends without error it is renamed to
    ``gen-<utc time>-<id>``, ``folder/current`` is swapped to point at it, and all but the
    ``keep_old`` newest older generations are deleted. On error the temporary folder is
    removed and ``current`` still points at the previous generation. Temporaries that killed
    writers left in ``folder`` are deleted first (those of running writers are kept).
    """
    import datetime as dt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder, dead_only=True)
    gen = f"gen-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:6]}"
    with atomic_path(folder / gen) as tmp:
        tmp.mkdir()
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
    swap_symlink(folder / "current", gen)
    olds = sorted(p for p in folder.iterdir() if p.name.startswith("gen-") and p.is_dir() and p.name != gen)
    for old in olds[: max(0, len(olds) - keep_old)]:
        shutil.rmtree(old, ignore_errors=True)
