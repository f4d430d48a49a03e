"""The audio catalog: every file of a labelled folder, validated, as a polars DataFrame.

The generic layout is ``<root>/<label>/<audio files>`` (:func:`scan`); a dataset
(:mod:`feature_store.datasets`) may name its files otherwise (:func:`scan_files`) and give
its own song ids and label set. Any format that libsndfile decodes is accepted. A file that
cannot be used is kept in the catalog with ``status = "quarantined"`` and a ``reason``; it
never stops the build. The ``genre`` column holds each file's label, whatever the labels are.

Song ids are unique by construction: a dataset's rule gives each file an id (the generic
rule: ``<label>/<file name>``, extension included). Two files that a dataset's rule gives one
id (GTZAN's ``rock.00001.au`` and ``rock.00001.wav``) cannot both be that song: the first
usable one by path keeps the id, the other gets ``<label>/<file name>`` as id and is
quarantined, ``duplicate song id of rock.00001 (rock/rock.00001.au)``.

Only regular files are read. Anything else in a label folder (a sub-folder, a FIFO, a
socket, a device, a broken or looping symbolic link, one that leaves the audio folder) is
listed as quarantined with the reason, from ``lstat``/``stat`` alone: it is never opened (a
FIFO would block the open), and a regular file is opened with ``O_NONBLOCK`` and checked
again on its descriptor.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import polars as pl

from feature_store.atomic import write_parquet_atomic
from feature_store.audio import count_frames, declared_frames, decode, probe
from feature_store.errors import AudioError, ParameterError
from feature_store.params import NOMINAL_SECONDS
from feature_store.tables import (  # the neutral names, re-exported where they have always been
    AUDIO_SOURCE_FILE,
    AUDIO_SOURCE_MAX_BYTES,
    CATALOG_SCHEMA,
    file_kind,
    file_sha256,
    read_audio_source,
    recorded_genre_root,
    resolve_in_root,
    size_and_sha256,
    write_audio_source,
)

#: Below this many files the catalog is read in one process (spawning costs ~1 s).
PARALLEL_MIN_FILES = 200
#: Files with less audio than this cannot give even one 1 s clip and are quarantined.
MIN_SONG_SECONDS = 1.0
#: Below this sample rate a file gets a note (it lacks the top bands of the store's mels).
FULL_BAND_SAMPLE_RATE = 22050

_sha256 = size_and_sha256  # the names this module has always had
_kind = file_kind


def entry_problem(path: Path, *, genre_root: Path) -> str | None:
    """Why the entry ``path`` under ``genre_root`` is not read, or None for a regular file
    inside the folder; decided by ``lstat``/``stat`` alone, nothing is opened.

    Returns
    -------
    str or None
        ``a named pipe (FIFO), not a regular file``; ``symbolic link to a folder, not a regular
        file``; ``symbolic link loop``; ``broken symbolic link``; ``symbolic link to a
        character device outside the audio folder``...
    """
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot read file: {exc.strerror or exc}"
    link = stat.S_ISLNK(st.st_mode)
    if not link and not stat.S_ISREG(st.st_mode):
        return f"{_kind(st.st_mode)}, not a regular file"
    if link:
        try:
            st = os.stat(path)
        except OSError as exc:
            return "symbolic link loop" if exc.errno == errno.ELOOP else "broken symbolic link"
    what = f"symbolic link to {_kind(st.st_mode)}" if link else "a file reached through a symbolic link"
    try:
        resolve_in_root(genre_root, path.relative_to(genre_root).as_posix())
    except ParameterError:
        return f"{what} outside the audio folder"
    except (RuntimeError, OSError):  # pathlib's "Symlink loop", on a loop that stat did not meet
        return "symbolic link loop"
    return None if stat.S_ISREG(st.st_mode) else f"{what}, not a regular file"


#: A dataset's song-id rule: ``(label, path relative to the root) -> (song id, number or None)``.
SongIdRule = Callable[[str, str], "tuple[str, int | None]"]


def path_song_id(label: str, rel: str) -> tuple[str, int | None]:
    """The generic song id: the file's path under the root, extension included (unique)."""
    return rel, None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Naming:
    """How a dataset names and admits its files (sent to the processes that read them).

    Attributes
    ----------
    song_id : callable(label, rel) -> (str, int or None)
        The song id and number of a file (:func:`path_song_id` by default).
    labels : collection of str, optional
        The labels a file may have; a file of another label is quarantined. None: any label.
    label_problem : str
        The end of that quarantine reason: ``folder 'x' is not <label_problem>``.
    """

    song_id: SongIdRule = path_song_id
    labels: Collection[str] | None = None
    label_problem: str = "a known label"


GENERIC = Naming()


