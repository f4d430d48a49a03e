"""One factory makes the asset and the sanity check of every feature view.

For each view of :data:`feature_store.views.VIEWS` (mel, embeddings, timbre, and any view
added later), :func:`view_asset` makes the asset :func:`asset_name` (``<view>_features``),
partitioned by clip length, which builds that clip length of the view's store, and the check
:func:`check_name` (``<view>_sane``), a blocking check that inspects what was stored
(:func:`inspect_view`). Nothing here names a view but the built-in views' older names.

The check is *partitioned* like its asset (:func:`partitioned_check`), so that the UI shows the
status of each clip length beside that clip length's materialization, and a blocking check
gates the downstream work of its own clip length only.
"""

import contextlib
import warnings
from collections.abc import Iterator


from typing import Any

import dagster as dg
import numpy as np
import polars as pl

from assets.ingest import song_splits
from assets.metadata import clip_store_metadata, rounded, step_metadata, table
from assets.partitions import clip_partitions
from assets.policies import EAGER, RETRY_POLICY, permanent
from assets.resources import AudioSource, FeatureStoreResource
from feature_store.engine import registry
from feature_store.engine.index import read_index
from feature_store.engine.store import ViewStore
from feature_store.engine.verify import verify_generation
from feature_store.engine.view import FeatureView
from feature_store.errors import StoreError
from feature_store.integrity import IntegrityError
from feature_store.params import CLIP_SECONDS
from feature_store.views import VIEWS

#: A check reads every row of a store of up to this many clips, a seeded sample above.
CHECK_ALL_ROWS = 20_000
#: Rows of that sample.
CHECK_SAMPLE_ROWS = 2_000


#: The names the two first views had before names were derived, kept because runs, jobs,
#: schedules and the UI's history know these assets and checks by them.
KEPT_NAMES: dict[str, tuple[str, str]] = {
    "mel": ("mel_features", "features_sane"),
    "embeddings": ("musicnn_embeddings", "embeddings_sane"),
}


def asset_kinds(view_cls: type[FeatureView]) -> set[str]:
    """The Dagster kinds of a view's asset: where it stores (HDF5, Parquet), and TensorFlow for a
    view that runs a network in the build's process."""
    return {"hdf5", "parquet"} | ({"tensorflow"} if view_cls.main_process else set())


def asset_name(view: str) -> str:
    """The Dagster asset of the view called ``view``: ``<view>_features``."""
    return KEPT_NAMES.get(view, (f"{view}_features", ""))[0]


def check_name(view: str) -> str:
    """The blocking sanity check of the view called ``view``: ``<view>_sane``."""
    return KEPT_NAMES.get(view, ("", f"{view}_sane"))[1]


def view_asset(view_cls: type[FeatureView]) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    """The asset and the sanity check of one view."""

    @dg.asset(
        group_name="features",
        kinds=asset_kinds(view_cls),
        key=asset_name(view_cls.name),
        deps=[song_splits],
        partitions_def=clip_partitions,
        retry_policy=RETRY_POLICY,
        automation_condition=EAGER,
        description=view_cls.description,
    )
    def _asset(context: dg.AssetExecutionContext, audio: AudioSource,
               features: FeatureStoreResource) -> dg.MaterializeResult:
        clip_seconds = int(context.partition_key)
        store = features.view_store(view_cls.name)
        with permanent():
            report = store.build(audio_root=audio.genre_root(), clip_seconds=[clip_seconds],
                                 workers=features.workers_for(store.view), lock_timeout=features.lock_timeout,
                                 on_wait=context.log.warning)
        info = report.clip_lengths[clip_seconds]
        context.log.info(
            f"{view_cls.name} {clip_seconds} s: {info['status']}, {info['clips']} clips of {info['songs']} songs; "
            f"{len(report.computed)} songs computed, {report.cached} cached"
        )
        return dg.MaterializeResult(metadata=step_metadata(view_metadata(report, clip_seconds, store), features),
                                    data_version=view_data_version(store.view.clip_params.hash(), info["generation"]))

    with partitioned_checks():
        return _asset, _view_check(_asset, view_cls)


