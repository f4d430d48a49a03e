"""Sensors: the audio-folder watcher, and the sensor that evaluates the automation conditions.

``audio_folder_sensor``
    Lists the genre folders of the audio source every minute (names, mtimes and sizes only:
    no file is opened) and keeps a digest of that listing as its cursor, with the file count,
    the folder and the catalog's mtime: its size does not grow with the number of files. An
    unchanged digest yields a skip. When the digest changed, or on the first tick (no cursor,
    or one of another format), the listing is compared with the catalog in the store, which
    says what changed: files it does not hold (added), files it holds that are gone
    (removed), and files whose size differs or that were modified after the catalog was
    written (changed). Any of these yields one run of ``ingest_job`` (catalog and splits);
    the features, models and report follow through their automation conditions. A folder
    that matches the catalog is skipped on a first tick (so that turning the sensor on after
    ``make run`` does not re-ingest it) and when the catalog was rewritten since the last
    tick (``gtzan ingest`` or ``make run`` ingested the change). A change of the listing that
    the catalog, unchanged since the last tick, cannot place (a file replaced by an older one
    of the same size) still yields a run, with ``gtzan/changed`` = ``unknown``.
``automation`` and ``automation_<view>``
    Evaluate the assets' ``AutomationCondition`` s (see :mod:`assets.policies`) every 30 s: one
    sensor per feature view, one for the rest. Requests for several partitions are launched as
    one backfill. Dagster names these runs ``__ASSET_JOB``; they carry ``gtzan/trigger`` =
    ``automation``, the view's runs ``gtzan/view``, and Dagster's partition tags
    (``dagster/partition``, and ``dagster/partition/clip`` and ``/model`` of the model cells),
    which the Runs page filters on.

The UI's "Auto-materialize on/off" tag on job pages reads Dagster's older, sensor-less
automation switch, not these sensors, and that switch reads "off" on a fresh instance. Each tick of
``audio_folder_sensor`` (and ``make home``) sets it to these sensors' state (on when all are)
(:func:`sync_automation_flag`), so the tag says whether automation runs.
"""

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import dagster as dg

from assets.resources import AudioSource, FeatureStoreResource
from feature_store.errors import ParameterError
from assets.views import VIEW_ASSETS
from pipelines.jobs import ingest_job

#: Version of the cursor's format; a cursor of another version (the listing of version 1)
#: is treated as absent.
CURSOR_VERSION = 2
#: File names listed in a run's tags, at most, per kind of change.
TAG_EXAMPLES = 3
KINDS = ("added", "changed", "removed")


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


def listing_digest(listing: dict[str, list[int]]) -> str:
    """A digest of a listing (paths, mtimes and sizes): it changes when any file is added,
    removed, resized or touched."""
    return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()[:32]


def make_cursor(genre_root: Path, listing: dict[str, list[int]], catalog_ns: int) -> str:
    """The cursor of a listing: its folder, digest and file count (no file names), and the
    mtime of the catalog at that tick (``catalog_ns``, 0 without one)."""
    return json.dumps({"v": CURSOR_VERSION, "root": str(genre_root), "digest": listing_digest(listing),
                       "files": len(listing), "catalog_ns": catalog_ns}, sort_keys=True)


def read_cursor(cursor: str | None, genre_root: Path) -> dict | None:
    """The cursor's fields, or None when there is none, it is of another version or format,
    or it was made for another folder."""
    if not cursor:
        return None
    try:
        data = json.loads(cursor)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION or data.get("root") != str(genre_root):
        return None
    if not isinstance(data.get("digest"), str) or not isinstance(data.get("catalog_ns"), int):
        return None
    return data


@dataclasses.dataclass(frozen=True)
class Catalog:
    """What the catalog in the store says about the files: ``sizes`` by relative path
    (None for a file it could not read), and when it was written (``written_ns``)."""

    sizes: dict[str, int | None]
    written_ns: int


