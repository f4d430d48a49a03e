"""Asset checks: warnings never block; torn or leaking data blocks downstream work."""

import dagster as dg
import numpy as np
import polars as pl

from assets.features import mel_features
from assets.ingest import audio_catalog, song_splits
from assets.partitions import clip_partitions
from assets.resources import FeatureStoreResource
from feature_store import splits as fs_splits


@dg.asset_check(asset=audio_catalog, description="Quarantined files (warns, does not block).")
def catalog_quarantine(features: FeatureStoreResource) -> dg.AssetCheckResult:
    cat = features.store().catalog()
    q = cat.filter(pl.col("status") == "quarantined")
    return dg.AssetCheckResult(
        passed=q.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantined": q.height, "reasons": dg.MetadataValue.json(q.select("path", "reason").to_dicts())},
    )


@dg.asset_check(asset=song_splits, blocking=True, description="No song or identical file in two parts of a scheme.")
def split_leakage(features: FeatureStoreResource) -> dg.AssetCheckResult:
    leaks = fs_splits.leakage(features.store().splits())
    return dg.AssetCheckResult(
        passed=leaks.height == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"leaks": leaks.height, "examples": dg.MetadataValue.json(leaks.head(20).to_dicts())},
    )


@dg.asset_check(
    asset=mel_features,
    blocking=True,
    partitions_def=clip_partitions,
    description="Stored mels are finite, of the expected shape, and match the registry's params hash.",
)
def features_sane(context: dg.AssetCheckExecutionContext, features: FeatureStoreResource) -> dg.AssetCheckResult:
    clip_seconds = int(context.partition_key)
    store = features.store()
    t = store.tensors(clip_seconds=clip_seconds)
    expected = (store.params.n_mels, store.params.clip_frames(clip_seconds))
    finite = bool(np.isfinite(t.x).all())
    shape_ok = t.x.shape[1:] == expected
    reg = store.describe()
    hash_ok = reg["params_hash"] == store.params.hash()
    return dg.AssetCheckResult(
        passed=finite and shape_ok and hash_ok,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"finite": finite, "shape": str(t.x.shape), "expected": str(expected), "params_hash_ok": hash_ok},
    )
