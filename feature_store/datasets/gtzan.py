"""GTZAN (Tzanetakis & Cook 2002): ten genres of 100 songs of 30 s.

Both layouts are read:

* Kaggle: ``<root>/genres_original/<genre>/<genre>.000NN.wav``
* original (Marsyas): ``<root>/genres/<genre>/<genre>.000NN.au``

``root`` may also be the genres folder itself. A file named ``<genre>.000NN.<ext>`` in its
genre's folder has the id ``<genre>.000NN`` (the id of the split lists, whatever the layout or
format); any other file has ``<genre>/<file name>``, extension included. A folder that is not
one of the ten genres is quarantined. The ``fault_filtered`` scheme is the artist-conflict-free
split of Kereliuk, Sturm & Larsen (2015), train/valid/test = 443/197/290 songs, shipped as
package data.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

from feature_store import catalog as _catalog
from feature_store import splits as _splits
from feature_store.engine.plugins import Dataset, register_dataset
from feature_store.errors import ParameterError
from feature_store.tables import EXCLUDED, SCHEME_PARTS

__all__ = ["DATASET", "GENRES", "LAYOUT_FOLDERS", "SONG_RE", "fault_filtered_lists", "fault_filtered_split",
           "find_genre_root", "make_splits", "scan", "song_id_of", "validate_genre"]

#: The ten GTZAN genres, in label order (label ``i`` is ``GENRES[i]``).
GENRES: tuple[str, ...] = (
    "blues",
    "classical",
    "country",
    "disco",
    "hiphop",
    "jazz",
    "metal",
    "pop",
    "reggae",
    "rock",
)


def validate_genre(genre: str) -> str:
    """Return ``genre`` if it is a GTZAN genre, else raise :class:`ParameterError`."""
    if genre not in GENRES:
        raise ParameterError(f"unknown genre {genre!r}; valid genres are {list(GENRES)}")
    return genre


LAYOUT_FOLDERS: dict[str, str] = {"kaggle": "genres_original", "original": "genres"}
SONG_RE = re.compile(r"^(?P<genre>[a-z]+)\.(?P<number>\d{5})$")


def find_genre_root(root: str | os.PathLike[str]) -> tuple[Path, str]:
    """Return the folder that holds the genre folders, and the layout name.

    Parameters
    ----------
    root : path
        A GTZAN copy (holding ``genres_original/`` or ``genres/``) or its genres folder.

    Raises
    ------
    ParameterError
        If ``root`` does not exist, is not a folder, or holds no genre folders.
    """
    root = Path(root).expanduser()
    _catalog.check_folder(root)
    for layout, name in LAYOUT_FOLDERS.items():
        if (root / name).is_dir():
            return (root / name).resolve(), layout
    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if subdirs:
        exts = {f.suffix.lower() for d in subdirs for f in d.iterdir() if f.is_file()}
        layout = "original" if exts == {".au"} else "kaggle"
        return root.resolve(), layout
    raise ParameterError(
        f"audio folder {str(root)!r} holds no genre folders; expected "
        f"'genres_original/<genre>/<genre>.000NN.wav' or 'genres/<genre>/<genre>.000NN.au'"
    )


def song_id_of(genre: str, name: str) -> tuple[str, int | None]:
    """The song id and GTZAN number of the file ``name`` in the folder ``genre``.

    ``<genre>.000NN.<ext>`` gives ``(<genre>.000NN, NN)``; any other name gives
    ``(<genre>/<name>, None)``, extension included, so that two files never share an id
    (only two GTZAN files of one number can: the catalog keeps one).
    """
    stem, ext = os.path.splitext(name)
    m = SONG_RE.match(stem)
    if ext and m and m["genre"] == genre:
        return stem, int(m["number"])
    return f"{genre}/{name}", None


def gtzan_song_id(genre: str, rel: str) -> tuple[str, int | None]:
    """:func:`song_id_of` as a catalog rule (the file's name is the last part of ``rel``)."""
    return song_id_of(genre, rel.rsplit("/", 1)[-1])


#: GTZAN's naming: its song ids, and only its ten genres.
NAMING = _catalog.Naming(song_id=gtzan_song_id, labels=GENRES, label_problem="a GTZAN genre")


def scan(root: str | os.PathLike[str], *, progress: Callable[[int, int], None] | None = None,
         workers: int | None = None, labels_file: Any = None) -> pl.DataFrame:
    """Catalog every audio file under a GTZAN folder (either layout, or its genres folder)."""
    genre_root, _layout = find_genre_root(root)
    return _catalog.scan(genre_root, progress=progress, workers=workers, naming=NAMING)


def fault_filtered_lists() -> dict[str, set[str]]:
    """Song ids of the fault-filtered split, by part (train/valid/test)."""
    parts: dict[str, set[str]] = {}
    pkg = resources.files("feature_store") / "splits_data"
    for part in SCHEME_PARTS["fault_filtered"]:
        text = (pkg / f"{part}_filtered.txt").read_text()
        parts[part] = {Path(line.strip()).stem for line in text.splitlines() if line.strip()}
    return parts


def fault_filtered_split(catalog: pl.DataFrame) -> pl.Series:
    """Kereliuk, Sturm & Larsen (2015) parts; songs not in the lists are ``excluded``."""
    lookup = {sid: part for part, ids in fault_filtered_lists().items() for sid in ids}
    values = [
        lookup.get(sid, EXCLUDED) if status == "ok" else EXCLUDED
        for sid, status in zip(catalog["song_id"], catalog["status"], strict=True)
    ]
    return pl.Series("fault_filtered", values, dtype=pl.String)


def make_splits(catalog: pl.DataFrame, *, k: int = 5, seed: int = 0, labels_file: Any = None,
                root: Any = None) -> pl.DataFrame:
    """GTZAN's split table: the computed schemes and the fault-filtered lists."""
    return _splits.make_splits(catalog, k=k, seed=seed, given={"fault_filtered": fault_filtered_split(catalog)})


DATASET = register_dataset(Dataset(
    name="gtzan", summary="GTZAN: genres_original/<genre>/*.wav (Kaggle) or genres/<genre>/*.au",
    find_root=find_genre_root, catalog=scan, splits=make_splits, labels=GENRES,
))