def inspect_file(path: Path, *, genre_root: Path, genre: str, naming: Naming = GENERIC) -> dict:
    """Validate one file: hash it, check its header (:func:`~feature_store.audio.probe`),
    decode what the store will use (the nominal 30 s and a margin) and learn its true length
    (:func:`~feature_store.audio.count_frames`) without decoding the rest.

    Returns one catalog row (a dict with the keys of :data:`CATALOG_SCHEMA`).
    """
    rel = path.relative_to(genre_root).as_posix()
    song_id, number = naming.song_id(genre, rel)
    row: dict = dict.fromkeys(CATALOG_SCHEMA)
    row.update(song_id=song_id, genre=genre, number=number, path=rel, status="ok", reason=None)
    notes: list[str] = []
    problem = entry_problem(path, genre_root=genre_root)
    if problem is not None:
        row.update(status="quarantined", reason=problem)
        return row
    try:
        row["bytes"], row["sha256"] = _sha256(path)
    except OSError as exc:
        row.update(status="quarantined", reason=f"cannot read file: {exc.strerror or exc}")
        return row
    if naming.labels is not None and genre not in naming.labels:
        row.update(status="quarantined", reason=f"folder {genre!r} is not {naming.label_problem}")
        return row
    if row["bytes"] == 0:
        row.update(status="quarantined", reason="empty file (0 bytes)")
        return row
    try:
        info = probe(path)
    except AudioError as exc:
        row.update(status="quarantined", reason=str(exc))
        return row
    row.update(format=info.format, sample_rate=info.sample_rate, channels=info.channels, frames=info.frames)
    try:
        # the notes describe what the store uses: the first nominal seconds (plus a margin)
        audio = decode(path, sr=info.sample_rate, nominal_seconds=NOMINAL_SECONDS)
        frames = audio.frames if audio.complete else count_frames(path)
    except AudioError as exc:
        row.update(status="quarantined", reason=str(exc))
        return row
    row["duration"] = frames / info.sample_rate
    promised = max(info.frames or 0, declared_frames(path) or 0)
    if promised and frames < promised:
        notes.append(f"truncated: header promises {promised} frames, {frames} decoded")
    row["frames"] = frames
    if row["duration"] < MIN_SONG_SECONDS:
        reason = f"too short: {row['duration']:.2f} s of audio, need {MIN_SONG_SECONDS:g} s"
        row.update(status="quarantined", reason=reason)
        return row
    if audio.non_finite:
        notes.append(f"{audio.non_finite} non-finite samples set to 0")
    if audio.clipped_fraction > 0.01:
        notes.append(f"{audio.clipped_fraction:.1%} of samples at full scale (clipping)")
    if audio.source_channels > 1:
        notes.append(f"{audio.source_channels} channels mixed to mono")
    if audio.source_sr < FULL_BAND_SAMPLE_RATE:
        notes.append(f"low sample rate {audio.source_sr} Hz: upsampled, nothing above {audio.source_sr // 2} Hz")
    if float(audio.y.std()) == 0.0:
        notes.append("digital silence")
    row["notes"] = "; ".join(notes) or None
    return row


