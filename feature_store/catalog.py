"""The audio catalog: every file of a GTZAN folder, validated, as a polars DataFrame.

Both layouts are read:

* Kaggle: ``<root>/genres_original/<genre>/<genre>.000NN.wav``
* original (Marsyas): ``<root>/genres/<genre>/<genre>.000NN.au``

``root`` may also be the genres folder itself. Any format that libsndfile decodes is
accepted (the shared development clips are FLAC). A file that cannot be used is kept in
the catalog with ``status = "quarantined"`` and a ``reason``; it never stops the build.

Song ids are unique by construction (:func:`song_id_of`): a file named
``<genre>.000NN.<ext>`` in its genre's folder has the id ``<genre>.000NN`` (the id of the
split lists, whatever the layout or format); any other file has ``<genre>/<file name>``,
extension included, so ``foo.wav``, ``foo.au`` and ``foo.wav.wav`` get three ids. Two files
of one GTZAN number (``rock.00001.au`` and ``rock.00001.wav``) cannot both be that song: the
first usable one by path keeps the id, the other gets its path as id and is quarantined,
``duplicate song id of rock.00001 (rock/rock.00001.au)``.

Only regular files are read. Anything else in a genre folder (a sub-folder, a FIFO, a
socket, a device, a broken or looping symbolic link, one that leaves the audio folder) is
listed as quarantined with the reason, from ``lstat``/``stat`` alone: it is never opened (a
FIFO would block the open), and a regular file is opened with ``O_NONBLOCK`` and checked
again on its descriptor.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

import polars as pl

from feature_store.atomic import write_parquet_atomic
from feature_store.audio import count_frames, declared_frames, decode, probe
from feature_store.errors import AudioError, ParameterError
from feature_store.params import GENRES, NOMINAL_SECONDS

LAYOUT_FOLDERS: dict[str, str] = {"kaggle": "genres_original", "original": "genres"}
#: Below this many files the catalog is read in one process (spawning costs ~1 s).
PARALLEL_MIN_FILES = 200
#: Files with less audio than this cannot give even one 1 s clip and are quarantined.
MIN_SONG_SECONDS = 1.0
#: GTZAN's sample rate; files recorded at a lower rate get a note (they lack the top bands).
GTZAN_SAMPLE_RATE = 22050
SONG_RE = re.compile(r"^(?P<genre>[a-z]+)\.(?P<number>\d{5})$")

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
    if not root.exists():
        raise ParameterError(f"audio folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise ParameterError(f"audio folder {str(root)!r} is not a folder")
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


def _sha256(path: Path) -> tuple[int, str]:
    """Size and sha256 of a regular file, opened without blocking and checked on its
    descriptor (a FIFO swapped in after the listing is refused, not waited on)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb", closefd=True) as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{_kind(st.st_mode)}, not a regular file")
        h = hashlib.sha256()
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return st.st_size, h.hexdigest()


