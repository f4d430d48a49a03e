"""Asset checks: a check that warns never blocks; torn or leaking data blocks downstream work.

=========================  ===============  ========  ===========================================
check                      asset            severity  blocks downstream
=========================  ===============  ========  ===========================================
``catalog_quarantine``     audio_catalog    WARN      no: quarantined files are left out
``catalog_duplicates``     audio_catalog    WARN      no: ``split_leakage`` catches harmful ones
``catalog_class_balance``  audio_catalog    WARN      no
``split_leakage``          song_splits      ERROR     yes: no features on a leaking split
``features_sane``          mel_features     ERROR     yes: NaN/inf, wrong shape, torn or stale
``embeddings_sane``        musicnn_         ERROR     yes: NaN/inf, wrong shape, torn, or made
                           embeddings                 with other weights than those installed
``model_above_chance``     genre_models     WARN      no: the report still shows the model
``probe_above_chance``     probe_models     WARN      no: the report still shows the probe
=========================  ===============  ========  ===========================================

The checks on partitioned assets are *unpartitioned* checks (partitioned checks are a
preview API in Dagster 1.13 and warn when the code location loads). Run together with a
partition, they check that partition (the run's partition key); run on their own from the
UI, they check every partition that exists.
"""

import json
import math
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

from assets.embeddings import musicnn_embeddings, probe_models
from assets.features import mel_features
from assets.ingest import audio_catalog, song_splits
from assets.metadata import table
from assets.models import genre_models
from assets.partitions import model_partitions
from assets.resources import FeatureStoreResource, ModelStoreResource
from feature_store import atomic
from feature_store import splits as fs_splits
from feature_store.errors import StoreError
from feature_store.params import CLIP_SECONDS, GENRES
from training.probe import is_probe_run

#: The smallest genre must hold at least this share of the largest genre's usable songs.
BALANCE_MIN_RATIO = 0.8
#: Rows of ``mel.h5`` read at once by ``features_sane`` (bounded memory on any store size).
CHECK_BLOCK_ROWS = 256


def _run_partition(context: dg.AssetCheckExecutionContext) -> str | None:
    oc = context.op_execution_context
    return str(oc.partition_key) if oc.has_partition_key else None


def _catalog_or_fail(features: FeatureStoreResource) -> pl.DataFrame | dg.AssetCheckResult:
    try:
        return features.store().catalog()
    except StoreError as exc:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN, description=str(exc))


@dg.asset_check(
    asset=audio_catalog,
    description="Files that could not be used and were quarantined (warns). Its metadata also lists the "
    "files processed under a recorded policy note (truncated, clipping, non-finite samples, channels mixed, "
    "low sample rate, silence).",
)
def catalog_quarantine(features: FeatureStoreResource) -> dg.AssetCheckResult:
    cat = _catalog_or_fail(features)
    if isinstance(cat, dg.AssetCheckResult):
        return cat
    q = cat.filter(pl.col("status") == "quarantined").select("song_id", "path", "reason")
    noted = cat.filter((pl.col("status") == "ok") & pl.col("notes").is_not_null()).select("song_id", "path", "notes")
    return dg.AssetCheckResult(
        passed=q.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{q.height} of {cat.height} files quarantined" if q.height else "no file quarantined",
        metadata={"quarantined": q.height, "files": cat.height, "quarantined_files": table(q),
                  "noted": noted.height, "noted_files": table(noted)},
    )


@dg.asset_check(asset=audio_catalog, description="Byte-identical files under two song ids (warns).")
def catalog_duplicates(features: FeatureStoreResource) -> dg.AssetCheckResult:
    cat = _catalog_or_fail(features)
    if isinstance(cat, dg.AssetCheckResult):
        return cat
    dups = cat.filter(pl.col("duplicate_of").is_not_null()).select("song_id", "duplicate_of", "sha256")
    return dg.AssetCheckResult(
        passed=dups.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{dups.height} duplicate files" if dups.height else "no duplicate files",
        metadata={"duplicates": dups.height, "duplicate_files": table(dups)},
    )