@contextlib.contextmanager
def partitioned_checks() -> Iterator[None]:
    """Define partitioned asset checks without Dagster 1.13's preview notice.

    A check on a partitioned asset is partitioned like it (``partitions_def``): each
    evaluation belongs to one partition, and the UI shows each partition's last evaluation.
    Dagster 1.13 calls ``partitions_def`` on a check a preview API and warns at every load of the
    code location; the project relies on it knowingly (the UI otherwise shows the last
    evaluation of any partition as the status of all), so the notice is silenced here only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        yield


def _view_check(_asset: dg.AssetsDefinition, view_cls: type[FeatureView]) -> dg.AssetChecksDefinition:
    """The blocking sanity check of one view, one evaluation per clip length."""

    @dg.asset_check(
        asset=_asset,
        name=check_name(view_cls.name),
        partitions_def=clip_partitions,
        blocking=True,
        description=f"The stored {view_cls.name} arrays are finite, of the declared shapes, row-aligned with "
        "their index, and made with the parameters (and weights, where the view has them) that the registry "
        "and the HDF5 file record, for one clip length (partition). Blocks what trains on that clip length of the "
        "view when it fails.",
    )
    def _check(context: dg.AssetCheckExecutionContext, features: FeatureStoreResource) -> dg.AssetCheckResult:
        store = features.view_store(view_cls.name)
        lengths = lengths_to_check(context, store)
        reports = [inspect_view(store, c) for c in lengths]
        try:
            provenance = store.view.provenance()  # the installed weights, where the view has them
        except StoreError:
            provenance = {}
        return sanity_result(lengths, reports,
                             metadata={"view": view_cls.name, "view_hash": store.view.hash(), **provenance})

    return _check


def view_data_version(params_hash: str, generation: str) -> dg.DataVersion:
    """The data version of one clip length of a view: its parameters and its published generation.

    A build that changed nothing keeps the generation, and so the version: what trained on it
    stays up to date. New or removed songs publish a new generation: what trained on the old one
    is out of date (Dagster's "Unsynced", and the ``models_current`` check).
    """
    return dg.DataVersion(f"{params_hash}:{generation}")


def view_metadata(report: Any, clip_seconds: int, store: ViewStore) -> dict[str, Any]:
    """Metadata of one built clip length: the store's facts, the arrays' shapes, the view's own."""
    info = report.clip_lengths[clip_seconds]
    view = store.view
    specs = [s for s in view.array_specs(clip_seconds) if s.hdf5]
    n = info["clips"]
    default = [s for s in specs if s.name in view.default_arrays]
    if len(default) == 1 and len(default[0].shape) > 1:
        shape = (n, *default[0].shape)
    else:
        shape = (n, sum(int(np.prod(s.shape)) for s in default))
    metadata = clip_store_metadata(report, clip_seconds, store)
    metadata.update(
        view=view.name, view_hash=view.hash(), view_params=dg.MetadataValue.json(_params(view)),
        shape=str(shape), frames=info["frames"],
        arrays=dg.MetadataValue.json({s.name: [n, *s.shape] for s in specs}),
    )
    standard = {"status", "clips", "songs", "skipped_short", "frames", "generation", "path", "index_path", "bytes"}
    for key, value in info.items():  # the view's own facts (patches per clip, cost, weights...)
        if key not in standard and isinstance(value, int | float | str) and value is not None:
            metadata[key] = value
    return metadata


def _params(view: FeatureView) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(view.params)


def lengths_to_check(context: dg.AssetCheckExecutionContext, store: ViewStore) -> list[int]:
    """The run's clip length, or every built one (all of them if none is) when run alone."""
    oc = context.op_execution_context
    if oc.has_partition_key:
        return [int(oc.partition_key)]
    return store.available_clip_seconds() or list(CLIP_SECONDS)


def inspect_view(store: ViewStore, clip_seconds: int) -> dict[str, Any]:
    """Verify one built clip length of a view: its records, and its rows against their checksums.

    Every row is read and checked on a store of up to :data:`CHECK_ALL_ROWS` clips; above
    that a seeded sample of :data:`CHECK_SAMPLE_ROWS` (``gtzan features verify`` reads all).

    Returns
    -------
    dict
        ``problems`` (list of str, empty when sane) and the facts checked: ``clips``,
        ``shapes`` (per array), ``rows_checked``, ``non_finite``, ``params_hash``,
        ``registry_hash`` and, for views with provenance (weights), what the registry records.
    """
    view = store.view
    out: dict[str, Any] = {"clip_seconds": clip_seconds, "params_hash": view.clip_params.hash(), "problems": []}
    problems: list[str] = out["problems"]
    try:
        reg = store.describe()
        gen = store.generation(clip_seconds)
        provenance = view.provenance()  # the weights installed now (StoreError when missing)
    except StoreError as exc:
        problems.append(str(exc))
        return out
    out["registry_hash"] = reg.get("params_hash")
    if reg.get("params_hash") != view.clip_params.hash():
        problems.append(f"registry params hash {reg.get('params_hash')} != {view.clip_params.hash()}")
    for key, value in provenance.items():
        out[f"registry_{key}"] = reg.get(key)
        if reg.get(key) != value:
            problems.append(f"registry {key.replace('_', ' ')} {str(reg.get(key))[:12]}… != installed "
                            f"{str(value)[:12]}…; rebuild the {view.name}")
    stored = registry.stored_provenance(gen / view.data_file, {**provenance, "params_hash": ""}) or {}
    if stored.get("params_hash") != view.clip_params.hash():
        problems.append(f"{view.data_file} params hash {stored.get('params_hash')!r} != {view.clip_params.hash()}")
    for key, value in provenance.items():
        if stored.get(key) != value:
            problems.append(f"{view.data_file} {key.replace('_', ' ')} {str(stored.get(key))[:12]}… != installed "
                            f"{str(value)[:12]}…")
    try:
        n = len(read_index(gen))
    except (IntegrityError, FileNotFoundError):  # verify_generation reports it below
        n = 0
    check = verify_generation(gen, view, clip_seconds, sample=None if n <= CHECK_ALL_ROWS else CHECK_SAMPLE_ROWS)
    out.update(clips=check.clips, shapes={k: str(v) for k, v in check.shapes.items()},
               rows_checked=check.rows_checked, non_finite=check.non_finite)
    problems.extend(check.problems)
    if check.non_finite:
        problems.append(f"{check.non_finite} NaN or inf values")
    return out


def sanity_result(lengths: list[int], reports: list[dict], *, metadata: dict[str, Any]) -> dg.AssetCheckResult:
    """One check over clip lengths: a row per length, failing with an error when any report has a problem."""
    problems = [f"{r['clip_seconds']} s: {p}" for r in reports for p in r["problems"]]
    rows = pl.DataFrame(
        [{"clip_seconds": r["clip_seconds"], "clips": r.get("clips"), "shapes": str(r.get("shapes") or ""),
          "rows_checked": r.get("rows_checked"), "non_finite": r.get("non_finite"),
          "problems": "; ".join(r["problems"]) or None} for r in reports],
        schema={"clip_seconds": pl.Int64, "clips": pl.Int64, "shapes": pl.String, "rows_checked": pl.Int64,
                "non_finite": pl.Int64, "problems": pl.String},
    )
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(problems) or f"sane: {', '.join(f'{c} s' for c in lengths)}",
        metadata=rounded({"clip_seconds": dg.MetadataValue.json(lengths), **metadata,
                          "clip_lengths": table(rows), "problems": dg.MetadataValue.json(problems)}),
    )


#: Every view's asset and check, made by :func:`view_asset`, by view name.
VIEW_ASSETS: dict[str, dg.AssetsDefinition] = {}
VIEW_CHECKS: dict[str, dg.AssetChecksDefinition] = {}
for _name, _cls in VIEWS.items():
    VIEW_ASSETS[_name], VIEW_CHECKS[_name] = view_asset(_cls)
