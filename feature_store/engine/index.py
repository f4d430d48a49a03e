"""The Parquet index of a clip length: one row per clip, and the queries over it.

Every view has the same clips, made here from the catalog and the clip geometry
(:class:`~feature_store.params.FeatureParams`), so a clip has one ``clip_id`` in every view
and they join. The index rows are in HDF5 row order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from feature_store import integrity, manifest
from feature_store.errors import ParameterError
from feature_store.features import clip_starts
from feature_store.integrity import DIGEST_PREFIX
from feature_store.params import FeatureParams
from feature_store.tables import EXCLUDED, SCHEMES, label_order, validate_scheme

INDEX_FILE = "index.parquet"
#: Columns every index has, in order (the split schemes, ``clip_seconds``, ``frames`` and
#: ``hdf5_row`` follow, then the view's own constant columns).
INDEX_SCHEMA: dict[str, pl.DataType] = {
    "clip_id": pl.String(), "song_id": pl.String(), "genre": pl.String(), "label": pl.Int64(),
    "sha256": pl.String(), "segment": pl.Int64(), "start_seconds": pl.Float64(), "start_frame": pl.Int64(),
}


def clip_id(song_id: str, clip_seconds: int, segment: int) -> str:
    """``blues.00001#05s#00``: unique per song, clip length and segment."""
    return f"{song_id}#{clip_seconds:02d}s#{segment:02d}"


