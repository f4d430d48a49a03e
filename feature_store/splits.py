"""Train / held-out split schemes, one column per scheme, and a leakage check.

Schemes
-------
``seed``
    The study's split: the last 10 % of the songs of each label (by file number, then song
    id) are ``test``, at least one song. A dataset may give its own (a csv ``split`` column).
``stratified``
    Seeded, label-stratified k-fold assignment: ``fold0`` ... ``fold{k-1}``.
``fault_filtered``
    A dataset's own fixed split (GTZAN's artist-conflict-free split, see
    :mod:`feature_store.datasets.gtzan`); every song is ``excluded`` in a dataset without one.

Both computed schemes work for any label set: they group by the catalog's ``genre`` (label)
column.

Quarantined files and songs absent from a scheme's lists are ``excluded``. Byte-identical
copies of one file (GTZAN repeats some songs) are kept in one part of every scheme: each copy
takes the part of the first copy that the scheme uses, so a repetition never leaks between
training and held-out songs (see :func:`keep_copies_together`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl

from feature_store.atomic import write_parquet_atomic
from feature_store.errors import ParameterError, StoreError
from feature_store.params import SEED_HOLDOUT_PER_GENRE

from feature_store.tables import EXCLUDED, SCHEME_PARTS, SCHEMES, SPLITS_SCHEMA, validate_scheme


def seed_split(catalog: pl.DataFrame, *, holdout_share: float = SEED_HOLDOUT_PER_GENRE / 100) -> pl.Series:
    """The study's split: the last songs of each label by file number are ``test``.

    Returns
    -------
    pl.Series [shape=(len(catalog),)]
        ``train``, ``test`` or ``excluded``, aligned with ``catalog``.
    """
    out = np.full(catalog.height, EXCLUDED, dtype=object)
    ok = catalog.with_row_index("_i").filter(pl.col("status") == "ok")
    for _genre, group in ok.group_by("genre", maintain_order=True):
        group = group.sort(["number", "song_id"], nulls_last=True)
        n = group.height
        n_test = max(1, int(round(n * holdout_share)))
        idx = group["_i"].to_numpy()
        out[idx] = "train"
        out[idx[n - n_test :]] = "test"
    return pl.Series("seed", out.tolist(), dtype=pl.String)


def stratified_folds(catalog: pl.DataFrame, *, k: int = 5, seed: int = 0) -> pl.Series:
    """Seeded label-stratified k-fold assignment (``fold0`` ... ``fold{k-1}``).

    Within each label the songs are shuffled with ``seed`` and dealt round-robin, so fold
    sizes differ by at most one song per genre.
    """
    from feature_store.bounds import MAX_SEED

    if not isinstance(k, int) or k < 2:
        raise ParameterError(f"k must be an integer >= 2, got {k!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ParameterError(f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}")
    out = np.full(catalog.height, EXCLUDED, dtype=object)
    ok = catalog.with_row_index("_i").filter(pl.col("status") == "ok")
    rng = np.random.default_rng(seed)
    for _genre, group in ok.sort("genre", "song_id").group_by("genre", maintain_order=True):
        idx = group["_i"].to_numpy()
        perm = rng.permutation(idx.size)
        for j, p in enumerate(perm):
            out[idx[p]] = f"fold{j % k}"
    return pl.Series("stratified", out.tolist(), dtype=pl.String)


def keep_copies_together(catalog: pl.DataFrame, parts: pl.Series) -> pl.Series:
    """Put byte-identical copies (same ``sha256``) in the part of their first used copy.

    Parameters
    ----------
    catalog : pl.DataFrame
        With ``sha256`` and ``status``, aligned with ``parts``.
    parts : pl.Series
        One scheme's parts. Copies that are ``excluded`` stay excluded; every other copy takes
        the part of the first non-excluded copy in catalog order.

    Returns
    -------
    pl.Series
        ``parts`` with copies moved, same name and length.
    """
    df = pl.DataFrame({"sha": catalog["sha256"], "part": parts}).with_row_index("_i")
    used = (pl.col("part") != EXCLUDED) & pl.col("sha").is_not_null()
    first = df.filter(used).group_by("sha", maintain_order=True).agg(pl.col("part").first().alias("_first"))
    out = df.join(first, on="sha", how="left").sort("_i")
    moved = out.select(pl.when(used & pl.col("_first").is_not_null()).then(pl.col("_first")).otherwise(pl.col("part")))
    return moved.to_series().alias(parts.name)


def make_splits(catalog: pl.DataFrame, *, k: int = 5, seed: int = 0,
                given: Mapping[str, pl.Series] | None = None) -> pl.DataFrame:
    """The split table: ``song_id``, ``genre``, ``sha256`` and one column per scheme.

    ``given`` holds the schemes a dataset decides itself (aligned with ``catalog``); the
    others are computed (``fault_filtered``: every song ``excluded``). Byte-identical copies
    are kept in one part of each scheme (:func:`keep_copies_together`).
    """
    given = dict(given or {})
    unknown = sorted(set(given) - set(SCHEMES))
    if unknown:
        raise ParameterError(f"unknown split scheme {unknown[0]!r}; valid schemes are {list(SCHEMES)}")
    computed = {
        "seed": lambda: seed_split(catalog),
        "stratified": lambda: stratified_folds(catalog, k=k, seed=seed),
        "fault_filtered": lambda: pl.Series("fault_filtered", [EXCLUDED] * catalog.height, dtype=pl.String),
    }
    schemes = [given[s].alias(s) if s in given else computed[s]() for s in SCHEMES]
    return pl.DataFrame(
        [catalog["song_id"], catalog["genre"], catalog["sha256"], *(keep_copies_together(catalog, s) for s in schemes)]
    )


def leakage(splits: pl.DataFrame) -> pl.DataFrame:
    """Songs, or identical files, that fall in more than one part of a scheme.

    Returns
    -------
    pl.DataFrame
        Columns ``scheme``, ``kind`` (``song_id`` or ``sha256``), ``key`` and ``parts``;
        empty when nothing leaks.
    """
    rows = []
    for scheme in [c for c in SCHEMES if c in splits.columns]:
        used = splits.filter(pl.col(scheme) != EXCLUDED)
        for kind in ("song_id", "sha256"):
            bad = (
                used.filter(pl.col(kind).is_not_null())
                .group_by(kind)
                .agg(pl.col(scheme).unique().sort().alias("parts"))
                .filter(pl.col("parts").list.len() > 1)
            )
            for key, parts in zip(bad[kind], bad["parts"], strict=True):
                rows.append({"scheme": scheme, "kind": kind, "key": key, "parts": ",".join(parts)})
    return pl.DataFrame(rows, schema={"scheme": pl.String, "kind": pl.String, "key": pl.String, "parts": pl.String})


def require_no_leakage(splits: pl.DataFrame, *, where: str = "the split table") -> None:
    """Refuse a split table that :func:`leakage` finds leaking (what the blocking
    ``split_leakage`` asset check reports), before any feature is built or model trained.

    Raises
    ------
    StoreError
        One line: the first leaking key, its scheme and parts, how many leak, and the remedy.
    """
    leaks = leakage(splits)
    if leaks.height:
        scheme, kind, key, parts = leaks.row(0)
        more = f" ({leaks.height} leaks in all)" if leaks.height > 1 else ""
        raise StoreError(f"{where} leaks: {kind.replace('_', ' ')} {key!r} is in parts {parts} of the {scheme!r} "
                         f"scheme{more}; ingest again (`gtzan ingest`) to rewrite it")


def summary(splits: pl.DataFrame) -> pl.DataFrame:
    """Counts of songs per scheme and part."""
    frames = [
        splits.group_by(s).len().rename({s: "part", "len": "songs"}).with_columns(pl.lit(s).alias("scheme"))
        for s in SCHEMES
        if s in splits.columns
    ]
    return pl.concat(frames).select("scheme", "part", "songs").sort("scheme", "part")


def write_splits(df: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write the split table to Parquet atomically."""
    return write_parquet_atomic(path, df)


def n_holdout(n_songs: int) -> int:
    """Songs held out of a genre of ``n_songs`` under the seed scheme."""
    return max(1, int(round(n_songs * SEED_HOLDOUT_PER_GENRE / 100))) if n_songs else 0


__all__ = [
    "SCHEMES",
    "SCHEME_PARTS",
    "SPLITS_SCHEMA",
    "EXCLUDED",
    "make_splits",
    "keep_copies_together",
    "leakage",
    "require_no_leakage",
    "summary",
    "write_splits",
    "validate_scheme",
    "seed_split",
    "stratified_folds",
    "n_holdout",
]
