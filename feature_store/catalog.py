"""The audio catalog: every file of a GTZAN folder, validated, as a polars DataFrame.

Both layouts are read:

* Kaggle: ``<root>/genres_original/<genre>/<genre>.000NN.wav``
* original (Marsyas): ``<root>/genres/<genre>/<genre>.000NN.au``

``root`` may also be the genres folder itself. Any format that libsndfile decodes is
accepted (the shared development clips are FLAC). A file that cannot be used is kept in
the catalog with ``status = "quarantined"`` and a ``reason``; it never stops the build.
"""

from __future__ import annotations

import hashlib
import os
import re
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def inspect_file(path: Path, *, genre_root: Path, genre: str) -> dict:
    """Validate one file: hash it, check its header (:func:`~feature_store.audio.probe`),
    decode what the store will use (the nominal 30 s and a margin) and learn its true length
    (:func:`~feature_store.audio.count_frames`) without decoding the rest.

    Returns one catalog row (a dict with the keys of :data:`CATALOG_SCHEMA`).
    """
    rel = path.relative_to(genre_root).as_posix()
    stem = path.stem
    m = SONG_RE.match(stem)
    number = int(m["number"]) if m and m["genre"] == genre else None
    song_id = stem if number is not None else f"{genre}/{stem}"
    row: dict = dict.fromkeys(CATALOG_SCHEMA)
    row.update(song_id=song_id, genre=genre, number=number, path=rel, status="ok", reason=None)
    notes: list[str] = []
    try:
        resolve_in_root(genre_root, rel)
    except ParameterError:
        row.update(status="quarantined", reason="symbolic link to a file outside the audio folder")
        return row
    try:
        row["bytes"] = path.stat().st_size
        row["sha256"] = _sha256(path)
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
    files: list[tuple[str, Path]] = []
    for gdir in sorted(p for p in genre_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(gdir.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                files.append((gdir.name, f))
    if not files:
        raise ParameterError(f"audio folder {str(genre_root)!r} holds no audio files")
    rows: list[dict] = [{}] * len(files)
    n_workers = min(workers or os.cpu_count() or 1, len(files))
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
    df = pl.DataFrame(rows, schema=CATALOG_SCHEMA).sort("genre", "song_id")
    df = _dedupe_song_ids(df)
    return _flag_duplicates(df)


def _dedupe_song_ids(df: pl.DataFrame) -> pl.DataFrame:
    """Two files with one stem (``x.wav`` and ``x.au``) get distinct ids: the path wins."""
    dup = df["song_id"].is_duplicated()
    if not dup.any():
        return df
    return df.with_columns(
        pl.when(dup).then(pl.col("genre") + "/" + pl.col("path").str.split("/").list.last()).otherwise(pl.col("song_id")).alias("song_id")
    )


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