def check_folder(root: str | os.PathLike[str]) -> Path:
    """``root``, resolved, once it is an existing folder; :class:`ParameterError` otherwise."""
    root = Path(root).expanduser()
    if not root.exists():
        raise ParameterError(f"audio folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise ParameterError(f"audio folder {str(root)!r} is not a folder")
    return root.resolve()


def scan(root: str | os.PathLike[str], *, progress: Callable[[int, int], None] | None = None,
         workers: int | None = None, naming: Naming = GENERIC) -> pl.DataFrame:
    """Catalog every audio file of a labelled folder, ``<root>/<label>/<audio files>``.

    Parameters
    ----------
    root : path
        The folder of the label folders.
    progress : callable(done, total), optional
        Called after each file.
    workers : int, optional
        Processes that hash and decode files (default: CPU count; folders of fewer than
        :data:`PARALLEL_MIN_FILES` files are read in this process).
    naming : Naming, optional
        The dataset's song ids and label set (default: ids are paths, any label).

    Returns
    -------
    pl.DataFrame
        One row per file with the columns of :data:`CATALOG_SCHEMA`, sorted by label and
        song id. Identical files are flagged: every copy after the first has
        ``duplicate_of`` set to the first copy's song id.

    Raises
    ------
    ParameterError
        If the folder is missing or holds no label folders or no files.
    """
    genre_root = check_folder(root)
    files, odd = _list_files(genre_root)
    if not files and not odd:
        raise ParameterError(f"audio folder {str(genre_root)!r} holds no audio files")
    return scan_files(genre_root, files, odd=odd, progress=progress, workers=workers, naming=naming)


def scan_files(genre_root: Path, files: Sequence[tuple[str, Path]], *, odd: Sequence[dict] = (),
               progress: Callable[[int, int], None] | None = None, workers: int | None = None,
               naming: Naming = GENERIC) -> pl.DataFrame:
    """Catalog ``files`` (``(label, path)`` under ``genre_root``) as :func:`scan` does; ``odd``
    are rows already quarantined."""
    rows: list[dict] = [{}] * len(files)
    from feature_store.procs import pool_size

    n_workers = pool_size(workers, len(files))
    if n_workers <= 1 or len(files) < PARALLEL_MIN_FILES:
        for i, (genre, f) in enumerate(files):
            rows[i] = inspect_file(f, genre_root=genre_root, genre=genre, naming=naming)
            if progress is not None:
                progress(i + 1, len(files))
    else:
        from concurrent.futures import as_completed

        from feature_store.procs import worker_pool

        with worker_pool(n_workers, what="ingest") as pool:
            futs = {pool.submit(inspect_file, f, genre_root=genre_root, genre=g, naming=naming): i
                    for i, (g, f) in enumerate(files)}
            for done, fut in enumerate(as_completed(futs), 1):
                rows[futs[fut]] = fut.result()
                if progress is not None:
                    progress(done, len(files))
    df = pl.DataFrame([*rows, *odd], schema=CATALOG_SCHEMA)
    return _flag_duplicates(_unique_song_ids(df).sort("genre", "song_id"))


def _list_files(genre_root: Path) -> tuple[list[tuple[str, Path]], list[dict]]:
    """The non-hidden entries of each genre folder, as (genre, path), and a quarantined row for
    each entry of ``genre_root`` that looks like a genre folder but cannot be listed (a broken or
    looping link, a FIFO...): nothing there is opened (see :func:`entry_problem`)."""
    files: list[tuple[str, Path]] = []
    odd: list[dict] = []
    for gdir in sorted(p for p in genre_root.iterdir() if not p.name.startswith(".")):
        if gdir.is_dir():
            files.extend((gdir.name, f) for f in sorted(gdir.iterdir()) if not f.name.startswith("."))
            continue
        problem = entry_problem(gdir, genre_root=genre_root)  # None for a regular file (a README): not audio
        if problem is not None:
            row = dict.fromkeys(CATALOG_SCHEMA)
            row.update(song_id=f"{gdir.name}/", genre=gdir.name, path=gdir.name, status="quarantined", reason=problem)
            odd.append(row)
    return files, odd


def _unique_song_ids(df: pl.DataFrame) -> pl.DataFrame:
    """Keep one file per GTZAN song id (the first usable one by path); every other file of that
    id gets its path as id (``<genre>/<file name>``, unique) and is quarantined."""
    if not df["song_id"].is_duplicated().any():
        return df
    df = df.with_row_index("_i").sort(pl.col("status") != "ok", "path")
    kept: dict[str, str] = {}
    ids, status, reason = [], [], []
    for sid, rel, st, why in df.select("song_id", "path", "status", "reason").iter_rows():
        if sid not in kept:
            kept[sid] = rel
            ids.append(sid)
            status.append(st)
            reason.append(why)
            continue
        ids.append(rel)  # the file's path: unique, what the generic rule gives
        status.append("quarantined")
        reason.append(why if st != "ok" else f"duplicate song id of {sid} ({kept[sid]})")
    df = df.with_columns(pl.Series("song_id", ids, pl.String), pl.Series("status", status, pl.String),
                         pl.Series("reason", reason, pl.String))
    return df.sort("_i").drop("_i")


def _flag_duplicates(df: pl.DataFrame) -> pl.DataFrame:
    first = (
        df.filter(pl.col("sha256").is_not_null())
        .group_by("sha256", maintain_order=True)
        .agg(pl.col("song_id").first().alias("_first"))
    )
    df = df.drop("duplicate_of").join(first, on="sha256", how="left")
    df = df.with_columns(
        pl.when(pl.col("_first") != pl.col("song_id")).then(pl.col("_first")).otherwise(None).alias("duplicate_of")
    ).drop("_first")
    return df.select(list(CATALOG_SCHEMA))


def write_catalog(df: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write the catalog to Parquet atomically."""
    return write_parquet_atomic(path, df)


def read_catalog(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Read a catalog written by :func:`write_catalog`, its page checksums verified.

    Raises
    ------
    IntegrityError
        If the file is damaged (one line naming it: ingest again to rewrite it).
    """
    from feature_store.integrity import read_parquet

    return read_parquet(path, schema=CATALOG_SCHEMA, remedy="run `gtzan ingest` again to rewrite it")