def catalog_mtime_ns(path: Path) -> int:
    """When the catalog at ``path`` was written (ns), 0 when there is none."""
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def read_catalog(path: Path) -> Catalog | None:
    """The catalog at ``path`` (paths and sizes; checked), or None when there is none yet or it is damaged."""
    written_ns = catalog_mtime_ns(path)
    if not written_ns:
        return None
    from feature_store.catalog import read_catalog as read_checked
    from feature_store.errors import StoreError

    try:
        cat = read_checked(path).select("path", "bytes")
    except StoreError:
        return None  # damaged: every file then counts as new, and the ingest asked for rewrites it
    return Catalog(dict(zip(cat["path"].to_list(), cat["bytes"].to_list(), strict=True)), written_ns)


def diff_catalog(listing: dict[str, list[int]], catalog: Catalog | None) -> dict[str, list[str]]:
    """Paths ``added``, ``changed`` and ``removed`` in ``listing`` against the catalog.

    ``changed``: files of another size than cataloged, or modified after the catalog was
    written. Without a catalog every file is ``added``.
    """
    if catalog is None:
        return {"added": sorted(listing), "changed": [], "removed": []}
    known = catalog.sizes
    return {
        "added": sorted(set(listing) - set(known)),
        "changed": sorted(p for p, (mtime, size) in listing.items()
                          if p in known and (known[p] != size or mtime > catalog.written_ns)),
        "removed": sorted(set(known) - set(listing)),
    }


def automation_running(instance: dg.DagsterInstance) -> bool:
    """Whether every automation sensor (:data:`AUTOMATION_SENSORS`) is on: its stored state, else
    its default (running)."""
    from dagster._core.scheduler.instigation import InstigatorStatus, InstigatorType

    if not instance.auto_materialize_enabled:
        return False
    stored = instance.all_instigator_state(instigator_type=InstigatorType.SENSOR) if instance.schedule_storage else []
    on = {InstigatorStatus.RUNNING, InstigatorStatus.AUTOMATICALLY_RUNNING}
    if AUTOMATION_DEFAULT == dg.DefaultSensorStatus.RUNNING:
        on.add(InstigatorStatus.DECLARED_IN_CODE)
    names = {s.name for s in AUTOMATION_SENSORS}
    status = {s.name: s.status for s in stored if s.name in names}
    default_on = AUTOMATION_DEFAULT == dg.DefaultSensorStatus.RUNNING
    return all(status[n] in on if n in status else default_on for n in names)


def sync_automation_flag(instance: dg.DagsterInstance) -> bool:
    """Set the flag behind the UI's "Auto-materialize on/off" tag to the ``automation`` sensor's state.

    Returns
    -------
    bool
        Whether automation runs (the tag then reads "Auto-materialize on").
    """
    from dagster._daemon.asset_daemon import get_auto_materialize_paused, set_auto_materialize_paused

    running = automation_running(instance)
    if get_auto_materialize_paused(instance) == running:
        set_auto_materialize_paused(instance, not running)
    return running


