"""Verifying a published generation: every file readable, every row matching its checksum.

:func:`verify_generation` reads a generation the way a reader would, in bounded blocks, and
reports what is damaged: files that cannot be read, a torn index, and each row whose digest
does not match (by clip id and song). The build uses it before it calls a clip length
``unchanged`` (a damaged generation counts as absent), the sanity checks on all or a seeded
sample of rows, and ``gtzan features verify`` on every current generation.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from feature_store import h5 as h5lib
from feature_store import integrity, manifest
from feature_store.engine.index import INDEX_FILE, ids_digest, index_schema, read_index, table_schema
from feature_store.engine.view import FeatureView
from feature_store.integrity import IntegrityError, digest_column, first_line

#: Rows read at once while verifying (bounded memory on any store size).
VERIFY_BLOCK_ROWS = 256


@dataclasses.dataclass
class GenerationCheck:
    """What :func:`verify_generation` found in one generation.

    Attributes
    ----------
    generation : Path
    clips : int
        Rows of the index (0 when it cannot be read).
    rows_checked : int
        Rows whose digests were compared (per array).
    problems : list of str
        One line per damaged file or row; empty when the generation is sound.
    damaged_songs : list of str
        Songs with a damaged row (their rows are recomputed by a repair).
    whole : bool
        The damage is not confined to rows (an unreadable index, file or table): the whole
        clip length must be written again.
    non_finite : int
        NaN or infinite values in the rows checked (a sound file can hold them: a view that
        computed them; the sanity checks report them).
    shapes : dict of str to tuple
        The shape of each HDF5 array.
    """

    generation: Path
    clips: int = 0
    rows_checked: int = 0
    non_finite: int = 0
    shapes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)
    damaged_songs: list[str] = dataclasses.field(default_factory=list)
    whole: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_generation(gen: Path, view: FeatureView, clip_seconds: int, *, sample: int | None = None,
                      seed: int = 0) -> GenerationCheck:
    """Check one generation of a view (see the module docstring).

    Parameters
    ----------
    gen : path
    view : FeatureView
    clip_seconds : int
    sample : int, optional
        Check the digests of this many rows, drawn with ``seed``, instead of every row.
    """
    out = GenerationCheck(gen)
    try:
        index = read_index(gen, index_schema(view, clip_seconds))
    except (IntegrityError, FileNotFoundError) as exc:
        out.problems.append(str(exc))
        out.whole = True
        return out
    index = index.sort("hdf5_row")
    out.clips = index.height
    specs = view.array_specs(clip_seconds)
    expected = [INDEX_FILE, view.data_file, *(f"{s.name}.parquet" for s in specs if s.columns)]
    listed = manifest.verify_files(gen, expected=expected)
    for spec in (s for s in specs if s.columns):
        _check_table(gen / f"{spec.name}.parquet", spec, index, out)
    rows = np.arange(index.height)
    if sample is not None and sample < index.height:
        rows = np.sort(np.random.default_rng(seed).choice(index.height, size=sample, replace=False))
    try:
        with h5lib.h5py().File(gen / view.data_file, "r") as h5:
            if h5.attrs.get("index_sha256") != ids_digest(index["clip_id"].to_list()):
                out.problems.append(f"torn store at {gen}: the rows of {view.data_file} do not match index.parquet; "
                                    f"{integrity.REPAIR_FEATURES}")
                out.whole = True
                return out
            for spec in (s for s in specs if s.hdf5):
                _check_array(h5, spec, index, rows, out)
    except (OSError, KeyError, RuntimeError, ValueError) as exc:  # h5py on a damaged file
        out.problems.append(f"{gen / view.data_file} cannot be read ({first_line(exc)}): the file is damaged; "
                            f"{integrity.REPAIR_FEATURES}")
        out.whole = True
    out.damaged_songs = sorted(set(out.damaged_songs))
    _add_manifest_problems(out, listed, gen / view.data_file)
    return out


def _add_manifest_problems(out: GenerationCheck, listed: list[str], data_file: Path) -> None:
    """Add what the manifest check found that the row checks did not already explain.

    An HDF5 file whose damaged rows were found is repaired row by row; any other file that
    does not match the manifest means the clip length must be written again.
    """
    for problem in listed:
        if problem.startswith(f"{data_file} ") and out.damaged_songs:
            continue  # the damaged rows are already reported, each with its clip
        out.problems.append(problem)
        out.whole = True


def _check_table(path: Path, spec: Any, index: Any, out: GenerationCheck) -> None:
    try:
        table = integrity.read_parquet(path, schema=table_schema(spec))
    except (IntegrityError, FileNotFoundError) as exc:
        out.problems.append(str(exc))
        out.whole = True
        return
    if table["clip_id"].to_list() != index["clip_id"].to_list():
        out.problems.append(f"torn store: the clip ids of {path} do not match the index; {integrity.REPAIR_FEATURES}")
        out.whole = True


def _check_array(h5: Any, spec: Any, index: Any, rows: np.ndarray, out: GenerationCheck) -> None:
    from feature_store.engine.read import check_dataset, read_rows

    col = digest_column(spec.name)
    path = Path(h5.filename)
    if spec.name not in h5 or col not in index.columns:
        what = f"no array {spec.name!r}" if spec.name not in h5 else f"no {col} checksums in its index"
        out.problems.append(f"{path}: {what}; {integrity.REPAIR_FEATURES}")
        out.whole = True
        return
    ds = h5[spec.name]
    out.shapes[spec.name] = tuple(ds.shape)
    try:
        check_dataset(ds, spec, index.height)
    except IntegrityError as exc:
        out.problems.append(str(exc))
        out.whole = True
        return
    expected = index[col].to_numpy()
    ids, songs = index["clip_id"].to_list(), index["song_id"].to_list()
    for start in range(0, rows.size, VERIFY_BLOCK_ROWS):
        block = rows[start: start + VERIFY_BLOCK_ROWS]
        try:
            values = read_rows(ds, block)
            out.non_finite += int(values.size - np.count_nonzero(np.isfinite(values)))
        except (OSError, KeyError, RuntimeError, ValueError):  # a chunk that does not decompress: row by row
            values = None
        for k, row in enumerate(block):
            try:
                value = values[k] if values is not None else read_rows(ds, np.asarray([row]))[0]
                good = integrity.digest(np.ascontiguousarray(value)) == int(expected[row])
            except (OSError, KeyError, RuntimeError, ValueError):
                good = False
            if not good:
                out.problems.append(f"{path}: clip {ids[row]} ({spec.name}) fails its checksum, the stored data is "
                                    f"damaged; {integrity.REPAIR_FEATURES}")
                out.damaged_songs.append(songs[row])
        out.rows_checked += block.size