@dg.asset_check(
    asset=audio_catalog,
    description=f"Every genre has usable songs, and the smallest genre holds at least "
    f"{BALANCE_MIN_RATIO:.0%} of the largest one's (warns).",
)
def catalog_class_balance(features: FeatureStoreResource) -> dg.AssetCheckResult:
    cat = _catalog_or_fail(features)
    if isinstance(cat, dg.AssetCheckResult):
        return cat
    ok = cat.filter(pl.col("status") == "ok")
    counts = {g: 0 for g in GENRES}
    for g, n in ok.group_by("genre").len().iter_rows():
        counts[g] = int(n)
    missing = [g for g, n in counts.items() if n == 0]
    largest, smallest = max(counts.values()), min(counts.values())
    ratio = smallest / largest if largest else 0.0
    passed = not missing and ratio >= BALANCE_MIN_RATIO
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"genres without usable songs: {missing}; " if missing else "") + f"min/max = {ratio:.2f}",
        metadata={
            "songs_per_genre": dg.MetadataValue.json(counts),
            "min_max_ratio": ratio,
            "genres_missing": dg.MetadataValue.json(missing),
        },
    )


@dg.asset_check(
    asset=song_splits,
    blocking=True,
    description="No song, and no byte-identical file, in two parts of any split scheme. Blocks the "
    "features (and everything after them) when it fails.",
)
def split_leakage(features: FeatureStoreResource) -> dg.AssetCheckResult:
    try:
        leaks = fs_splits.leakage(features.store().splits())
    except StoreError as exc:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR, description=str(exc))
    return dg.AssetCheckResult(
        passed=leaks.height == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{leaks.height} leaking songs or files" if leaks.height else "no leakage",
        metadata={"leaks": leaks.height, "leaking": table(leaks)},
    )


def inspect_clip_length(features: FeatureStoreResource, clip_seconds: int) -> dict:
    """Verify one built clip length of the store, reading ``mel.h5`` in bounded blocks.

    Returns
    -------
    dict
        ``problems`` (list of str, empty when sane) and the facts checked: ``clips``,
        ``shape``, ``expected_shape``, ``non_finite``, ``params_hash`` (of the resource),
        ``registry_hash`` and ``file_hash`` (what the registry and the HDF5 file record).
    """
    from feature_store.h5 import h5py as _h5py

    h5py = _h5py()

    store = features.store()
    params = store.params
    out: dict = {"clip_seconds": clip_seconds, "params_hash": params.hash(), "problems": []}
    problems: list[str] = out["problems"]
    try:
        reg = store.describe()
        gen = store.generation(clip_seconds)
    except StoreError as exc:
        problems.append(str(exc))
        return out
    out["registry_hash"] = reg.get("params_hash")
    if reg.get("params_hash") != params.hash():
        problems.append(f"registry params hash {reg.get('params_hash')} != {params.hash()}")
    index = pl.read_parquet(gen / "index.parquet")
    expected = (index.height, params.n_mels, params.clip_frames(clip_seconds))
    out["expected_shape"] = str(expected)
    out["clips"] = index.height
    non_finite = 0
    with h5py.File(gen / "mel.h5", "r") as h5:
        ds = h5["mel"]
        out["shape"] = str(tuple(ds.shape))
        out["file_hash"] = str(h5.attrs.get("params_hash", ""))
        if tuple(ds.shape) != expected:
            problems.append(f"mel shape {tuple(ds.shape)} != expected {expected}")
        if out["file_hash"] != params.hash():
            problems.append(f"mel.h5 params hash {out['file_hash']!r} != {params.hash()}")
        ids = h5["clip_id"].asstr()[:].tolist() if "clip_id" in h5 else []
        if ids != index.sort("hdf5_row")["clip_id"].to_list():
            problems.append("torn store: the clip ids of mel.h5 do not match index.parquet")
        for start in range(0, ds.shape[0], CHECK_BLOCK_ROWS):
            non_finite += int((~np.isfinite(ds[start : start + CHECK_BLOCK_ROWS])).sum())
    out["non_finite"] = non_finite
    if non_finite:
        problems.append(f"{non_finite} NaN or inf values")
    return out


def _lengths_to_check(context: dg.AssetCheckExecutionContext, store) -> list[int]:
    """The run's clip length, or every built one (all of them if none is) when run alone."""
    key = _run_partition(context)
    if key is not None:
        return [int(key)]
    return store.available_clip_seconds() or list(CLIP_SECONDS)


@dg.asset_check(
    asset=mel_features,
    blocking=True,
    description="The stored mels are finite, of shape (clips, n_mels, frames), row-aligned with their "
    "index, and made with the params whose hash the registry and the HDF5 file record. Checks the run's "
    "clip length, or every built one when run alone. Blocks training when it fails.",
)
def features_sane(context: dg.AssetCheckExecutionContext, features: FeatureStoreResource) -> dg.AssetCheckResult:
    lengths = _lengths_to_check(context, features.store())
    reports = [inspect_clip_length(features, c) for c in lengths]
    return _sanity_result(
        lengths,
        reports,
        columns={"clips": pl.Int64, "shape": pl.String, "expected_shape": pl.String, "non_finite": pl.Int64},
        metadata={"params_hash": features.params().hash()},
    )