@dg.sensor(
    name="audio_folder_sensor",
    job=ingest_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the audio folder (paths, mtimes, sizes; its cursor is a digest of them); new, "
    "changed or removed files re-run ingest, and everything downstream follows by automation.",
)
def audio_folder_sensor(
    context: dg.SensorEvaluationContext, audio: AudioSource, features: FeatureStoreResource
) -> dg.SensorResult:
    if context.instance_ref is not None or getattr(context, "_instance", None) is not None:
        sync_automation_flag(context.instance)  # a sensor context built without an instance (tests) has none
    try:
        genre_root = audio.genre_root(write_demo=False)
    except ParameterError as exc:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"audio folder unavailable: {exc}"))
    listing = list_audio(genre_root)
    catalog_path = features.store().catalog_path
    cursor = make_cursor(genre_root, listing, catalog_mtime_ns(catalog_path))
    previous = read_cursor(context.cursor, genre_root)

    def skip(reason: str) -> dg.SensorResult:
        return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=cursor)

    if previous is not None and previous["digest"] == listing_digest(listing):
        return skip(f"no new or changed files among {len(listing)}")
    catalog = read_catalog(catalog_path)
    changes = diff_catalog(listing, catalog)
    unknown = not any(changes.values())
    if unknown and previous is None:
        return skip(f"first look: the {len(listing)} files match the catalog")
    if unknown and catalog is not None and catalog.written_ns != previous["catalog_ns"]:
        return skip(f"the {len(listing)} files match the catalog, ingested since the last look")
    tags = {"gtzan/trigger": "audio_folder_sensor", "gtzan/files": str(len(listing))}
    for kind in KINDS:
        tags[f"gtzan/{kind}"] = str(len(changes[kind]))
        if changes[kind]:
            tags[f"gtzan/{kind}_examples"] = ", ".join(changes[kind][:TAG_EXAMPLES])
    if unknown:
        # the listing changed since the last look (mtimes), with the catalog as it was, yet every
        # file has the name, size and an older mtime than the catalog's: a file replaced by an
        # older one of the same size (`rsync -t`, a restore). Ingest re-hashes them all.
        tags["gtzan/changed"] = "unknown"
    summary = "files changed (unknown which)" if unknown else ", ".join(f"{len(changes[k])} {k}" for k in KINDS)
    context.log.info(f"{summary} under {genre_root}")
    # one ingest run per state of the folder and of the catalog: a folder that returns to an
    # earlier state after an ingest is a new key
    run_key = f"{listing_digest(listing)}-{catalog.written_ns if catalog else 0}"
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=run_key, tags=tags)], cursor=cursor)


#: The sensor that evaluates the automation conditions, and whether it runs unless stopped.
AUTOMATION_SENSOR = "automation"
AUTOMATION_DEFAULT = dg.DefaultSensorStatus.RUNNING
#: Tags of every run that automation launches. Dagster names them ``__ASSET_JOB`` (an automation
#: run is not a run of one of our jobs), so these tags, with Dagster's own ``dagster/partition``
#: (and ``dagster/partition/clip`` and ``dagster/partition/model`` of the model cells), are what the
#: Runs page filters them by.
AUTOMATION_TAGS = {"gtzan/trigger": "automation"}


def _view_automation(name: str) -> dg.AutomationConditionSensorDefinition:
    """The sensor of one feature view's asset and checks: its runs carry ``gtzan/view``."""
    return dg.AutomationConditionSensorDefinition(
        f"{AUTOMATION_SENSOR}_{name}",
        target=dg.AssetSelection.assets(VIEW_ASSETS[name]),
        run_tags={**AUTOMATION_TAGS, "gtzan/view": name},
        default_status=AUTOMATION_DEFAULT,
        minimum_interval_seconds=30,
        description=f"Evaluates the automation condition of the {name} view's asset "
        f"({VIEW_ASSETS[name].key.to_user_string()}): it follows ingest. Its runs are tagged gtzan/view={name}.",
    )


#: One sensor per feature view (runs tagged with the view), one for the rest of the graph.
VIEW_AUTOMATION = [_view_automation(name) for name in VIEW_ASSETS]
automation = dg.AutomationConditionSensorDefinition(
    AUTOMATION_SENSOR,
    target=dg.AssetSelection.all() - dg.AssetSelection.assets(*VIEW_ASSETS.values()),
    run_tags=AUTOMATION_TAGS,
    default_status=AUTOMATION_DEFAULT,
    minimum_interval_seconds=30,
    description="Evaluates the assets' automation conditions but the feature views' (automation_<view>): "
    "training follows the weekly tick, the report follows the models, models_current follows features and models.",
)
AUTOMATION_SENSORS = (automation, *VIEW_AUTOMATION)

ALL_SENSORS = [audio_folder_sensor, *AUTOMATION_SENSORS]


def main() -> None:
    """``python -m pipelines.sensors``: sync the UI's automation flag of ``$DAGSTER_HOME`` (``make home``)."""
    with dg.DagsterInstance.get() as instance:
        state = "on" if sync_automation_flag(instance) else "off"
    print(f"automation {state} ({os.environ.get('DAGSTER_HOME', '')})")


if __name__ == "__main__":
    main()
