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
``timbre_sane``            timbre_features  ERROR     yes: NaN/inf, wrong shape, torn or stale
``model_above_chance``     genre_models     WARN      no: the report still shows the model
``probe_above_chance``     probe_models     WARN      no: the report still shows the probe
``models_current``         genre_models     WARN      no: says which models trained on features
                                                      that were rebuilt since (out of date)
=========================  ===============  ========  ===========================================

The sanity checks of the feature views are made with their assets by one factory
(:mod:`assets.views`). The checks on partitioned assets are *partitioned* like their assets
(:func:`assets.views.partitioned_checks`): each evaluation checks one partition, and the UI
shows each partition's last evaluation beside that partition's materialization.
"""

import math

import dagster as dg
import numpy as np
import polars as pl

from assets.embeddings import probe_models
from assets.ingest import audio_catalog, song_splits
from assets.metadata import rounded, table
from assets.models import genre_models
from assets.partitions import PIPELINE_VIEWS, clip_partitions, model_partitions
from assets.resources import FeatureStoreResource, ModelStoreResource
from assets.policies import ON_ANY_DEP_UPDATED
from assets.views import VIEW_ASSETS, VIEW_CHECKS, inspect_view, partitioned_checks
from feature_store import splits as fs_splits
from feature_store.errors import StoreError
from feature_store.engine.plugins import store_labels
from training.families import registry
from training.record import RunRecord

#: The smallest label must hold at least this share of the largest genre's usable songs.
BALANCE_MIN_RATIO = 0.8
#: The sanity checks of the feature views (made by :mod:`assets.views`, one per view).
features_sane = VIEW_CHECKS["mel"]
embeddings_sane = VIEW_CHECKS["embeddings"]


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
    description=f"Every label of the dataset (GTZAN's ten genres, or the labels its ingest found) has "
    f"usable songs, and the smallest holds at least {BALANCE_MIN_RATIO:.0%} of the largest one's (warns).",
)
def catalog_class_balance(features: FeatureStoreResource) -> dg.AssetCheckResult:
    cat = _catalog_or_fail(features)
    if isinstance(cat, dg.AssetCheckResult):
        return cat
    ok = cat.filter(pl.col("status") == "ok")
    try:
        labels = store_labels(features.store().root, cat)
    except StoreError as exc:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN, description=str(exc))
    counts = {g: 0 for g in labels}
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
        metadata=rounded({
            "songs_per_genre": dg.MetadataValue.json(counts),
            "min_max_ratio": ratio,
            "genres_missing": dg.MetadataValue.json(missing),
        }),
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
    """:func:`assets.views.inspect_view` of the mel view (what ``features_sane`` checks)."""
    return inspect_view(features.view_store("mel"), clip_seconds)


def inspect_embeddings(features: FeatureStoreResource, clip_seconds: int) -> dict:
    """:func:`assets.views.inspect_view` of the embeddings view (what ``embeddings_sane`` checks)."""
    return inspect_view(features.view_store("embeddings"), clip_seconds)


def _cell_runs(models: ModelStoreResource, params_hash: str, model: str, clip_seconds: int) -> list[RunRecord]:
    """The pipeline's runs of one cell (no variant run made outside the pipeline), records checked on read."""
    return models.store().find(params_hash=params_hash, model=model, clip_seconds=clip_seconds, variant="")


def _above_chance(models: ModelStoreResource, params_hash: str, cells: list[tuple[str, int]]) -> dg.AssetCheckResult:
    """Each cell's mean song accuracy against chance, 1 / the number of labels its runs recorded
    (GTZAN's ten genres give 10 %, a three-label corpus 33 %)."""
    rows, failing = [], []
    for model, clip in cells:
        runs = _cell_runs(models, params_hash, model, clip)
        accs = [float(r.metrics.song_accuracy) for r in runs]
        acc = float(np.mean(accs)) if accs else math.nan
        chance = 1.0 / len(runs[0].labels) if runs else math.nan
        ok = bool(accs) and acc > chance
        rows.append({"model": model, "clip_seconds": clip, "seeds": len(accs), "song_accuracy": acc,
                     "chance": chance, "above_chance": ok})
        if not ok:
            failing.append(f"{model} {clip} s" + (f" ({acc:.0%} <= {chance:.0%})" if accs else " (not trained)"))
    # one label set across the cells (the usual case): its chance level, as a number to chart
    chances = {r["chance"] for r in rows if not math.isnan(r["chance"])}
    overall = {"chance": chances.pop()} if len(chances) == 1 else {}
    return dg.AssetCheckResult(
        passed=bool(cells) and not failing,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"at or below chance: {', '.join(failing)}" if failing else
                     f"{len(cells)} cells above chance" if cells else "no trained model"),
        metadata=rounded({
            **overall,
            "cells": table(pl.DataFrame(rows, schema={"model": pl.String, "clip_seconds": pl.Int64, "seeds": pl.Int64,
                                                      "song_accuracy": pl.Float64, "chance": pl.Float64,
                                                      "above_chance": pl.Boolean})),
        }),
    )


