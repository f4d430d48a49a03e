"""Mel feature assets: one chunked HDF5 + Parquet store per clip length."""

import dagster as dg

from assets.ingest import song_splits
from assets.metadata import clip_store_metadata, host_metadata
from assets.partitions import clip_partitions
from assets.policies import EAGER, RETRY_POLICY, permanent
from assets.resources import AudioSource, FeatureStoreResource


@dg.asset(
    group_name="features",
    kinds={"hdf5", "parquet"},
    deps=[song_splits],
    partitions_def=clip_partitions,
    retry_policy=RETRY_POLICY,
    automation_condition=EAGER,
    description="Mel spectrograms (librosa, 22050 Hz, n_fft 2048, hop 512, 128 mels, power_to_db) of "
    "every clip of one length, partitioned by clip length in seconds. Each partition is a chunked "
    "`mel.h5` (clips × 128 mels × frames) with an `index.parquet` of its rows (song, genre, split "
    "parts, segment) and a `summary.parquet` of per-band statistics, published atomically as a new "
    "generation. Songs are decoded once into a cache shared by all partitions.",
)
def mel_features(
    context: dg.AssetExecutionContext, audio: AudioSource, features: FeatureStoreResource
) -> dg.MaterializeResult:
    clip_seconds = int(context.partition_key)
    store = features.store()
    with permanent():
        report = store.build(
            audio_root=audio.genre_root(),
            clip_seconds=[clip_seconds],
            workers=features.workers or None,
            lock_timeout=features.lock_timeout,
        )
    info = report.clip_lengths[clip_seconds]
    context.log.info(
        f"{clip_seconds} s: {info['status']}, {info['clips']} clips of {info['songs']} songs; "
        f"{len(report.computed)} songs computed, {report.cached} cached"
    )
    params = store.params
    metadata = clip_store_metadata(report, clip_seconds, store)
    metadata.update(shape=f"({info['clips']}, {params.n_mels}, {info['frames']})", frames=info["frames"])
    return dg.MaterializeResult(metadata={**metadata, **host_metadata()})
