"""The manifest of a published generation: the sha256 and size of each of its files.

Every generation of a feature store (``clip-05s/gen-<id>/``) is published with a
``manifest.json`` (checksummed like every JSON file the project writes) that lists each file
of the generation, the index included, with its size and sha256. A Parquet file rewritten
with valid page checksums, or an HDF5 file swapped for another, passes its own format's
checks but not the manifest:

* ``verify`` (:func:`verify_files`) checks the size and sha256 of every file, and that no file
  is missing or unlisted;
* a reader opening a generation checks the size and sha256 of the index only
  (:func:`check_files`): the index is small, and the HDF5 rows it serves are each checked
  against their digest in that index.

A generation without a manifest (written by an older version) is refused with the remedy.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from feature_store import atomic, integrity
from feature_store.integrity import IntegrityError

#: File name of a generation's manifest.
MANIFEST_FILE = "manifest.json"
#: Files a manifest may list at most.
MAX_FILES = 64
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BLOCK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in blocks (bounded memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def list_files(folder: Path, *, skip: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Every regular file of ``folder`` but ``skip``, with its size and sha256."""
    skip = {MANIFEST_FILE, *skip}
    return {f.name: {"bytes": f.stat().st_size, "sha256": sha256_file(f)} for f in sorted(folder.iterdir())
            if f.name not in skip and not f.name.startswith(atomic.TMP_PREFIX) and f.is_file()}


def write_manifest(folder: str | os.PathLike[str]) -> Path:
    """Write ``folder/manifest.json``: every regular file of ``folder`` with its size and sha256."""
    folder = Path(folder)
    return atomic.write_json_atomic(folder / MANIFEST_FILE, integrity.with_checksum({"files": list_files(folder)}))


def read_manifest(folder: Path, *, remedy: str = integrity.REPAIR_FEATURES) -> dict[str, dict[str, Any]]:
    """The files listed by ``folder/manifest.json``, its checksum and structure verified.

    Raises
    ------
    IntegrityError
        If there is no manifest (an older generation), or it is damaged.
    """
    path = folder / MANIFEST_FILE
    try:
        doc = integrity.read_json(path, remedy=remedy)
    except FileNotFoundError:
        raise IntegrityError(f"{folder} has no {MANIFEST_FILE} (written by an older version, or removed): its "
                             f"files cannot be checked; {remedy}") from None
    files = doc.get("files")
    if not valid_listing(files):
        raise IntegrityError(f"{path} does not list files as a manifest does: the file is damaged; {remedy}")
    return files


def valid_listing(files: Any) -> bool:
    """Whether ``files`` is a listing of :func:`list_files`: plain names, sizes and sha256s."""
    return isinstance(files, dict) and len(files) <= MAX_FILES and all(
        _plain_name(k) and isinstance(v, dict) and isinstance(v.get("bytes"), int)
        and isinstance(v.get("sha256"), str) and bool(_SHA256.match(v["sha256"])) for k, v in files.items())


def _plain_name(name: Any) -> bool:
    """A file name of the folder itself: no path, no parent, nothing hidden."""
    return isinstance(name, str) and bool(name) and "/" not in name and "\0" not in name and not name.startswith(".")


def mismatch(path: Path, entry: dict[str, Any], *, listing: str = f"its {MANIFEST_FILE}") -> str | None:
    """Why ``path`` does not match its ``entry`` in ``listing`` (None when it does)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"{path} is missing: its generation is incomplete"
    if size != entry["bytes"]:
        return f"{path} is {size} bytes, not the {entry['bytes']} listed in {listing}: the file was changed or damaged"
    if sha256_file(path) != entry["sha256"]:
        return f"{path} does not match its sha256 in {listing}: the file was changed or damaged"
    return None


def listed(folder: Path, name: str, *, remedy: str = integrity.REPAIR_FEATURES) -> tuple[dict[str, Any], str]:
    """The manifest entry of ``folder/name`` and the manifest's path, for
    :func:`feature_store.integrity.read_parquet`'s ``listed`` (one read, checked and parsed).

    Raises
    ------
    IntegrityError
        No manifest, a damaged one, or ``name`` not listed in it.
    """
    files = read_manifest(folder, remedy=remedy)
    if name not in files:
        raise IntegrityError(f"{folder / name} is not listed in {folder / MANIFEST_FILE}: the generation is "
                             f"damaged; {remedy}")
    return files[name], f"its {MANIFEST_FILE}"


def check_files(folder: Path, names: Iterable[str], *, remedy: str = integrity.REPAIR_FEATURES) -> None:
    """Check the size and sha256 of the files ``names`` of ``folder`` against its manifest.

    Raises
    ------
    IntegrityError
        One line naming the first file that is not listed or does not match.
    """
    files = read_manifest(folder, remedy=remedy)
    for name in names:
        if name not in files:
            raise IntegrityError(f"{folder / name} is not listed in {folder / MANIFEST_FILE}: the generation is "
                                 f"damaged; {remedy}")
        why = mismatch(folder / name, files[name])
        if why:
            raise IntegrityError(f"{why}; {remedy}")


def verify_files(folder: Path, *, expected: Iterable[str] = (), remedy: str = integrity.REPAIR_FEATURES) -> list[str]:
    """Every problem of ``folder`` against its manifest, one line each (empty: sound).

    Each listed file must be there with its size and sha256, each file there must be listed,
    and each of ``expected`` must be listed.
    """
    try:
        files = read_manifest(folder, remedy=remedy)
    except IntegrityError as exc:
        return [str(exc)]
    problems = [f"{folder / n} is not listed in {folder / MANIFEST_FILE}: the generation is damaged; {remedy}"
                for n in expected if n not in files]
    for name, entry in sorted(files.items()):
        why = mismatch(folder / name, entry)
        if why:
            problems.append(f"{why}; {remedy}")
    extra = sorted(f.name for f in folder.iterdir() if f.name != MANIFEST_FILE and f.name not in files)
    problems += [f"{folder / n} is not listed in {folder / MANIFEST_FILE}: the generation is damaged; {remedy}"
                 for n in extra]
    return problems
