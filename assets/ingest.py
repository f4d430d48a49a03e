"""Ingest assets: the validated audio catalog and the split table."""

import dagster as dg
import polars as pl

from assets.metadata import md_table, size_bytes, step_metadata, table
from assets.policies import EAGER, RETRY_POLICY, permanent
from assets.resources import AudioSource, FeatureStoreResource
from feature_store import splits as fs_splits
from feature_store.ingestion import catalog_audio, split_catalog


@dg.asset(
    group_name="ingest",
    kinds={"parquet", "polars"},
    retry_policy=RETRY_POLICY,
    description="Every audio file of the dataset's folder (GTZAN, or the synthetic demo corpus, unless "
    "the `audio` resource names another dataset), hashed, decoded and validated, one row per file, in `catalog.parquet` of the feature store. Unusable "
    "files are kept with status `quarantined` and a reason; identical files are flagged in "
    "`duplicate_of`. Started by the weekly schedule or the audio-folder sensor.",
)
def audio_catalog(
    context: dg.AssetExecutionContext, audio: AudioSource, features: FeatureStoreResource
) -> dg.MaterializeResult:
    with permanent():
        genre_root = audio.genre_root()
        done = catalog_audio(genre_root, features.store().root, dataset=audio.dataset,
                             labels_file=audio.labels_path())
        cat, path = done.catalog, done.catalog_path
    quarantined = cat.filter(pl.col("status") == "quarantined").select("song_id", "genre", "path", "reason")
    dups = cat.filter(pl.col("duplicate_of").is_not_null()).select("song_id", "duplicate_of", "path")
    noted = cat.filter(pl.col("notes").is_not_null()).select("song_id", "notes")
    per_genre = (
        cat.group_by("genre")
        .agg(pl.len().alias("files"), (pl.col("status") == "ok").sum().alias("ok"))
        .sort("genre")
    )
    context.log.info(f"cataloged {cat.height} files from {genre_root}; {quarantined.height} quarantined")
    return dg.MaterializeResult(
        metadata=step_metadata({
            "audio_root": dg.MetadataValue.path(str(genre_root)),
            "dataset": done.dataset,
            "labels": dg.MetadataValue.json(list(done.labels)),
            "layout": done.layout,
            "demo_corpus": audio.is_demo,
            "files": cat.height,
            "ok": cat.height - quarantined.height,
            "quarantined": quarantined.height,
            "duplicates": dups.height,
            "quarantined_files": table(quarantined),
            "duplicate_files": table(dups),
            "files_per_genre": dg.MetadataValue.md(md_table(per_genre)),
            "notes": dg.MetadataValue.md(md_table(noted)),
            "audio_bytes": int(cat["bytes"].fill_null(0).sum()),
            "hours_of_audio": float(cat["duration"].fill_null(0).sum()) / 3600,
            "path": dg.MetadataValue.path(str(path)),
            "bytes": size_bytes(path),
            "dagster/row_count": cat.height,
        }, features)
    )


@dg.asset(
    group_name="ingest",
    kinds={"parquet", "polars"},
    deps=[audio_catalog],
    retry_policy=RETRY_POLICY,
    automation_condition=EAGER,
    description="The split table (`splits.parquet`): one row per song, one column per split scheme: "
    "`seed` (the study's last-10-per-genre hold-out), `stratified` (seeded 5-fold) and "
    "`fault_filtered` (Kereliuk, Sturm & Larsen's artist-conflict-free split). Quarantined songs are "
    "`excluded`. The blocking `split_leakage` check stops features being built on a leaking split.",
)
def song_splits(
    context: dg.AssetExecutionContext, audio: AudioSource, features: FeatureStoreResource
) -> dg.MaterializeResult:
    with permanent():
        store = features.store()
        root = audio.genre_root(write_demo=False) if audio.labels_path() else None
        spl, path = split_catalog(store.root, store.catalog(), dataset=audio.dataset,
                                  labels_file=audio.labels_path(), genre_root=root)
    summary = fs_splits.summary(spl)
    wide = summary.pivot(on="part", index="scheme", values="songs").fill_null(0)
    context.log.info(f"split {spl.height} songs into {len(fs_splits.SCHEMES)} schemes")
    return dg.MaterializeResult(
        metadata=step_metadata({
            "songs": spl.height,
            "schemes": dg.MetadataValue.json(list(fs_splits.SCHEMES)),
            "songs_per_part": table(wide),
            "seed_test_songs": int((spl["seed"] == "test").sum()),
            "path": dg.MetadataValue.path(str(path)),
            "bytes": size_bytes(path),
            "dagster/row_count": spl.height,
        }, features)
    )