def _sanity_result(
    lengths: list[int], reports: list[dict], *, columns: dict[str, Any], metadata: dict[str, Any]
) -> dg.AssetCheckResult:
    """One check over clip lengths: a row per length (``columns`` of its report, then its
    problems), failing with an error when any report has a problem."""
    problems = [f"{r['clip_seconds']} s: {p}" for r in reports for p in r["problems"]]
    rows = pl.DataFrame(
        [
            {"clip_seconds": r["clip_seconds"], **{k: r.get(k) for k in columns}, "problems": "; ".join(r["problems"]) or None}
            for r in reports
        ],
        schema={"clip_seconds": pl.Int64, **columns, "problems": pl.String},
    )
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(problems) or f"sane: {', '.join(f'{c} s' for c in lengths)}",
        metadata={
            "clip_seconds": dg.MetadataValue.json(lengths),
            **metadata,
            "clip_lengths": table(rows),
            "problems": dg.MetadataValue.json(problems),
        },
    )


def inspect_embeddings(features: FeatureStoreResource, clip_seconds: int) -> dict:
    """Verify one built clip length of the embeddings view, reading ``embeddings.h5`` in blocks.

    Returns
    -------
    dict
        ``problems`` (list of str, empty when sane) and the facts checked: ``clips``,
        ``shapes`` (per layer), ``non_finite``, ``weights_sha256`` (of the installed weights),
        ``registry_weights`` and ``file_weights`` (what the registry and the HDF5 file record).
    """
    from feature_store.h5 import h5py as _h5py

    h5py = _h5py()

    from feature_store.embeddings import musicnn as mn
    from feature_store.embeddings.store import H5_FILE

    store = features.embedding_store()
    out: dict = {"clip_seconds": clip_seconds, "model": store.model, "problems": []}
    problems: list[str] = out["problems"]
    try:
        reg = store.describe()
        gen = store.generation(clip_seconds)
        installed = mn.weights_sha256(store.model)
    except StoreError as exc:  # not built, or the weights package is missing (names the install command)
        problems.append(str(exc))
        return out
    out["weights_sha256"] = installed
    out["registry_weights"] = reg.get("weights_sha256")
    if reg.get("weights_sha256") != installed:
        problems.append(
            f"registry weights sha256 {str(reg.get('weights_sha256'))[:12]}… != installed {store.model} weights "
            f"{installed[:12]}…; rebuild the embeddings"
        )
    index = pl.read_parquet(gen / "index.parquet")
    out["clips"] = index.height
    non_finite = 0
    shapes = {}
    with h5py.File(gen / H5_FILE, "r") as h5:
        out["file_weights"] = str(h5.attrs.get("weights_sha256", ""))
        if out["file_weights"] != installed:
            problems.append(f"{H5_FILE} weights sha256 {out['file_weights'][:12]}… != installed {installed[:12]}…")
        for name, width in mn.LAYERS.items():
            if name not in h5:
                problems.append(f"{H5_FILE} has no {name!r} layer")
                continue
            ds = h5[name]
            shapes[name] = str(tuple(ds.shape))
            if tuple(ds.shape) != (index.height, width):
                problems.append(f"{name} shape {tuple(ds.shape)} != expected {(index.height, width)}")
            for start in range(0, ds.shape[0], CHECK_BLOCK_ROWS):
                non_finite += int((~np.isfinite(ds[start : start + CHECK_BLOCK_ROWS])).sum())
        ids = h5["clip_id"].asstr()[:].tolist() if "clip_id" in h5 else []
        if ids != index.sort("hdf5_row")["clip_id"].to_list():
            problems.append(f"torn store: the clip ids of {H5_FILE} do not match index.parquet")
    out["shapes"] = shapes
    out["non_finite"] = non_finite
    if non_finite:
        problems.append(f"{non_finite} NaN or inf values")
    return out