def _pipeline_cells(models: ModelStoreResource, params_hash: str, *, probes: bool) -> list[tuple[str, int]]:
    """(model, clip) cells of the pipeline's own runs (no variant): the probes, or the others."""
    return sorted(
        {
            (r.model, r.clip_seconds)
            for r in models.runs(params_hash=params_hash)
            if not r.variant and (r.view == "embeddings") == probes
        }
    )


def _model_above_chance(
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


def _probe_above_chance(
    context: dg.AssetCheckExecutionContext, features: FeatureStoreResource, models: ModelStoreResource
) -> dg.AssetCheckResult:
    params_hash = features.params().hash()
    cells = _pipeline_cells(models, params_hash, probes=True)
    key = _run_partition(context)
    if key is not None:
        cells = [(m, c) for m, c in cells if c == int(key)]
    return _above_chance(models, params_hash, cells)


with partitioned_checks():
    model_above_chance = dg.asset_check(
        asset=genre_models,
        name="model_above_chance",
        partitions_def=model_partitions,
        description="Held-out song accuracy (mean over seeds, the pipeline's own runs without a variant) is "
        "above chance (1 / the number of labels: 10 % on GTZAN). Warns only: an undertrained model still "
        "belongs in the report. Checks one (model, clip) cell (partition).",
    )(_model_above_chance)
    probe_above_chance = dg.asset_check(
        asset=probe_models,
        name="probe_above_chance",
        partitions_def=clip_partitions,
        description="Held-out song accuracy of each probe (mean over seeds, the pipeline's own runs without a "
        "variant) is above chance (1 / the number of labels: 10 % on GTZAN). Warns only. Checks the probes "
        "of one clip length (partition).",
    )(_probe_above_chance)


def _data_version(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str,
                  before: int | None = None) -> tuple[int, str | None] | None:
    """(storage id, data version) of the latest materialization of a partition (before ``before``)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition], before_storage_id=before), limit=1
    ).records
    if not records:
        return None
    mat = records[0].asset_materialization
    return records[0].storage_id, (mat.tags or {}).get("dagster/data_version") if mat else None


def out_of_date_cells(instance: dg.DagsterInstance) -> pl.DataFrame:
    """Every trained (model, clip) cell, and whether its features changed since it was trained.

    A cell is out of date when the data version of its view's clip length (parameters and
    generation, :func:`assets.views.view_data_version`) differs from the one in effect when the
    model was materialized: new or removed songs, or other feature parameters.
    """
    rows = []
    for part in sorted(instance.get_materialized_partitions(genre_models.key)):
        dims = model_partitions.get_partition_key_from_str(part).keys_by_dimension
        view_key = VIEW_ASSETS[registry()[dims["model"]].view].key
        model = _data_version(instance, genre_models.key, part)
        now = _data_version(instance, view_key, dims["clip"])
        then = _data_version(instance, view_key, dims["clip"], before=model[0]) if model else None
        stale = now is not None and (then is None or then[1] != now[1])
        rows.append({"model": dims["model"], "clip_seconds": int(dims["clip"]), "view": view_key.to_user_string(),
                     "trained_on": then[1] if then else None, "features_now": now[1] if now else None,
                     "out_of_date": stale})
    return pl.DataFrame(rows, schema={"model": pl.String, "clip_seconds": pl.Int64, "view": pl.String,
                                      "trained_on": pl.String, "features_now": pl.String, "out_of_date": pl.Boolean})


@dg.asset_check(
    asset=genre_models,
    name="models_current",
    additional_deps=[VIEW_ASSETS[v] for v in PIPELINE_VIEWS],
    automation_condition=ON_ANY_DEP_UPDATED,
    description="Every trained model was trained on the features as they are now: warns, naming the "
    "(model, clip) cells whose view was rebuilt with other songs or parameters since (out of date until "
    "retrained: the weekly tick, or Materialize). Evaluated by automation whenever the features or the "
    "models change.",
)
def models_current(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    cells = out_of_date_cells(context.instance)
    stale = cells.filter(pl.col("out_of_date"))
    names = [f"{r['model']} {r['clip_seconds']} s" for r in stale.iter_rows(named=True)]
    return dg.AssetCheckResult(
        passed=stale.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"{stale.height} of {cells.height} trained models out of date (features rebuilt since): "
                     f"{', '.join(names[:8])}{' …' if len(names) > 8 else ''}" if names else
                     f"{cells.height} trained models up to date"),
        metadata={"out_of_date": stale.height, "trained": cells.height, "cells": table(cells)},
    )