def target_index(
    params: FeatureParams, clip_seconds: int, songs: pl.DataFrame, splits: pl.DataFrame,
    extra: dict[str, int] | None = None, *, labels: Sequence[str] | None = None,
) -> pl.DataFrame:
    """The index a clip length should have for ``songs`` (catalog rows) and the split table.

    Rows are sorted by genre, song and segment; ``hdf5_row`` numbers them. A song yields
    the clips of :func:`feature_store.features.clip_starts` (none when it is too short).
    ``label`` is the position of the song's ``genre`` in ``labels`` (default: the sorted labels
    of ``songs``).
    """
    codes = {g: i for i, g in enumerate(labels if labels is not None else label_order(songs["genre"]))}
    missing = sorted(set(songs["genre"].to_list()) - set(codes))
    if missing:
        raise ParameterError(f"label {missing[0]!r} of the catalog is not in the store's label set {list(codes)}; "
                             "ingest again (`gtzan ingest`)")
    rows = []
    for sid, genre, sha, duration in songs.select("song_id", "genre", "sha256", "duration").iter_rows():
        for seg, start in clip_starts(params=params, clip_seconds=clip_seconds, duration=duration):
            rows.append((clip_id(sid, clip_seconds, seg), sid, genre, codes[genre], sha, seg,
                         start * params.hop_length / params.sr, start))
    index = pl.DataFrame(rows, schema=INDEX_SCHEMA, orient="row").sort("genre", "song_id", "segment")
    scheme_cols = [s for s in SCHEMES if s in splits.columns]
    index = index.join(splits.select("song_id", *scheme_cols), on="song_id", how="left")
    index = index.with_columns([pl.col(s).fill_null(EXCLUDED) for s in scheme_cols])
    index = index.with_columns(
        pl.lit(clip_seconds, pl.Int64).alias("clip_seconds"),
        pl.lit(params.clip_frames(clip_seconds), pl.Int64).alias("frames"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("hdf5_row"),
    )
    if extra:
        index = index.with_columns([pl.lit(v, pl.Int64).alias(k) for k, v in extra.items()])
    return index


def status_against(current_index: pl.DataFrame | None, target: pl.DataFrame) -> str:
    """``unchanged`` (same rows and columns), ``reindexed`` (same clips and content, other
    index values: the arrays can be linked) or ``built`` (arrays rewritten).

    The current index's row digests (``xxh3_*``) are not part of the comparison; an index
    without them (written before they existed) counts as absent, so it is rebuilt with them.
    """
    if current_index is None:
        return "built"
    digests = [c for c in current_index.columns if c.startswith(DIGEST_PREFIX)]
    if not digests:
        return "built"
    old = current_index.drop(digests)
    if not old.select("clip_id", "sha256").equals(target.select("clip_id", "sha256")):
        return "built"
    return "unchanged" if old.columns == target.columns and old.equals(target) else "reindexed"


def read_index(gen: Path, schema: dict[str, pl.DataType] | None = None) -> pl.DataFrame:
    """The index of generation ``gen``, its page checksums (and ``schema``, if given) verified.

    Its size and sha256 are checked against the generation's manifest, on the very bytes that
    are parsed: an index rewritten with valid page checksums (other labels, other rows) is
    refused.
    """
    optional = [c for c in (schema or {}) if c.startswith(DIGEST_PREFIX)]  # older stores have no digests
    return integrity.read_parquet(gen / INDEX_FILE, required=list(INDEX_SCHEMA), schema=schema, optional=optional,
                                  listed=manifest.listed(gen, INDEX_FILE))


def index_schema(view: Any, clip_seconds: int) -> dict[str, pl.DataType]:
    """The exact columns and types of a generation's index that ``view`` writes."""
    return {
        **INDEX_SCHEMA,
        **{s: pl.String() for s in SCHEMES},
        "clip_seconds": pl.Int64(), "frames": pl.Int64(), "hdf5_row": pl.Int64(),
        **{k: pl.Int64() for k in view.index_columns(clip_seconds)},
        **{integrity.digest_column(s.name): pl.UInt64() for s in view.array_specs(clip_seconds) if s.hdf5},
    }


def table_schema(spec: Any) -> dict[str, pl.DataType]:
    """The exact columns and types of a view's Parquet table."""
    return {"clip_id": pl.String(), "song_id": pl.String(), "genre": pl.String(),
            **{c: pl.Float32() for c in spec.columns}}


def write_index(index: pl.DataFrame, gen: Path) -> None:
    """Write a generation's index with page checksums.

    Every new reader reads the whole index before its first row, so it is stored for reading
    speed: lz4 without dictionaries decodes in about half the time of zstd (the sha256 column
    does not compress anyway), for a file under twice the size (BENCHMARKS.md, feature store).
    """
    integrity.write_parquet(index, gen / INDEX_FILE, compression="lz4", use_dictionary=False)


def ids_digest(clip_ids: list[str]) -> str:
    """sha256 of the clip ids in row order: ties an HDF5 file to the index of its rows."""
    return hashlib.sha256("\n".join(clip_ids).encode()).hexdigest()


def predicates(
    *, genre: Any, split: Any, scheme: str, song_ids: Any, source: pl.DataFrame | None = None,
    gen: Path | None = None,
) -> list[pl.Expr]:
    """The filters of a query on an index, after checking every argument.

    ``source`` is the index in memory (or ``gen`` the generation whose index to scan), for
    the parts of the ``stratified`` scheme.
    """
    validate_scheme(scheme)
    preds: list[pl.Expr] = []
    if genre is not None:
        genres = [genre] if isinstance(genre, str) else list(genre)
        if source is None and gen is None and not all(isinstance(g, str) for g in genres):
            raise ParameterError(f"unknown genre {next(g for g in genres if not isinstance(g, str))!r}")
        _known_labels(genres, source, gen)
        preds.append(pl.col("genre").is_in(genres))
    if split is not None:
        parts = [split] if isinstance(split, str) else list(split)
        valid = scheme_parts(scheme, source=source, gen=gen)
        for s in parts:
            if s not in valid:
                raise ParameterError(f"unknown split {s!r} for scheme {scheme!r}; valid splits are {valid}")
        preds.append(pl.col(scheme).is_in(parts))
    if song_ids is not None:
        if isinstance(song_ids, str):
            raise ParameterError("song_ids must be a list of song ids, not one string")
        preds.append(pl.col("song_id").is_in(list(song_ids)))
    return preds


def store_labels_of(*, source: pl.DataFrame | None = None, gen: Path | None = None) -> list[str] | None:
    """The labels of an index (``source``, or generation ``gen``'s), in label order; None
    when neither is given."""
    if source is None and gen is None:
        return None
    index = source if source is not None else read_index(gen)
    return index.select("genre", "label").unique().sort("label")["genre"].to_list()


def _known_labels(genres: list[Any], source: pl.DataFrame | None, gen: Path | None) -> None:
    """Refuse a label the index does not hold, naming the valid ones (their list is only made
    for the message: a query that names known labels pays one pass over one column)."""
    if source is None and gen is None:
        return
    index = source if source is not None else read_index(gen)
    present = set(index.get_column("genre").unique().to_list())
    for g in genres:
        if not isinstance(g, str) or g not in present:
            raise ParameterError(f"unknown genre {g!r}; valid genres are {store_labels_of(source=index)}")


def scheme_parts(scheme: str, *, source: pl.DataFrame | None = None, gen: Path | None = None) -> list[str]:
    """The parts a query may name for ``scheme`` (``stratified``'s depend on the store)."""
    if scheme == "seed":
        return ["train", "test", EXCLUDED]
    if scheme == "fault_filtered":
        return ["train", "valid", "test", EXCLUDED]
    if source is not None:
        values = source[scheme]
    elif gen is not None:
        values = read_index(gen)[scheme]
    else:
        values = pl.Series(scheme, [], pl.String)
    return sorted(set(values.to_list()) | {EXCLUDED})


def query(gen: Path, *, genre: Any, split: Any, scheme: str, song_ids: Any,
          source: pl.DataFrame | None = None, schema: dict[str, pl.DataType] | None = None) -> pl.LazyFrame:
    """Filter the index of generation ``gen``; bad arguments name the valid values.

    ``source`` is that generation's index already in memory (the files of a generation never
    change once published, so readers may keep it); otherwise the Parquet file is scanned.
    """
    # read whole and checked (page checksums), never pruned by a file's own statistics
    source = source if source is not None else read_index(gen, schema)
    lf = source.lazy().drop([c for c in source.columns if c.startswith(DIGEST_PREFIX)])
    preds = predicates(genre=genre, split=split, scheme=scheme, song_ids=song_ids, source=source, gen=gen)
    return lf.filter(*preds) if preds else lf


def public(index: pl.DataFrame) -> pl.DataFrame:
    """The index without its row digests (an integrity detail that queries do not return)."""
    return index.drop([c for c in index.columns if c.startswith(DIGEST_PREFIX)])