@dg.asset_check(
    asset=musicnn_embeddings,
    blocking=True,
    description="The stored embeddings are finite, of shape (clips, width) per layer, row-aligned with "
    "their index, and made with the installed musicnn weights: the sha256 that the registry and the HDF5 "
    "file record equals that of the weights package now installed. Checks the run's clip length, or every "
    "built one when run alone. Blocks the probes when it fails.",
)
def embeddings_sane(context: dg.AssetCheckExecutionContext, features: FeatureStoreResource) -> dg.AssetCheckResult:
    lengths = _lengths_to_check(context, features.embedding_store())
    reports = [inspect_embeddings(features, c) for c in lengths]
    for r in reports:
        if "shapes" in r:
            r["shapes"] = json.dumps(r["shapes"])
    installed = next((r["weights_sha256"] for r in reports if "weights_sha256" in r), None)
    return _sanity_result(
        lengths,
        reports,
        columns={"clips": pl.Int64, "shapes": pl.String, "non_finite": pl.Int64},
        metadata={"embedding_model": features.embedding_model, "weights_sha256": installed or ""},
    )


def _cell_runs(models: ModelStoreResource, params_hash: str, model: str, clip_seconds: int) -> list[dict]:
    root = models.store().root / f"mel-{params_hash}" / model / f"clip-{clip_seconds:02d}s"
    out = []
    for seed_dir in sorted(root.glob("seed-*")):
        if not seed_dir.name.removeprefix("seed-").isdigit():
            continue  # a variant run (seed-N--<variant>) made outside the pipeline
        cur = atomic.resolve_current(seed_dir)
        if cur is not None and (cur / "metrics.json").is_file():
            out.append(json.loads((cur / "metrics.json").read_text()))
    return out


def _above_chance(models: ModelStoreResource, params_hash: str, cells: list[tuple[str, int]]) -> dg.AssetCheckResult:
    chance = 1.0 / len(GENRES)
    rows, failing = [], []
    for model, clip in cells:
        runs = _cell_runs(models, params_hash, model, clip)
        accs = [float(r["metrics"]["song_accuracy"]) for r in runs]
        acc = float(np.mean(accs)) if accs else math.nan
        ok = bool(accs) and acc > chance
        rows.append({"model": model, "clip_seconds": clip, "seeds": len(accs), "song_accuracy": acc, "above_chance": ok})
        if not ok:
            failing.append(f"{model} {clip} s" + ("" if accs else " (not trained)"))
    return dg.AssetCheckResult(
        passed=bool(cells) and not failing,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"at or below chance ({chance:.0%}): {', '.join(failing)}" if failing else
                     f"{len(cells)} cells above chance ({chance:.0%})" if cells else "no trained model"),
        metadata={
            "chance": chance,
            "cells": table(pl.DataFrame(rows, schema={"model": pl.String, "clip_seconds": pl.Int64, "seeds": pl.Int64,
                                                      "song_accuracy": pl.Float64, "above_chance": pl.Boolean})),
        },
    )


def _pipeline_cells(models: ModelStoreResource, params_hash: str, *, probes: bool) -> list[tuple[str, int]]:
    """(model, clip) cells of the pipeline's own runs (no variant): the probes, or the others."""
    return sorted(
        {
            (r["model"], int(r["clip_seconds"]))
            for r in models.runs(params_hash=params_hash)
            if not r.get("variant") and is_probe_run(r) == probes
        }
    )


@dg.asset_check(
    asset=genre_models,
    description="Held-out song accuracy (mean over seeds, the pipeline's own runs without a variant) is "
    "above chance (1 / 10 genres). Warns only: "
    "an undertrained model still belongs in the report. Checks the run's (model, clip) cell, or every "
    "trained cell when run alone.",
)
def model_above_chance(
    context: dg.AssetCheckExecutionContext, features: FeatureStoreResource, models: ModelStoreResource
) -> dg.AssetCheckResult:
    params_hash = features.params().hash()
    key = _run_partition(context)
    if key is not None:
        dims = model_partitions.get_partition_key_from_str(key).keys_by_dimension
        cells = [(dims["model"], int(dims["clip"]))]
    else:
        cells = _pipeline_cells(models, params_hash, probes=False)
    return _above_chance(models, params_hash, cells)


@dg.asset_check(
    asset=probe_models,
    description="Held-out song accuracy of each probe (mean over seeds, the pipeline's own runs without a "
    "variant) is above chance (1 / 10 genres). Warns only. Checks the probes of the run's clip length, or "
    "every trained probe when run alone.",
)
def probe_above_chance(
    context: dg.AssetCheckExecutionContext, features: FeatureStoreResource, models: ModelStoreResource
) -> dg.AssetCheckResult:
    params_hash = features.params().hash()
    cells = _pipeline_cells(models, params_hash, probes=True)
    key = _run_partition(context)
    if key is not None:
        cells = [(m, c) for m, c in cells if c == int(key)]
    return _above_chance(models, params_hash, cells)
