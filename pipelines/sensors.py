"""Sensors: the audio-folder watcher, and the sensor that evaluates the automation conditions.

``audio_folder_sensor``
    Lists the genre folders of the audio source every minute (names, mtimes and sizes only:
    no file is opened) and keeps that listing as its cursor. New, changed or removed files
    yield one run of ``ingest_job`` (catalog and splits); the features, models and report
    follow through their automation conditions. An unchanged folder yields a skip. On its
    first tick, without a cursor, it compares the folder with the catalog already in the
    store, so that turning it on after ``make run`` does not re-ingest an unchanged folder.
``automation``
    Evaluates the assets' ``AutomationCondition`` s (see :mod:`assets.policies`) every 30 s.
    Requests for several partitions are launched as one backfill.
"""

import hashlib
import json
import os
from pathlib import Path

import dagster as dg
import polars as pl

from assets.resources import AudioSource, FeatureStoreResource
from feature_store.errors import ParameterError
from pipelines.jobs import ingest_job

#: Version of the cursor's format; a cursor of another version is treated as absent.
CURSOR_VERSION = 1
#: File names listed in a run's tags, at most, per kind of change.
TAG_EXAMPLES = 3


def list_audio(genre_root: Path) -> dict[str, list[int]]:
    """``{relative path: [mtime_ns, size]}`` of the files of every genre folder under ``genre_root``.

    Lists the same files that ``feature_store.catalog.scan`` catalogs: non-hidden files
    directly inside non-hidden folders of ``genre_root``.
    """
    out: dict[str, list[int]] = {}
    with os.scandir(genre_root) as genres:
        for g in genres:
            if g.name.startswith(".") or not g.is_dir():
                continue
            with os.scandir(g.path) as files:
                for f in files:
                    if f.name.startswith(".") or not f.is_file():
                        continue
                    st = f.stat()
                    out[f"{g.name}/{f.name}"] = [st.st_mtime_ns, st.st_size]
    return out


def diff_listing(old: dict[str, list[int]], new: dict[str, list[int]]) -> dict[str, list[str]]:
    """Paths ``added``, ``changed`` (mtime or size) and ``removed`` between two listings."""
    return {
        "added": sorted(set(new) - set(old)),
        "changed": sorted(p for p in set(new) & set(old) if list(new[p]) != list(old[p])),
        "removed": sorted(set(old) - set(new)),
    }


def _digest(listing: dict[str, list[int]]) -> str:
    return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()[:16]


def _read_cursor(cursor: str | None) -> dict[str, list[int]] | None:
    if not cursor:
        return None
    try:
        data = json.loads(cursor)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION:
        return None
    return data.get("files")


def _catalog_listing(features: FeatureStoreResource) -> dict[str, int] | None:
    path = features.store().catalog_path
    if not path.exists():
        return None
    cat = pl.read_parquet(path, columns=["path", "bytes"])
    return dict(zip(cat["path"].to_list(), cat["bytes"].to_list(), strict=True))


@dg.sensor(
    name="audio_folder_sensor",
    job=ingest_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the audio folder (paths, mtimes, sizes); new or changed files re-run ingest, "
    "and everything downstream follows by automation.",
)
def audio_folder_sensor(
    context: dg.SensorEvaluationContext, audio: AudioSource, features: FeatureStoreResource
) -> dg.SensorResult:
    try:
        genre_root = audio.genre_root(write_demo=False)
    except ParameterError as exc:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"audio folder unavailable: {exc}"))
    listing = list_audio(genre_root)
    cursor = json.dumps({"v": CURSOR_VERSION, "root": str(genre_root), "files": listing}, sort_keys=True)
    previous = _read_cursor(context.cursor)
    if previous is None:
        cataloged = _catalog_listing(features)
        if cataloged is not None and cataloged == {p: size for p, (_mtime, size) in listing.items()}:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"first look: the {len(listing)} files match the catalog"), cursor=cursor
            )
        changes = {"added": sorted(listing), "changed": [], "removed": sorted(set(cataloged or {}) - set(listing))}
    else:
        changes = diff_listing(previous, listing)
    if not any(changes.values()):
        return dg.SensorResult(skip_reason=dg.SkipReason(f"no new or changed files among {len(listing)}"), cursor=cursor)
    tags = {"gtzan/trigger": "audio_folder_sensor"}
    for kind, paths in changes.items():
        tags[f"gtzan/{kind}"] = str(len(paths))
        if paths:
            tags[f"gtzan/{kind}_examples"] = ", ".join(paths[:TAG_EXAMPLES])
    context.log.info(", ".join(f"{len(v)} {k}" for k, v in changes.items()) + f" under {genre_root}")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=_digest(listing), tags=tags)], cursor=cursor)


automation = dg.AutomationConditionSensorDefinition(
    "automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates the assets' automation conditions: features follow ingest, training follows "
    "the weekly tick, the report follows the models.",
)

ALL_SENSORS = [audio_folder_sensor, automation]
