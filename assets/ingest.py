"""Ingest assets: the validated audio catalog and the split table."""

import dagster as dg
import polars as pl

from assets.resources import AudioSource, FeatureStoreResource
from feature_store import catalog as fs_catalog
from feature_store import splits as fs_splits


def _md_table(df: pl.DataFrame, *, limit: int = 50) -> str:
    if df.height == 0:
        return "_none_"
    cols = df.columns
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.head(limit).iter_rows():
        rows.append("| " + " | ".join("" if v is None else str(v).replace("|", "\\|") for v in r) + " |")
    if df.height > limit:
        rows.append(f"\n… and {df.height - limit} more")
    return "\n".join(rows)


@dg.asset(
    group_name="ingest",
    kinds={"parquet", "polars"},
    description="Every audio file of the GTZAN folder, hashed, decoded and validated. "
    "Unusable files are kept with status 'quarantined' and a reason.",
)
def audio_catalog(
    context: dg.AssetExecutionContext, audio: AudioSource, features: FeatureStoreResource
) -> dg.MaterializeResult:
    genre_root = audio.genre_root()
    cat = fs_catalog.scan(genre_root)
    store = features.store()
    path = fs_catalog.write_catalog(cat, store.catalog_path)
    quarantined = cat.filter(pl.col("status") == "quarantined").select("song_id", "path", "reason")
    dups = cat.filter(pl.col("duplicate_of").is_not_null()).select("song_id", "duplicate_of")
    per_genre = cat.group_by("genre").agg(pl.len().alias("files")).sort("genre")
    context.log.info(f"cataloged {cat.height} files from {genre_root}; {quarantined.height} quarantined")
    return dg.MaterializeResult(
        metadata={
            "audio_root": dg.MetadataValue.path(str(genre_root)),
            "demo_corpus": audio.is_demo,
            "files": cat.height,
            "ok": cat.height - quarantined.height,
            "quarantined": quarantined.height,
            "quarantined_files": dg.MetadataValue.md(_md_table(quarantined)),
            "duplicates": dg.MetadataValue.md(_md_table(dups)),
            "files_per_genre": dg.MetadataValue.md(_md_table(per_genre)),
            "path": dg.MetadataValue.path(str(path)),
            "dagster/row_count": cat.height,
        }
    )


@dg.asset(
    group_name="ingest",
    kinds={"parquet", "polars"},
    deps=[audio_catalog],
    description="One column per split scheme: seed (the study's last-10-per-genre hold-out), "
    "stratified k-fold, and the fault-filtered artist-conflict-free split.",
)
def song_splits(context: dg.AssetExecutionContext, features: FeatureStoreResource) -> dg.MaterializeResult:
    store = features.store()
    cat = store.catalog()
    spl = fs_splits.make_splits(cat)
    path = fs_splits.write_splits(spl, store.splits_path)
    summary = fs_splits.summary(spl)
    return dg.MaterializeResult(
        metadata={
            "songs": spl.height,
            "parts": dg.MetadataValue.md(_md_table(summary)),
            "path": dg.MetadataValue.path(str(path)),
            "dagster/row_count": spl.height,
        }
    )