def _kind(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words."""
    kinds = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((name for test, name in kinds if test(mode)), "a special file")


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


def song_id_of(genre: str, name: str) -> tuple[str, int | None]:
    """The song id and GTZAN number of the file ``name`` in the folder ``genre``.

    ``<genre>.000NN.<ext>`` gives ``(<genre>.000NN, NN)``; any other name gives
    ``(<genre>/<name>, None)``, extension included, so that two files never share an id
    (only two GTZAN files of one number can: :func:`scan` keeps one).
    """
    stem, ext = os.path.splitext(name)
    m = SONG_RE.match(stem)
    if ext and m and m["genre"] == genre:
        return stem, int(m["number"])
    return f"{genre}/{name}", None


def inspect_file(path: Path, *, genre_root: Path, genre: str) -> dict:
    """Validate one file: hash it, check its header (:func:`~feature_store.audio.probe`),
    decode what the store will use (the nominal 30 s and a margin) and learn its true length
    (:func:`~feature_store.audio.count_frames`) without decoding the rest.

    Returns one catalog row (a dict with the keys of :data:`CATALOG_SCHEMA`).
    """
    rel = path.relative_to(genre_root).as_posix()
    song_id, number = song_id_of(genre, path.name)
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
    if genre not in GENRES:
        row.update(status="quarantined", reason=f"folder {genre!r} is not a GTZAN genre")
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
    if audio.source_sr < GTZAN_SAMPLE_RATE:
        notes.append(f"low sample rate {audio.source_sr} Hz: upsampled, nothing above {audio.source_sr // 2} Hz")
    if float(audio.y.std()) == 0.0:
        notes.append("digital silence")
    row["notes"] = "; ".join(notes) or None
    return row


def scan(
    root: str | os.PathLike[str],
    *,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> pl.DataFrame:
    """Catalog every audio file under a GTZAN folder.

    Parameters
    ----------
    root : path
        A GTZAN copy or its genres folder (see :func:`find_genre_root`).
    progress : callable(done, total), optional
        Called after each file.
    workers : int, optional
        Processes that hash and decode files (default: CPU count; folders of fewer than
        :data:`PARALLEL_MIN_FILES` files are read in this process).

    Returns
    -------
    pl.DataFrame
        One row per file with the columns of :data:`CATALOG_SCHEMA`, sorted by genre and
        song id. Identical files are flagged: every copy after the first has
        ``duplicate_of`` set to the first copy's song id.

    Raises
    ------
    ParameterError
        If the folder is missing or holds no genre folders or no files.
    """
    genre_root, _layout = find_genre_root(root)
    files, odd = _list_files(genre_root)
    if not files and not odd:
        raise ParameterError(f"audio folder {str(genre_root)!r} holds no audio files")
    rows: list[dict] = [{}] * len(files)
    from feature_store.procs import pool_size

    n_workers = pool_size(workers, len(files))
    if n_workers <= 1 or len(files) < PARALLEL_MIN_FILES:
        for i, (genre, f) in enumerate(files):
            rows[i] = inspect_file(f, genre_root=genre_root, genre=genre)
            if progress is not None:
                progress(i + 1, len(files))
    else:
        from concurrent.futures import as_completed

        from feature_store.procs import worker_pool

        with worker_pool(n_workers, what="ingest") as pool:
            futs = {pool.submit(inspect_file, f, genre_root=genre_root, genre=g): i for i, (g, f) in enumerate(files)}
            for done, fut in enumerate(as_completed(futs), 1):
                rows[futs[fut]] = fut.result()
                if progress is not None:
                    progress(done, len(files))
    df = pl.DataFrame(rows + odd, schema=CATALOG_SCHEMA)
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
        ids.append(rel)  # <genre>/<file name>: what song_id_of gives a name that is not GTZAN's
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


#: The file, beside the catalog, that records the genres folder the catalog's paths are under.
AUDIO_SOURCE_FILE = "audio_source.json"
#: The largest audio-source record read back (it holds one path).
AUDIO_SOURCE_MAX_BYTES = 64 * 1024


def write_audio_source(store_root: str | os.PathLike[str], genre_root: str | os.PathLike[str]) -> Path:
    """Record (atomically, with a checksum) the genres folder a store's catalog was made from,
    so that a repair can find the audio again without being told (:func:`recorded_genre_root`)."""
    from feature_store.atomic import write_json_atomic
    from feature_store.integrity import with_checksum

    doc = with_checksum({"genre_root": str(Path(genre_root).resolve())})
    return write_json_atomic(Path(store_root) / AUDIO_SOURCE_FILE, doc)


def recorded_genre_root(store_root: str | os.PathLike[str]) -> Path | None:
    """The genres folder :func:`write_audio_source` recorded, or None when there is none (a
    store ingested before the record existed). The folder is only ever read, and only files
    whose sha256 matches the catalog are used from it.

    Raises
    ------
    IntegrityError
        The record is larger than :data:`AUDIO_SOURCE_MAX_BYTES`, not JSON, or fails its checksum.
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
    value = read_json(path, remedy=remedy).get("genre_root")
    if not isinstance(value, str) or not os.path.isabs(value):
        raise IntegrityError(f"{path} does not name an absolute folder: the file is damaged; {remedy}")
    return Path(value)


def file_sha256(path: Path) -> str | None:
    """The sha256 of the regular file ``path`` (opened without blocking), or None when it is
    missing, unreadable or not a regular file (nothing but a regular file is read)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        return _sha256(path)[1]
    except OSError:
        return None


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
