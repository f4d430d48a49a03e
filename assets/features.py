"""Mel feature assets: one chunked HDF5 + Parquet store per clip length."""

import dagster as dg

from assets.ingest import song_splits
from assets.partitions import clip_partitions
from assets.resources import AudioSource, FeatureStoreResource


@dg.asset(
    group_name="features",
    kinds={"hdf5", "parquet"},
    deps=[song_splits],
    partitions_def=clip_partitions,
    description="Mel spectrograms (librosa, 22050 Hz, n_fft 2048, hop 512, 128 mels, power_to_db) of "
    "every clip of one length, sliced from one full-length STFT per song.",
)
def mel_features(
    context: dg.AssetExecutionContext, audio: AudioSource, features: FeatureStoreResource
) -> dg.MaterializeResult:
    clip_seconds = int(context.partition_key)
    store = features.store()
    report = store.build(
        audio_root=audio.genre_root(),
        clip_seconds=[clip_seconds],
        workers=features.workers or None,
    )
    info = report.clip_lengths[clip_seconds]
    context.log.info(
        f"{clip_seconds} s: {info['status']}, {info['clips']} clips of {info['songs']} songs; "
        f"{len(report.computed)} songs computed, {report.cached} cached"
    )
    return dg.MaterializeResult(
        metadata={
            "status": info["status"],
            "clips": info["clips"],
            "songs": info["songs"],
            "frames": info["frames"],
            "songs_computed": len(report.computed),
            "songs_cached": report.cached,
            "feature_failures": report.failed.height,
            "too_short_for_this_length": len(info["skipped_short"]),
            "params": dg.MetadataValue.json(store.params.to_dict()),
            "params_hash": store.params.hash(),
            "hdf5_path": dg.MetadataValue.path(info["path"]),
            "index_path": dg.MetadataValue.path(info["index_path"]),
            "bytes": info["bytes"],
            "dagster/row_count": info["clips"],
        }
    )
