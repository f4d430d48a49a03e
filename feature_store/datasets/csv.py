"""A labelled corpus listed in a CSV file: ``gtzan ingest DIR --dataset csv --labels FILE``.

The file has a header and the columns ``path`` (relative to ``DIR``) and ``label``, and
optionally ``split`` (``train`` or ``test``), which then is the ``seed`` scheme; without it
the ``seed`` scheme is computed per label as for every dataset. Song ids are the paths. A file
that lacks a column, names a path twice, names one that is not under ``DIR`` or does not
exist, or holds an empty label or an unknown split is refused whole, in one line.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from feature_store import catalog as _catalog
from feature_store import splits as _splits
from feature_store.engine.plugins import Dataset, register_dataset
from feature_store.errors import ParameterError
from feature_store.tables import EXCLUDED, SCHEME_PARTS, resolve_in_root

__all__ = ["DATASET", "LABELS_MAX_BYTES", "Listing", "make_splits", "read_listing", "scan"]

#: The largest labels file read (about 100 000 rows of long paths).
LABELS_MAX_BYTES = 16 * 1024 * 1024
REQUIRED = ("path", "label")


@dataclasses.dataclass(frozen=True)
class Listing:
    """The rows of a labels file: ``(path, label, split or None)``, paths normalised."""

    rows: tuple[tuple[str, str, str | None], ...]


def read_listing(labels_file: str | os.PathLike[str] | None, root: Path) -> Listing:
    """Read and check ``labels_file`` against the audio folder ``root``.

    Raises
    ------
    ParameterError
        One line naming the file, the row and what is wrong with it.
    """
    from feature_store.integrity import IntegrityError, read_bounded

    if labels_file is None:
        raise ParameterError("the csv dataset needs its labels file: --labels FILE")
    where = str(labels_file)
    try:
        data = read_bounded(labels_file, limit=LABELS_MAX_BYTES, what="labels file", remedy="pass a smaller file")
        text = data.decode("utf-8-sig")
    except FileNotFoundError:
        raise ParameterError(f"labels file {where!r} does not exist") from None
    except (IntegrityError, OSError) as exc:
        raise ParameterError(f"labels file {where!r} cannot be read: {exc}") from None
    except UnicodeDecodeError:
        raise ParameterError(f"labels file {where!r} is not UTF-8 text") from None
    try:
        records = list(csv.DictReader(io.StringIO(text, newline="")))
        header = csv.DictReader(io.StringIO(text, newline="")).fieldnames or []
    except csv.Error as exc:
        raise ParameterError(f"labels file {where!r} is not CSV: {exc}") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ParameterError(f"labels file {where!r} lacks the column {missing[0]!r}; it needs {list(REQUIRED)} "
                             "and may have 'split'")
    if not records:
        raise ParameterError(f"labels file {where!r} lists no files")
    _refuse_duplicates(records, where)
    has_split = "split" in header
    return Listing(tuple(_checked_row(r, line, root, where, has_split) for line, r in enumerate(records, 2)))


def _refuse_duplicates(records: list[dict[str, Any]], where: str) -> None:
    seen: dict[str, int] = {}
    for line, r in enumerate(records, 2):
        path = posixpath.normpath((r.get("path") or "").strip().replace(os.sep, "/"))
        if path in seen:
            raise ParameterError(f"labels file {where!r} line {line}: path {path!r} is listed twice "
                                 f"(first on line {seen[path]})")
        seen[path] = line


def _checked_row(r: dict[str, Any], line: int, root: Path, where: str,
                 has_split: bool) -> tuple[str, str, str | None]:
    """One row, checked: a path under ``root`` that exists, a label, a known split."""
    if None in r or any(r.get(c) is None for c in REQUIRED):
        raise ParameterError(f"labels file {where!r} line {line}: wrong number of columns")
    rel = posixpath.normpath(r["path"].strip().replace(os.sep, "/"))
    label = r["label"].strip()
    if not r["path"].strip() or not label:
        raise ParameterError(f"labels file {where!r} line {line}: empty path or label")
    try:
        resolve_in_root(root, rel)
    except (ParameterError, RuntimeError, OSError):
        raise ParameterError(f"labels file {where!r} line {line}: path {rel!r} escapes the audio folder "
                             f"{str(root)!r}") from None
    if os.path.isabs(rel) or not os.path.lexists(root / rel):
        raise ParameterError(f"labels file {where!r} line {line}: unknown path {rel!r} (no such file under "
                             f"{str(root)!r})")
    split = (r.get("split") or "").strip() if has_split else None
    if split is not None and split not in SCHEME_PARTS["seed"]:
        raise ParameterError(f"labels file {where!r} line {line}: split {split!r} is not one of "
                             f"{list(SCHEME_PARTS['seed'])}")
    return rel, label, split


def find_root(root: str | os.PathLike[str]) -> tuple[Path, str]:
    """``root`` itself: the folder the labels file's paths are relative to."""
    return _catalog.check_folder(root), "csv"


def scan(root: str | os.PathLike[str], *, progress: Callable[[int, int], None] | None = None,
         workers: int | None = None, labels_file: str | os.PathLike[str] | None = None) -> pl.DataFrame:
    """Catalog the files that ``labels_file`` lists under ``root``, with their labels."""
    folder = find_root(root)[0]
    listing = read_listing(labels_file, folder)
    files = [(label, folder / rel) for rel, label, _split in listing.rows]
    return _catalog.scan_files(folder, files, progress=progress, workers=workers)


def make_splits(catalog: pl.DataFrame, *, k: int = 5, seed: int = 0,
                labels_file: str | os.PathLike[str] | None = None, root: Path | None = None) -> pl.DataFrame:
    """The split table; the file's ``split`` column, when it has one, is the ``seed`` scheme."""
    given: dict[str, pl.Series] = {}
    if labels_file is not None:
        listing = read_listing(labels_file, root) if root is not None else None
        parts = {rel: split for rel, _label, split in listing.rows} if listing else {}
        if parts and all(v is not None for v in parts.values()):
            values = [parts.get(sid, EXCLUDED) if status == "ok" else EXCLUDED
                      for sid, status in zip(catalog["song_id"], catalog["status"], strict=True)]
            given["seed"] = pl.Series("seed", values, dtype=pl.String)
    return _splits.make_splits(catalog, k=k, seed=seed, given=given)


DATASET = register_dataset(Dataset(
    name="csv", summary="any corpus listed in --labels FILE (columns path, label, optional split)",
    find_root=find_root, catalog=scan, splits=make_splits, needs_labels_file=True,
))
