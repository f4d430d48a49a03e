"""Verify a view's whole store, and repair what is damaged from the audio.

:func:`verify_store` checks the root's catalog and split table, the view's registry, and every
row of every generation that ``current`` points to (:func:`~feature_store.engine.verify.
verify_generation`). :func:`repair_store` then rewrites what it found damaged:

* a damaged catalog or split table: ingest again (it needs the audio folder);
* damaged rows: the cache entries of their songs are dropped, so the songs are decoded again
  from the audio (each file re-hashed against the catalog) and computed again, and the clip
  length is published as a new generation with the other songs' rows from the (checked) cache;
* a damaged generation (its index, a table, the HDF5 file's structure): the clip length is
  written again, all of it, from the cache;
* a damaged registry: written again by that build.

The audio need not be named: :func:`locate_audio` finds it in the genres folder that ingest
recorded (``audio_source.json``), each file the repair reads checked against the catalog's
sha256 first; a folder is asked for only when files have moved or changed.

The features are computed by deterministic code, so a repaired store holds the same numbers
as before the damage, bit for bit.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from feature_store.engine import registry
from feature_store.engine.cache import SongCache
from feature_store.engine.verify import GenerationCheck, verify_generation
from feature_store.errors import StoreError
from feature_store.integrity import IntegrityError

if TYPE_CHECKING:  # pragma: no cover
    from feature_store.engine.build import BuildReport
    from feature_store.engine.store import ViewStore


@dataclasses.dataclass
class StoreCheck:
    """What :func:`verify_store` found.

    Attributes
    ----------
    root_problems : list of str
        A damaged catalog or split table (the root's, shared by every view).
    registry_problem : str, optional
    clip_lengths : dict of int to GenerationCheck
        Every built clip length's generation.
    """

    root_problems: list[str] = dataclasses.field(default_factory=list)
    registry_problem: str | None = None
    clip_lengths: dict[int, GenerationCheck] = dataclasses.field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        """Every problem, one line each."""
        out = list(self.root_problems) + ([self.registry_problem] if self.registry_problem else [])
        for check in self.clip_lengths.values():
            out.extend(check.problems)
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def rows_checked(self) -> int:
        return sum(c.rows_checked for c in self.clip_lengths.values())


def verify_store(store: ViewStore) -> StoreCheck:
    """Check the root's tables, the view's registry and every row of its current generations."""
    out = StoreCheck()
    for read in (store.catalog, store.splits):
        try:
            read()
        except IntegrityError as exc:
            out.root_problems.append(str(exc))
        except StoreError:
            pass  # not ingested: nothing to verify
    try:
        registry.read(store.registry_path)
    except IntegrityError as exc:
        out.registry_problem = str(exc)
    for c in store.available_clip_seconds():
        out.clip_lengths[c] = verify_generation(store.generation(c), store.view, c)
    return out


class AudioMovedError(StoreError):
    """Files that a repair reads are not where ingest recorded them, or differ from the catalog."""


def locate_audio(store: ViewStore, check: StoreCheck) -> Path | None:
    """The genres folder recorded at ingest, once every file the repair of ``check`` reads is
    found there with the catalog's sha256; None when the store records no folder.

    The files checked are those of the damaged songs, and every usable file when the catalog
    or split table is ingested again (all of them, if the catalog itself cannot be read).

    Raises
    ------
    AudioMovedError
        One line: how many of those files are missing or changed, the first one, and the
        command that takes the folder.
    IntegrityError
        The record of the folder is damaged.
    """
    from feature_store.tables import recorded_genre_root

    genre_root = recorded_genre_root(store.root)
    if genre_root is None:
        return None
    try:
        catalog = store.catalog().filter(pl.col("status") == "ok")
    except StoreError:  # damaged: ingest reads the recorded folder again, and hashes every file itself
        return genre_root
    songs = {s for g in check.clip_lengths.values() for s in g.damaged_songs}
    wanted = catalog if check.root_problems else catalog.filter(pl.col("song_id").is_in(sorted(songs)))
    bad = [rel for rel, sha in wanted.select("path", "sha256").iter_rows() if not _same_file(genre_root, rel, sha)]
    if bad:
        raise AudioMovedError(
            f"{len(bad)} of {wanted.height} audio files the repair reads moved or changed since ingest (first: "
            f"{bad[0]} under {genre_root}); pass the folder that holds them: "
            "`gtzan features verify --repair AUDIO_DIR`")
    return genre_root


def _same_file(genre_root: Path, rel: str, sha256: str) -> bool:
    """Whether ``rel`` under ``genre_root`` (not escaping it) is a regular file with ``sha256``."""
    from feature_store.tables import file_sha256, resolve_in_root
    from feature_store.errors import ParameterError

    try:
        path = resolve_in_root(genre_root, rel)
    except (ParameterError, RuntimeError, OSError):
        return False
    return file_sha256(path) == sha256


@dataclasses.dataclass
class RepairReport:
    """What :func:`repair_store` did: ``reingested``, the songs computed again, the build."""

    reingested: bool
    recomputed_songs: list[str]
    build: BuildReport | None


def repair_store(store: ViewStore, check: StoreCheck, *, audio_root: str | os.PathLike[str],
                 workers: int | None = None, progress: bool = False, lock_timeout: float | None = None,
                 on_wait: Any = None) -> RepairReport:
    """Rewrite what ``check`` found damaged (see the module docstring)."""
    reingested = False
    if check.root_problems:
        from feature_store.engine.plugins import ingest_again

        ingest_again(audio_root, store.root)
        reingested = True
    damaged = {c: g for c, g in check.clip_lengths.items() if not g.ok}
    songs = sorted({s for g in damaged.values() for s in g.damaged_songs})
    _drop_cache_entries(store, songs, list(damaged))
    lengths = sorted(set(damaged) | (set(check.clip_lengths) if check.registry_problem or reingested else set()))
    build = None
    if lengths:
        build = store.build(audio_root=audio_root, clip_seconds=lengths, workers=workers, progress=progress,
                            lock_timeout=lock_timeout, on_wait=on_wait, rebuild=list(damaged))
    return RepairReport(reingested=reingested, recomputed_songs=songs, build=build)


def _drop_cache_entries(store: ViewStore, songs: list[str], lengths: list[int]) -> None:
    """Delete the cache entries of ``songs`` so that they are computed again from the audio."""
    if not songs:
        return
    catalog = store.catalog()
    shas = set(catalog.filter(catalog["song_id"].is_in(songs))["sha256"].to_list())
    try:
        provenance = store.view.provenance()
    except StoreError:
        provenance = {}
    cache = SongCache(store.root / "cache" / store.view.cache_folder(provenance))
    for sha in shas:
        cache.entry_path(sha).unlink(missing_ok=True)
        for c in lengths:
            cache.rows_path(sha, c).unlink(missing_ok=True)

